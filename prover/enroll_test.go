package prover_test

import (
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// TestEnrollmentRoundTrip: the prover's two halves of an enrollment, checked by the
// verifier's, present the EK and AK that attestation presents.
func TestEnrollmentRoundTrip(t *testing.T) {
	h := newHost(t)
	p := h.prover(t, "")
	v := h.verifier()
	attested := attest(t, p, v)
	for _, alg := range []tpm2.TPMAlgID{tpm2.TPMAlgECC, tpm2.TPMAlgRSA} {
		e, begin, err := p.BeginEnrollment("auth.funlab.casa", alg)
		if err != nil {
			t.Fatal(err)
		}
		session, ch, err := (&verify.Enroller{EK: v.EK}).BeginEnrollment(begin)
		if err != nil {
			t.Fatal(err)
		}
		ch.Session = "s1"
		finish, err := e.Answer(ch)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := session.Finish(finish)
		if err != nil {
			t.Fatalf("the verifier refused the enrollment: %v", err)
		}
		if finish.Session != "s1" || csr.Subject.CommonName != "auth.funlab.casa" || session.Identity.EKHash != attested.EKHash {
			t.Errorf("session %q, CSR for %q, EK %s; want s1, auth.funlab.casa, EK %s", finish.Session, csr.Subject.CommonName, session.Identity.EKHash, attested.EKHash)
		}
		if e.Key().Public.Type != alg {
			t.Errorf("DevID key type 0x%04X, want 0x%04X", uint16(e.Key().Public.Type), uint16(alg))
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if hs, _ := tpm.TransientHandles(h.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
	if _, _, err := p.BeginEnrollment("auth.funlab.casa", tpm2.TPMAlgSHA256); err == nil || err.Error() != "prover: DevID key algorithm 0x000B: want ECC or RSA" {
		t.Errorf("BeginEnrollment with SHA-256 as key algorithm: %v", err)
	}
}
