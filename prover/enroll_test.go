package prover_test

import (
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
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

// TestEnrollmentResumed: an enrollment begun by one Enroller finishes under another (an
// RA replica) from what Save kept; the resumed one checks the begin message again, and a
// saved secret that is not the challenge's fails the credential check.
func TestEnrollmentResumed(t *testing.T) {
	h := newHost(t)
	p := h.prover(t, "")
	v := h.verifier()
	run := func(edit func(*verify.SavedEnrollment), enroller *verify.Enroller) error {
		t.Helper()
		e, begin, err := p.BeginEnrollment("auth.funlab.casa", tpm2.TPMAlgECC)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		raw, err := protocol.EncodeEnroll(begin)
		if err != nil {
			t.Fatal(err)
		}
		first, ch, err := (&verify.Enroller{EK: v.EK}).BeginEnrollment(begin)
		if err != nil {
			t.Fatal(err)
		}
		saved := first.Save(raw)
		if edit != nil {
			edit(saved)
		}
		ch.Session = "s1"
		finish, err := e.Answer(ch)
		if err != nil {
			t.Fatal(err)
		}
		resumed, err := enroller.ResumeEnrollment(saved)
		if err != nil {
			return err
		}
		_, err = resumed.Finish(finish)
		return err
	}
	if err := run(nil, &verify.Enroller{EK: v.EK}); err != nil {
		t.Fatalf("resumed enrollment refused: %v", err)
	}
	err := run(func(s *verify.SavedEnrollment) { s.Secret[0] ^= 1 }, &verify.Enroller{EK: v.EK})
	if verify.FailedCheck(err) != verify.CheckCredential {
		t.Fatalf("a saved secret not the challenge's: %v, want check %s", err, verify.CheckCredential)
	}
	err = run(nil, &verify.Enroller{})
	if verify.FailedCheck(err) != verify.CheckEKCertificate {
		t.Fatalf("resumed under an Enroller that trusts no manufacturer: %v, want check %s", err, verify.CheckEKCertificate)
	}
	err = run(func(s *verify.SavedEnrollment) { s.Nonce = s.Nonce[:16] }, &verify.Enroller{EK: v.EK})
	if err == nil || !strings.Contains(err.Error(), "saved challenge: secret is 32 bytes and nonce 16, want 32 each") {
		t.Fatalf("a short saved nonce: %v", err)
	}
}
