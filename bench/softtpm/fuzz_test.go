package softtpm_test

import (
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/bench/softtpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
)

// FuzzActivateCredential feeds the software TPM's credential activation the server's
// challenge fields as a hostile server could write them: it answers or refuses, never
// panics, and answers only with at most a digest's worth of bytes.
func FuzzActivateCredential(f *testing.F) {
	ca, err := mfgca.NewEphemeral("omens softtpm fuzz")
	if err != nil {
		f.Fatal(err)
	}
	soft, err := softtpm.New(ca)
	if err != nil {
		f.Fatal(err)
	}
	kem, err := tpm2.ImportEncapsulationKey(&soft.EKPublic)
	if err != nil {
		f.Fatal(err)
	}
	blob, secret, err := tpm2.CreateCredential(rand.Reader, kem, soft.AKName, make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob, secret, soft.AKName)
	f.Add([]byte{0, 32}, secret, soft.AKName)
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, blob, secret, name []byte) {
		got, err := softtpm.ActivateCredential(soft.EK, &soft.EKPublic, name, blob, secret)
		if err == nil && len(got) > 32 {
			t.Errorf("a %d-byte credential from a SHA-256 EK", len(got))
		}
	})
}
