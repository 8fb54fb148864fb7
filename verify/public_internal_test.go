package verify

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzUnmarshalPublic checks the walker against go-tpm: whatever unmarshalPublic accepts
// re-encodes to exactly its input, and a canonical RSA or ECC public area without reserved
// attribute bits is accepted.
func FuzzUnmarshalPublic(f *testing.F) {
	for _, tmpl := range []tpm2.TPMTPublic{tpm2.RSAEKTemplate, tpm2.ECCEKTemplate, tpm2.RSASRKTemplate, tpm2.ECCSRKTemplate} {
		f.Add(tpm2.Marshal(tmpl))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := unmarshalPublic(b)
		canon, cerr := unmarshalCanonical[tpm2.TPMTPublic](b)
		if err == nil {
			if cerr != nil {
				t.Fatalf("walker accepted what go-tpm re-encodes differently: %v", cerr)
			}
			if !bytes.Equal(tpm2.Marshal(*pub), b) {
				t.Fatal("accepted bytes do not re-encode to themselves")
			}
			return
		}
		if cerr == nil && (canon.Type == tpm2.TPMAlgRSA || canon.Type == tpm2.TPMAlgECC) {
			attrs := tpm2.Marshal(canon.ObjectAttributes)
			if len(attrs) == 4 && (uint32(attrs[0])<<24|uint32(attrs[1])<<16|uint32(attrs[2])<<8|uint32(attrs[3]))&reservedObjectAttributes == 0 {
				t.Fatalf("walker refused a canonical public area: %v", err)
			}
		}
	})
}
