package verify_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

// Each execution of FuzzFinish runs two sessions (about a millisecond); the fuzzer's
// default of a minute of minimization per new input then takes most of a short run. Run
// it with a short -fuzzminimizetime:
//
//	go test -run '^$' -fuzz '^FuzzFinish$' -fuzztime 30s -fuzzminimizetime 2s ./verify/

// attestFuzzData is what the attestation fuzzers start from, recorded once per process on
// the in-process simulator, which is closed before fuzzing starts: the fuzzed code is the
// verifier alone.
type attestFuzzData struct {
	ca *mfgca.CA
	// hellos are real Hellos: RSA and ECC EKs, with and without certificate.
	hellos [][]byte
	// helloNoCert (RSA EK, allow-listed by ekHash) starts every FuzzFinish session; with
	// the fixed stream below its challenge is always the same, so honest answers it.
	helloNoCert []byte
	ekHash      string
	honest      []byte
	// evidences are real answers to that challenge, honest and not.
	evidences [][]byte
	// quotes are the quotes the TPM made (TPM2_Quote) in those answers.
	quotes [][]byte
}

const fuzzStreamSeed = "omens verify fuzz"

var attestFuzz = sync.OnceValues(func() (*attestFuzzData, error) {
	ca, err := mfgca.NewEphemeral("omens verify fuzz")
	if err != nil {
		return nil, err
	}
	d := &attestFuzzData{ca: ca}
	for _, kind := range []tpm.EKKind{tpm.EKECCP256, tpm.EKECCP384} {
		tr, err := testattest.Record(openSimulator, testattest.Config{EKKind: kind, CA: ca}, fuzzVerifier(nil, nil))
		if err != nil {
			return nil, err
		}
		d.hellos = append(d.hellos, tr.Hello)
	}
	sim, err := openSimulator()
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	p, err := testattest.New(sim, testattest.Config{CA: ca})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	d.ekHash = p.EKHash()
	withCert, err := p.Hello(testattest.HelloOptions{})
	if err != nil {
		return nil, err
	}
	if d.helloNoCert, err = p.Hello(testattest.HelloOptions{NoEKCert: true}); err != nil {
		return nil, err
	}
	d.hellos = append(d.hellos, withCert, d.helloNoCert)
	_, ch, err := d.finishVerifier().Begin(d.helloNoCert)
	if err != nil {
		return nil, err
	}
	for _, o := range []testattest.EvidenceOptions{
		{},
		{NotTPMGenerated: true},
		{QuotePCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{Nonce: make([]byte, 32)},
		{ChangePCRValue: true},
		{WrongSecret: true},
	} {
		b, err := p.Evidence(ch, o)
		if err != nil {
			return nil, err
		}
		d.evidences = append(d.evidences, b)
		if !o.NotTPMGenerated {
			ev, err := protocol.DecodeEvidence(b)
			if err != nil {
				return nil, err
			}
			d.quotes = append(d.quotes, ev.Quote)
		}
	}
	d.honest = d.evidences[0]
	return d, nil
})

// fuzzVerifier requires the default selection; policy changes its EK policy.
func fuzzVerifier(bundle *verify.Bundle, policy func(*verify.EKPolicy)) *verify.Verifier {
	v := &verify.Verifier{EK: verify.EKPolicy{Bundle: bundle}, PCRBank: tpm2.TPMAlgSHA256, PCRs: testattest.DefaultPCRs}
	if policy != nil {
		policy(&v.EK)
	}
	return v
}

// finishVerifier accepts the fuzz TPM by its allow-listed EK (no chain to verify, so that
// each fuzzed Finish costs one Begin of little more than MakeCredential) and draws the
// same secret and nonce at every Begin.
func (d *attestFuzzData) finishVerifier() *verify.Verifier {
	v := fuzzVerifier(nil, func(p *verify.EKPolicy) { p.Allow = map[string]bool{d.ekHash: true} })
	v.Rand = testattest.FixedStream(fuzzStreamSeed)
	return v
}

func loadAttestFuzz(f *testing.F) *attestFuzzData {
	f.Helper()
	d, err := attestFuzz()
	if err != nil {
		f.Fatal(err)
	}
	return d
}

// FuzzBegin feeds arbitrary Hello bytes to Begin under a strict policy (certificate
// required) and a lenient one (allow_insecure), which reaches the AK checks and
// MakeCredential with whatever EK the input holds.
func FuzzBegin(f *testing.F) {
	d := loadAttestFuzz(f)
	for _, h := range d.hellos {
		f.Add(h)
	}
	f.Add(d.honest)
	f.Add([]byte(`{"v":1,"type":"hello","mode":"ek_cert","ek_public":"AAE=","ak_public":"AAE=","pcr_bank":"sha256","pcrs":[0,2,4,7]}`))
	strict := fuzzVerifier(testattest.CABundle(d.ca), nil)
	lenient := fuzzVerifier(testattest.CABundle(d.ca), func(p *verify.EKPolicy) { p.AllowInsecure = true })
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []*verify.Verifier{strict, lenient} {
			s, ch, err := v.Begin(b)
			if err != nil {
				if s != nil || ch != nil {
					t.Fatalf("Begin returned a session or a challenge with error %v", err)
				}
				if verify.FailedCheck(err) == "" {
					t.Fatalf("rejection names no check: %v", err)
				}
				continue
			}
			if s == nil || s.Identity == nil || len(ch.Nonce) != 32 || len(ch.CredentialBlob) == 0 || len(ch.EncryptedSecret) == 0 {
				t.Fatalf("Begin accepted with an incomplete session or challenge: %+v %+v", s, ch)
			}
			cb, err := protocol.Encode(ch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := protocol.DecodeChallenge(cb); err != nil {
				t.Fatalf("the challenge Begin made does not decode: %v", err)
			}
		}
	})
}

// FuzzFinish feeds arbitrary Evidence bytes to an honest session (raw), and the honest
// Evidence with its quote and signature replaced by arbitrary bytes (quote, sig) inside
// valid JSON, so that the TPM structure parsers and the signature check get the input.
// What is accepted must be the TPM's own statement: one of its quotes, and the PCR values
// it holds.
func FuzzFinish(f *testing.F) {
	d := loadAttestFuzz(f)
	honest, err := protocol.DecodeEvidence(d.honest)
	if err != nil {
		f.Fatal(err)
	}
	for _, raw := range d.evidences {
		ev, err := protocol.DecodeEvidence(raw)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, ev.Quote, ev.Signature)
	}
	f.Add(d.honest[:len(d.honest)/2], honest.Quote[:len(honest.Quote)/2], honest.Signature[:8])
	f.Add(d.helloNoCert, []byte{}, []byte{0, 0x18, 0, 0x0B})

	begin := func(t *testing.T) *verify.Session {
		s, _, err := d.finishVerifier().Begin(d.helloNoCert)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	accepted := func(t *testing.T, res *verify.Result, err error, quote []byte) {
		t.Helper()
		if err != nil {
			if res != nil {
				t.Fatalf("Finish returned a result with error %v", err)
			}
			if verify.FailedCheck(err) == "" {
				t.Fatalf("rejection names no check: %v", err)
			}
			return
		}
		// A signature may have another valid form (ECDSA s or n-s); the quote may not.
		if !slices.ContainsFunc(d.quotes, func(q []byte) bool { return bytes.Equal(q, quote) }) {
			t.Fatalf("accepted a quote the TPM did not make: %x", quote)
		}
		for i, pcr := range testattest.DefaultPCRs {
			if !bytes.Equal(res.PCRs[pcr], honest.PCRValues[i]) {
				t.Fatalf("accepted PCR %d = %x, the TPM has %x", pcr, res.PCRs[pcr], honest.PCRValues[i])
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw, quote, sig []byte) {
		res, err := begin(t).Finish(raw)
		if err == nil {
			ev, derr := protocol.DecodeEvidence(raw)
			if derr != nil {
				t.Fatalf("accepted evidence that does not decode: %v", derr)
			}
			accepted(t, res, nil, ev.Quote)
		} else {
			accepted(t, res, err, nil)
		}

		ev := *honest
		ev.Quote, ev.Signature = quote, sig
		b, err := protocol.Encode(&ev)
		if err != nil {
			t.Fatal(err)
		}
		res, err = begin(t).Finish(b)
		accepted(t, res, err, quote)
	})
}
