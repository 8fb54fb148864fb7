package prover_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/prover"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/verify"
)

// host is a simulated TPM with an EK certificate from its manufacturer, in this process.
type host struct {
	sim     *tpmsim.Sim
	counter *tpm.CountingTPM
	bundle  *verify.Bundle
}

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

func newHost(t testing.TB) *host {
	t.Helper()
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	bundle, _, err := verify.LoadBundle(sim.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	return &host{sim: sim, counter: tpm.NewCountingTPM(sim), bundle: bundle}
}

func (h *host) prover(t testing.TB, eventLog string) *prover.Prover {
	t.Helper()
	p, err := prover.New(prover.Config{
		TPMPath:      "sim",
		EventLogPath: eventLog,
		Open:         func(string) (transport.TPMCloser, error) { return nopCloser{h.counter}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *host) verifier() *verify.Verifier {
	return &verify.Verifier{EK: verify.EKPolicy{Bundle: h.bundle}, PCRBank: tpm2.TPMAlgSHA256, PCRs: []int{0, 2, 4, 7}}
}

// attest runs one exchange between p and v.
func attest(t testing.TB, p *prover.Prover, v *verify.Verifier) *verify.Result {
	t.Helper()
	x, hello, err := p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sess, ch, err := v.Begin(hello)
	if err != nil {
		t.Fatal(err)
	}
	chBytes, err := encodeChallenge(ch)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := x.Answer(chBytes)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.Finish(ev)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestAttestationRoundTrip(t *testing.T) {
	h := newHost(t)
	log := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(log, []byte("event log bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := attest(t, h.prover(t, log), h.verifier())

	eks, err := tpm.EndorsementKeys(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := verify.EKHash(eks[0].PublicKey)
	if res.EKHash != want || res.CertStatus != "valid" || res.EKCert == nil {
		t.Errorf("result EK %s cert %s, want %s valid", res.EKHash, res.CertStatus, want)
	}
	bank, _ := tpm.ParseBank("sha256")
	pcrs, err := tpm.ReadPCRs(h.sim, bank, []int{0, 2, 4, 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{0, 2, 4, 7} {
		if string(res.PCRs[p]) != string(pcrs[p]) {
			t.Errorf("PCR %d = %x, TPM has %x", p, res.PCRs[p], pcrs[p])
		}
	}
	if string(res.EventLog) != "event log bytes" {
		t.Errorf("event log %q not carried", res.EventLog)
	}
	// Nothing is left loaded in a TPM without a resource manager.
	if hs, _ := tpm.TransientHandles(h.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
}

// TestSteadyStateCommands is the agent's cost target: with EK and AK persisted, one
// attestation sends at most 10 TPM commands and generates no key.
func TestSteadyStateCommands(t *testing.T) {
	h := newHost(t)
	p := h.prover(t, "")
	v := h.verifier()
	attest(t, p, v) // first attestation: creates and persists the AK
	if h.counter.Count(tpm2.TPMCCCreate) != 1 {
		t.Errorf("first attestation: %s, want one Create (the AK)", h.counter)
	}
	h.counter.Reset()
	attest(t, p, v)
	n, _ := h.counter.Total()
	if n > 10 {
		t.Errorf("steady state: %d commands (%s), want at most 10", n, h.counter)
	}
	for _, cc := range []tpm2.TPMCC{tpm2.TPMCCCreate, tpm2.TPMCCCreatePrimary, tpm2.TPMCCCreateLoaded} {
		if h.counter.Count(cc) != 0 {
			t.Errorf("steady state generated a key: %s", h.counter)
		}
	}
	t.Logf("steady state: %d commands: %s", n, h.counter)
}

// BenchmarkAgentAttestation measures the agent side of one steady-state attestation on the
// reference TPM: commands sent (counted by command code) and time spent in the TPM.
func BenchmarkAgentAttestation(b *testing.B) {
	h := newHost(b)
	p := h.prover(b, "")
	v := h.verifier()
	attest(b, p, v)
	h.counter.Reset()
	for b.Loop() {
		attest(b, p, v)
	}
	n, spent := h.counter.Total()
	b.ReportMetric(float64(n)/float64(b.N), "tpm-cmds/op")
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "tpm-ns/op")
	b.ReportMetric(float64(h.counter.Count(tpm2.TPMCCCreate)+h.counter.Count(tpm2.TPMCCCreatePrimary))/float64(b.N), "keygen/op")
}
