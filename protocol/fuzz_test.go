package protocol_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// recorded is an honest attestation on the in-process simulator, for real seeds; nil
// when the simulator is not built in (no cgo).
var recorded = sync.OnceValue(func() *testattest.Transcript {
	v := &verify.Verifier{PCRBank: tpm2.TPMAlgSHA256, PCRs: testattest.DefaultPCRs}
	tr, err := testattest.Record(func() (transport.TPMCloser, error) { return tpm.Open(tpm.Simulator) }, testattest.Config{}, v)
	if err != nil {
		return nil
	}
	return tr
})

// recordedDevID is an honest DevID-mode attestation, as recorded.
var recordedDevID = sync.OnceValue(func() *testattest.Transcript {
	v := &verify.Verifier{Mode: protocol.ModeDevID, PCRBank: tpm2.TPMAlgSHA256, PCRs: testattest.DefaultPCRs}
	tr, err := testattest.Record(func() (transport.TPMCloser, error) { return tpm.Open(tpm.Simulator) }, testattest.Config{DevID: tpm2.TPMAlgECC}, v)
	if err != nil {
		return nil
	}
	return tr
})

// seeds adds the real messages (all three: each decoder must refuse the other two) and
// the hand-made ones of protocol_test.go.
func seeds(f *testing.F) {
	for _, tr := range []*testattest.Transcript{recorded(), recordedDevID()} {
		if tr == nil {
			f.Log("simulator not available: seeding with hand-made messages only")
			continue
		}
		f.Add(tr.Hello)
		f.Add(tr.Challenge)
		f.Add(tr.Evidence)
	}
	f.Add(obj(helloFields...))
	f.Add(obj(with(helloFields, `"ek_cert":`)...))
	f.Add(obj(challengeFields...))
	f.Add(obj(evidenceFields...))
	f.Add(obj(with(evidenceFields, `"event_log":"AAECAw=="`)...))
	f.Add(obj(append(slices.Clone(helloFields), devidFields...)...))
	f.Add(obj(append(slices.Clone(evidenceFields), certifyFields...)...))
	f.Add([]byte(`{"v":1,"type":"hello","pcrs":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
}

// roundTrip checks that an accepted message encodes to one that is accepted and encodes
// the same way again. (Decoding is not compared field by field: an empty byte field that
// was present comes back absent, which is the same message.)
func roundTrip[T any](t *testing.T, m *T, decode func([]byte) (*T, error)) {
	b, err := protocol.Encode(m)
	if err != nil {
		t.Fatalf("accepted message does not encode: %v", err)
	}
	again, err := decode(b)
	if err != nil {
		t.Fatalf("re-encoded message refused: %v\n%s", err, b)
	}
	b2, err := protocol.Encode(again)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the message:\n %s\n %s (%v)", b, b2, err)
	}
}

func FuzzDecodeHello(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := protocol.DecodeHello(b)
		if err != nil {
			return
		}
		if len(m.EKPublic) == 0 || len(m.AKPublic) == 0 || len(m.PCRs) == 0 || len(m.PCRs) > 24 {
			t.Fatalf("accepted a hello without its required fields: %+v", m)
		}
		for i, p := range m.PCRs {
			if p < 0 || p > 23 || (i > 0 && p <= m.PCRs[i-1]) {
				t.Fatalf("accepted PCR selection %v", m.PCRs)
			}
		}
		switch m.Mode {
		case protocol.ModeEKCert:
			if m.DevIDCert != nil || len(m.DevIDPublic) != 0 {
				t.Fatalf("accepted a DevID in mode ek_cert: %+v", m)
			}
		case protocol.ModeDevID:
			if len(m.DevIDCert) == 0 || len(m.DevIDCert) > protocol.MaxDevIDChain || len(m.DevIDPublic) == 0 ||
				slices.ContainsFunc(m.DevIDCert, func(c []byte) bool { return len(c) == 0 }) {
				t.Fatalf("accepted a DevID-mode hello without its DevID: %+v", m)
			}
		default:
			t.Fatalf("accepted mode %q", m.Mode)
		}
		roundTrip(t, m, protocol.DecodeHello)
	})
}

func FuzzDecodeChallenge(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := protocol.DecodeChallenge(b)
		if err != nil {
			return
		}
		if len(m.Nonce) == 0 || len(m.Nonce) > 64 || len(m.CredentialBlob) == 0 || len(m.EncryptedSecret) == 0 {
			t.Fatalf("accepted a challenge out of bounds: %+v", m)
		}
		roundTrip(t, m, protocol.DecodeChallenge)
	})
}

func FuzzDecodeEvidence(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := protocol.DecodeEvidence(b)
		if err != nil {
			return
		}
		if len(m.Secret) == 0 || len(m.Quote) == 0 || len(m.Signature) == 0 || len(m.PCRValues) == 0 || len(m.PCRValues) > 24 {
			t.Fatalf("accepted evidence without its required fields: %+v", m)
		}
		for _, v := range m.PCRValues {
			if len(v) == 0 || len(v) > 64 {
				t.Fatalf("accepted PCR value of %d bytes", len(v))
			}
		}
		if (len(m.DevIDCertify) == 0) != (len(m.DevIDCertifySignature) == 0) {
			t.Fatalf("accepted a DevID Certify without its signature, or the reverse: %+v", m)
		}
		roundTrip(t, m, protocol.DecodeEvidence)
	})
}
