package verify

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzUnmarshalPublic checks the walker against go-tpm: whatever unmarshalPublic accepts
// re-encodes to exactly its input, decoded afresh and again from its remembered template
// (the second call), and a canonical RSA or ECC public area without reserved attribute
// bits is accepted.
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
			again, err := unmarshalPublic(b)
			if err != nil {
				t.Fatalf("accepted once, refused from its template: %v", err)
			}
			if !bytes.Equal(tpm2.Marshal(*again), b) {
				t.Fatal("decoded from its template, the bytes do not re-encode to themselves")
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

// TestPublicFromTemplate: two public areas of one template, the second decoded from the
// first's remembered template, each decode to their own key, and go-tpm decodes them alike.
func TestPublicFromTemplate(t *testing.T) {
	for _, tmpl := range []tpm2.TPMTPublic{tpm2.RSAEKTemplate, tpm2.ECCEKTemplate} {
		var keys [][]byte
		for i := range 3 {
			p := tmpl
			k := bytes.Repeat([]byte{byte(0x41 + i)}, 32)
			if p.Type == tpm2.TPMAlgRSA {
				p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: bytes.Repeat(k, 8)})
			} else {
				p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: k}, Y: tpm2.TPM2BECCParameter{Buffer: k[:31]}})
			}
			b := tpm2.Marshal(p)
			pub, err := unmarshalPublic(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := tpm2.Marshal(*pub); !bytes.Equal(got, b) {
				t.Fatalf("decode %d re-encodes to %x, want %x", i, got, b)
			}
			ref, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tpm2.Marshal(*ref), tpm2.Marshal(*pub)) {
				t.Fatalf("decode %d differs from go-tpm's", i)
			}
			_, at, err := publicSize(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := templates.get(string(b[:at])); !ok {
				t.Errorf("%v: template not remembered", tmpl.Type)
			}
			var u []byte
			if rsa, err := pub.Unique.RSA(); err == nil {
				u = rsa.Buffer
			} else if ecc, err := pub.Unique.ECC(); err == nil {
				u = append(append(u, ecc.X.Buffer...), ecc.Y.Buffer...)
			}
			if want := b[at+2:]; p.Type == tpm2.TPMAlgRSA && !bytes.Equal(u, want) {
				t.Errorf("decode %d: unique %x, want %x", i, u, want)
			}
			keys = append(keys, u)
		}
		if bytes.Equal(keys[0], keys[1]) || bytes.Equal(keys[1], keys[2]) {
			t.Fatalf("%v: two public areas of one template decoded to the same unique", tmpl.Type)
		}
	}
}
