package testtpm

import (
	"crypto"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// PCRs reads every PCR of bank from the TPM, as go-attestation's replay takes them.
func PCRs(t testing.TB, tp transport.TPM, bank tpmrules.Bank) []attest.PCR {
	t.Helper()
	all, _ := tpm.ParsePCRSelection("all")
	vals, err := tpm.ReadPCRs(tp, bank, all)
	if err != nil {
		t.Fatal(err)
	}
	hash := map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256, "sha384": crypto.SHA384}[bank.Name]
	out := make([]attest.PCR, 0, len(all))
	for _, i := range all {
		out = append(out, attest.PCR{Index: i, Digest: vals[i], DigestAlg: hash})
	}
	return out
}

// ReplayLog parses the TCG event log raw and replays it against the TPM's PCRs in banks
// ((*attest.EventLog).Verify), failing the test when it does not replay; it returns the
// events the replay verified.
func ReplayLog(t testing.TB, tp transport.TPM, raw []byte, banks ...tpmrules.Bank) []attest.Event {
	t.Helper()
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatalf("parse event log: %v", err)
	}
	var pcrs []attest.PCR
	for _, b := range banks {
		pcrs = append(pcrs, PCRs(t, tp, b)...)
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		t.Fatalf("replay of the event log against the TPM's PCRs: %v", err)
	}
	return events
}
