package protocol_test

import (
	"testing"

	"omens.dev/omens/protocol"
)

// FuzzDecodeEnroll feeds arbitrary bytes to every decoder of DevID enrollment messages (a
// device's requests reach the RA from the network): none may panic, and whatever one
// accepts re-encodes and decodes to the same message type.
func FuzzDecodeEnroll(f *testing.F) {
	for _, m := range []any{
		&protocol.EnrollBegin{Host: "auth.funlab.casa", EKPublic: []byte{1}, AKPublic: []byte{2}, DevIDPublic: []byte{3}},
		&protocol.EnrollChallenge{Session: "ab", CredentialBlob: []byte{1}, EncryptedSecret: []byte{2}, Nonce: []byte{3}},
		&protocol.EnrollFinish{Session: "ab", Secret: []byte{1}, Certify: []byte{2}, CertifySignature: []byte{3}, CSR: []byte{4}},
		&protocol.EnrollResult{Chain: [][]byte{{0x30}}},
	} {
		b, err := protocol.EncodeEnroll(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := protocol.DecodeEnrollBegin(b); err == nil {
			again, _ := protocol.EncodeEnroll(m)
			if _, err := protocol.DecodeEnrollBegin(again); err != nil {
				t.Fatalf("accepted EnrollBegin does not survive re-encoding: %v", err)
			}
		}
		if m, err := protocol.DecodeEnrollChallenge(b); err == nil {
			again, _ := protocol.EncodeEnroll(m)
			if _, err := protocol.DecodeEnrollChallenge(again); err != nil {
				t.Fatalf("accepted EnrollChallenge does not survive re-encoding: %v", err)
			}
		}
		if m, err := protocol.DecodeEnrollFinish(b); err == nil {
			again, _ := protocol.EncodeEnroll(m)
			if _, err := protocol.DecodeEnrollFinish(again); err != nil {
				t.Fatalf("accepted EnrollFinish does not survive re-encoding: %v", err)
			}
		}
		if m, err := protocol.DecodeEnrollResult(b); err == nil {
			again, _ := protocol.EncodeEnroll(m)
			if _, err := protocol.DecodeEnrollResult(again); err != nil {
				t.Fatalf("accepted EnrollResult does not survive re-encoding: %v", err)
			}
		}
	})
}
