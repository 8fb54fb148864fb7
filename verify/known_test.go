package verify_test

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/bench/softtpm"
	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// knownAttest runs one attestation of t through v and says whether its Hello was decoded
// from memory.
func knownAttest(tb testing.TB, v *verify.Verifier, t *softtpm.TPM, evidence func([]byte) ([]byte, error)) (fromMemory bool, err error) {
	tb.Helper()
	hello := must(t.Hello())
	s, ch, err := v.Begin(hello)
	if err != nil {
		return false, err
	}
	ev := must(evidence(must(protocol.Encode(ch))))
	_, err = s.Finish(ev)
	return verify.FromMemory(s), err
}

// TestKnownTPMStillChecked: a TPM the verifier accepted is decoded from memory at its
// next attestation, and every check still runs on what is remembered: a deny-list, an EK
// type, a bundle that does not hold its manufacturer, a clock past its certificate. An
// attestation that fails its credential is not remembered.
func TestKnownTPMStillChecked(t *testing.T) {
	ca := must(mfgca.NewEphemeral("omens known test"))
	tpm := must(softtpm.New(ca))
	hash := must(verify.EKHash(tpm.EKPublicKey()))
	base := func() *verify.Verifier {
		return &verify.Verifier{
			EK:      verify.EKPolicy{Bundle: testattest.CABundle(ca)},
			PCRBank: tpm2.TPMAlgSHA256,
			PCRs:    tpmrules.DefaultPCRs(),
		}
	}

	// A wrong secret: refused, and not remembered.
	wrong := func(ch []byte) ([]byte, error) {
		ev := must(protocol.DecodeEvidence(must(tpm.Evidence(ch))))
		ev.Secret = make([]byte, len(ev.Secret))
		_, _ = rand.Read(ev.Secret)
		return protocol.Encode(ev)
	}
	before := verify.KnownTPMs()
	if _, err := knownAttest(t, base(), tpm, wrong); verify.FailedCheck(err) != verify.CheckCredential {
		t.Fatalf("wrong secret: %v, want check %s", err, verify.CheckCredential)
	}
	if mem, err := knownAttest(t, base(), tpm, tpm.Evidence); err != nil || mem {
		t.Fatalf("first accepted attestation: from memory %v, %v; want decoded afresh and accepted", mem, err)
	}
	if got := verify.KnownTPMs(); got != before+1 {
		t.Fatalf("known TPMs %d after one accepted, want %d", got, before+1)
	}
	if mem, err := knownAttest(t, base(), tpm, tpm.Evidence); err != nil || !mem {
		t.Fatalf("second attestation: from memory %v, %v; want from memory and accepted", mem, err)
	}

	other := must(mfgca.NewEphemeral("omens known other"))
	for _, tc := range []struct {
		name   string
		change func(v *verify.Verifier)
		check  string
		want   string
	}{
		{"deny-listed", func(v *verify.Verifier) { v.EK.Deny = map[string]bool{hash: true} },
			verify.CheckEKDenylist, "verify: ek_denylist: EK " + hash + " is deny-listed"},
		{"other EK type", func(v *verify.Verifier) { v.EK.Type = tpmrules.EKTypeECCP256 },
			verify.CheckEKType, "verify: ek_type: EK type " + tpmrules.EKTypeRSA2048 + " is not the one this server accepts, " + tpmrules.EKTypeECCP256 + " (ek_hash=" + hash + ")"},
		{"other manufacturer", func(v *verify.Verifier) { v.EK.Bundle = testattest.CABundle(other) },
			verify.CheckEKCertificate, "verify: ek_certificate: verify: certificate not trusted: issuer \"CN=omens known test EK Intermediate CA,O=omens\""},
		{"certificate expired", func(v *verify.Verifier) {
			v.Now = func() time.Time { return ca.Intermediate().NotAfter.Add(time.Hour) }
		}, verify.CheckEKExpired, "verify: ek_cert_expired: verify: certificate expired: EK certificate serial "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.change(v)
			// Begin refuses it, on the Hello decoded from memory.
			_, err := knownAttest(t, v, tpm, tpm.Evidence)
			if verify.FailedCheck(err) != tc.check || !hasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v (check %s), want check %s with %q", err, verify.FailedCheck(err), tc.check, tc.want)
			}
		})
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// TestKnownTPMsConcurrent: attestations of the same TPMs at once, from memory and afresh,
// each accepted under its own EK hash (run with -race).
func TestKnownTPMsConcurrent(t *testing.T) {
	ca := must(mfgca.NewEphemeral("omens known concurrent"))
	tpms := []*softtpm.TPM{must(softtpm.New(ca)), must(softtpm.New(ca)), must(softtpm.New(ca))}
	v := &verify.Verifier{EK: verify.EKPolicy{Bundle: testattest.CABundle(ca)}, PCRBank: tpm2.TPMAlgSHA256, PCRs: tpmrules.DefaultPCRs()}
	errs := make(chan error, 24)
	for i := range 24 {
		go func() {
			tpm := tpms[i%len(tpms)]
			s, ch, err := v.Begin(must(tpm.Hello()))
			if err == nil {
				var ev []byte
				if ev, err = tpm.Evidence(must(protocol.Encode(ch))); err == nil {
					var res *verify.Result
					if res, err = s.Finish(ev); err == nil && res.EKHash != must(verify.EKHash(tpm.EKPublicKey())) {
						err = errors.New("accepted under another TPM's EK hash " + res.EKHash)
					}
				}
			}
			errs <- err
		}()
	}
	for range 24 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
