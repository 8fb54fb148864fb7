package softtpm_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/bench/softtpm"
	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

func verifier(ca *mfgca.CA) *verify.Verifier {
	return &verify.Verifier{
		EK:      verify.EKPolicy{Bundle: testattest.CABundle(ca)},
		PCRBank: tpm2.TPMAlgSHA256,
		PCRs:    tpmrules.DefaultPCRs(),
	}
}

// attest runs one attestation through v: hello, then the evidence made for its challenge.
func attest(t *testing.T, v *verify.Verifier, hello []byte, evidence func(ch *protocol.Challenge, raw []byte) ([]byte, error)) (*verify.Result, error) {
	t.Helper()
	s, ch, err := v.Begin(hello)
	if err != nil {
		return nil, err
	}
	raw, err := protocol.Encode(ch)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence(ch, raw)
	if err != nil {
		t.Fatal(err)
	}
	return s.Finish(ev)
}

// TestEvidenceAcceptedLikeSimulator runs the same verifier, trusting one manufacturer CA,
// on the reference simulator's evidence (testattest's prover) and on a software TPM's:
// both are accepted, as valid EK certificates, each under its own EK hash, with the
// selection quoted and the firmware signed. A software TPM answering another's challenge
// is refused for its credential, as a TPM would be.
func TestEvidenceAcceptedLikeSimulator(t *testing.T) {
	ca, err := mfgca.NewEphemeral("omens softtpm test")
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(ca)

	sim, err := tpm.Open(tpm.Simulator)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	p, err := testattest.New(sim, testattest.Config{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	hello, err := p.Hello(testattest.HelloOptions{})
	if err != nil {
		t.Fatal(err)
	}
	simResult, err := attest(t, v, hello, func(ch *protocol.Challenge, _ []byte) ([]byte, error) {
		return p.Evidence(ch, testattest.EvidenceOptions{})
	})
	if err != nil {
		t.Fatalf("the simulator's evidence: %v", err)
	}

	soft, err := softtpm.New(ca)
	if err != nil {
		t.Fatal(err)
	}
	hello, err = soft.Hello()
	if err != nil {
		t.Fatal(err)
	}
	softResult, err := attest(t, v, hello, func(_ *protocol.Challenge, raw []byte) ([]byte, error) { return soft.Evidence(raw) })
	if err != nil {
		t.Fatalf("the software TPM's evidence: %v", err)
	}

	for _, c := range []struct {
		name string
		r    *verify.Result
		ek   string
	}{
		{"simulator", simResult, p.EKHash()},
		{"softtpm", softResult, must(verify.EKHash(soft.EKPublicKey()))},
	} {
		if c.r.EKHash != c.ek || c.r.CertStatus != "valid" || c.r.PCRBank != tpmrules.DefaultPCRBank || len(c.r.PCRs) != len(tpmrules.DefaultPCRs()) {
			t.Errorf("%s: result ek_hash=%s cert=%s bank=%s pcrs=%d; want ek_hash=%s, a valid certificate, %s and %d PCRs",
				c.name, c.r.EKHash, c.r.CertStatus, c.r.PCRBank, len(c.r.PCRs), c.ek, tpmrules.DefaultPCRBank, len(tpmrules.DefaultPCRs()))
		}
	}
	if want := protocol.FirmwareVersion(softtpm.FirmwareVersion); softResult.Firmware != want {
		t.Errorf("softtpm: signed firmware %q, want %q", softResult.Firmware, want)
	}

	other, err := softtpm.New(ca)
	if err != nil {
		t.Fatal(err)
	}
	hello, _ = soft.Hello()
	_, err = attest(t, v, hello, func(_ *protocol.Challenge, raw []byte) ([]byte, error) {
		// other holds neither the EK nor the AK: its activation cannot pass the
		// integrity check; send what it would have to guess.
		ev, err := soft.Evidence(raw)
		if err != nil {
			return nil, err
		}
		dec, _ := protocol.DecodeEvidence(ev)
		_, activateErr := softtpm.ActivateCredential(other.EK, &other.EKPublic, soft.AKName, mustChallenge(raw).CredentialBlob, mustChallenge(raw).EncryptedSecret)
		if activateErr == nil {
			t.Error("another software TPM's EK activated this TPM's credential")
		}
		dec.Secret = make([]byte, 32)
		rand.Read(dec.Secret)
		return protocol.Encode(dec)
	})
	if verify.FailedCheck(err) != verify.CheckCredential {
		t.Errorf("a guessed secret: %v, want check %s", err, verify.CheckCredential)
	}
}

// TestActivateCredentialEqualsSimulator loads the software TPM's EK private key into the
// reference simulator (TPM2_Import of the key, in the clear, as a restricted decryption key
// under an SRK: the same RSA key, name algorithm and symmetric algorithm, the three things
// credential protection uses; fixedTPM and fixedParent, which an imported object cannot
// have, take no part in it), creates an AK under it, and has the simulator's
// TPM2_ActivateCredential and softtpm.ActivateCredential answer the same challenges for
// that AK's name: byte for byte the same secret, and a changed blob refused by both.
func TestActivateCredentialEqualsSimulator(t *testing.T) {
	ca, err := mfgca.NewEphemeral("omens softtpm test")
	if err != nil {
		t.Fatal(err)
	}
	soft, err := softtpm.New(ca)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := tpm.Open(tpm.Simulator)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpmrules.SRKTemplateRSA)}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	defer flush(t, sim, srk.ObjectHandle)
	srkAuth := tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}

	pub := softtpm.EKPublicArea(&soft.EK.PublicKey)
	pub.ObjectAttributes = tpm2.TPMAObject{UserWithAuth: true, NoDA: true, Restricted: true, Decrypt: true}
	pub.AuthPolicy = tpm2.TPM2BDigest{}
	seed := make([]byte, 32)
	rand.Read(seed)
	sensitive := tpm2.Marshal(tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgRSA,
		SeedValue:     tpm2.TPM2BDigest{Buffer: seed},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgRSA, &tpm2.TPM2BPrivateKeyRSA{Buffer: soft.EK.Primes[0].Bytes()}),
	})
	imp, err := tpm2.Import{
		ParentHandle: srkAuth,
		ObjectPublic: tpm2.New2B(pub),
		Duplicate:    tpm2.TPM2BPrivate{Buffer: tpm2.Marshal(tpm2.TPM2BPrivate{Buffer: sensitive})},
		Symmetric:    tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(sim)
	if err != nil {
		t.Fatalf("Import of the software EK: %v", err)
	}
	ek, err := tpm2.Load{ParentHandle: srkAuth, InPrivate: imp.OutPrivate, InPublic: tpm2.New2B(pub)}.Execute(sim)
	if err != nil {
		t.Fatalf("Load of the software EK: %v", err)
	}
	defer flush(t, sim, ek.ObjectHandle)
	ekAuth := tpm2.AuthHandle{Handle: ek.ObjectHandle, Name: ek.Name, Auth: tpm2.PasswordAuth(nil)}

	// The AK of tpmrules.AKTemplate but for fixedTPM, which a child of an imported parent
	// cannot have (Part 1, 27.2.3); only its name enters the credential.
	akTemplate := tpmrules.AKTemplate
	akTemplate.ObjectAttributes.FixedTPM = false
	ak, err := tpm2.CreateLoaded{ParentHandle: ekAuth, InPublic: tpm2.New2BTemplate(&akTemplate)}.Execute(sim)
	if err != nil {
		t.Fatalf("CreateLoaded of an AK under the software EK: %v", err)
	}
	defer flush(t, sim, ak.ObjectHandle)
	akAuth := tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)}

	kem, err := tpm2.ImportEncapsulationKey(&soft.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		secret := make([]byte, 32)
		rand.Read(secret)
		blob, encSecret, err := tpm2.CreateCredential(rand.Reader, kem, ak.Name.Buffer, secret)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tpm2.ActivateCredential{
			ActivateHandle: akAuth, KeyHandle: ekAuth,
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: blob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
		}.Execute(sim)
		if err != nil {
			t.Fatalf("challenge %d: the simulator's ActivateCredential: %v", i, err)
		}
		got, err := softtpm.ActivateCredential(soft.EK, &soft.EKPublic, ak.Name.Buffer, blob, encSecret)
		if err != nil {
			t.Fatalf("challenge %d: softtpm.ActivateCredential: %v", i, err)
		}
		if !bytes.Equal(got, r.CertInfo.Buffer) || !bytes.Equal(got, secret) {
			t.Fatalf("challenge %d: softtpm answered %x, the simulator %x, the verifier sealed %x", i, got, r.CertInfo.Buffer, secret)
		}

		// One bit of encIdentity changed: the simulator answers TPM_RC_INTEGRITY, and so
		// does the software TPM.
		bad := bytes.Clone(blob)
		bad[len(bad)-1] ^= 1
		_, simErr := tpm2.ActivateCredential{
			ActivateHandle: akAuth, KeyHandle: ekAuth,
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: bad},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
		}.Execute(sim)
		if !errors.Is(simErr, tpm2.TPMRCIntegrity) {
			t.Fatalf("challenge %d, changed blob: the simulator answered %v, want TPM_RC_INTEGRITY", i, simErr)
		}
		if _, err := softtpm.ActivateCredential(soft.EK, &soft.EKPublic, ak.Name.Buffer, bad, encSecret); !errors.Is(err, softtpm.ErrIntegrity) {
			t.Fatalf("challenge %d, changed blob: softtpm answered %v, want %v", i, err, softtpm.ErrIntegrity)
		}
	}
}

func flush(t *testing.T, sim transport.TPM, h tpm2.TPMHandle) {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(sim); err != nil {
		t.Error(err)
	}
}

func mustChallenge(raw []byte) *protocol.Challenge {
	ch, err := protocol.DecodeChallenge(raw)
	if err != nil {
		panic(err)
	}
	return ch
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
