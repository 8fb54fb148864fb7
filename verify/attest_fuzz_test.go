package verify_test

import (
	"bytes"
	"crypto/x509"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
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

	// DevID mode, on the same TPM (same EK) with an ECC DevID key of devidCA:
	// devidHellos are real DevID Hellos (with and without EK certificate, the latter
	// starting every DevID FuzzFinish session), devidEvidences real answers to its
	// challenge, honest and not, devidCertifies the Certify structures the TPM made over
	// the challenge's nonce.
	devidCA        *testattest.DevIDCA
	devidHellos    [][]byte
	devidHelloNoEK []byte
	devidHonest    []byte
	devidEvidences [][]byte
	devidCertifies [][]byte
	devidCRL       *x509.RevocationList
}

const fuzzStreamSeed = "omens verify fuzz"

var attestFuzz = sync.OnceValues(func() (*attestFuzzData, error) {
	ca, err := mfgca.NewEphemeral("omens verify fuzz")
	if err != nil {
		return nil, err
	}
	d := &attestFuzzData{ca: ca}
	for _, kind := range []tpmrules.EKKind{tpmrules.EKECCP256, tpmrules.EKECCP384} {
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
	if err := d.recordDevID(sim); err != nil {
		return nil, err
	}
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

// recordDevID records the DevID-mode data on sim, and closes what it loaded.
func (d *attestFuzzData) recordDevID(sim transport.TPM) error {
	var err error
	if d.devidCA, err = testattest.NewDevIDCA("omens verify fuzz DevID"); err != nil {
		return err
	}
	crl, err := d.devidCA.CRL(1, time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour))
	if err != nil {
		return err
	}
	if d.devidCRL, err = x509.ParseRevocationList(crl); err != nil {
		return err
	}
	p, err := testattest.New(sim, testattest.Config{CA: d.ca, DevID: tpm2.TPMAlgECC, DevIDCA: d.devidCA})
	if err != nil {
		return err
	}
	defer p.Close()
	d.ekHash = p.EKHash()
	withCert, err := p.Hello(testattest.HelloOptions{})
	if err != nil {
		return err
	}
	if d.devidHelloNoEK, err = p.Hello(testattest.HelloOptions{NoEKCert: true}); err != nil {
		return err
	}
	d.devidHellos = [][]byte{withCert, d.devidHelloNoEK}
	_, ch, err := d.devidVerifier().Begin(d.devidHelloNoEK)
	if err != nil {
		return err
	}
	for _, o := range []testattest.EvidenceOptions{
		{},
		{CertifyNonce: make([]byte, 32)},
		{CertifyKey: &tpm.DevIDKey{Handle: p.AK.Handle, Name: p.AK.Name}},
		{NoCertify: true},
		{WrongSecret: true},
	} {
		b, err := p.Evidence(ch, o)
		if err != nil {
			return err
		}
		d.devidEvidences = append(d.devidEvidences, b)
		ev, err := protocol.DecodeEvidence(b)
		if err != nil {
			return err
		}
		d.quotes = append(d.quotes, ev.Quote)
		if o.CertifyNonce == nil && !o.NoCertify {
			d.devidCertifies = append(d.devidCertifies, ev.DevIDCertify)
		}
	}
	d.devidHonest = d.devidEvidences[0]
	return nil
}

// devidVerifier is finishVerifier in DevID mode, trusting devidCA and its CRL.
func (d *attestFuzzData) devidVerifier() *verify.Verifier {
	v := d.finishVerifier()
	v.Mode = protocol.ModeDevID
	v.DevID = verify.DevIDPolicy{Bundle: d.devidCA.Bundle(), CRL: func() (*x509.RevocationList, error) { return d.devidCRL, nil }}
	return v
}

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
	for _, h := range append(slices.Clone(d.hellos), d.devidHellos...) {
		f.Add(h)
	}
	f.Add(d.honest)
	f.Add(d.devidHonest)
	f.Add([]byte(`{"v":1,"type":"hello","mode":"ek_cert","ek_public":"AAE=","ak_public":"AAE=","pcr_bank":"sha256","pcrs":[0,2,4,7]}`))
	f.Add([]byte(`{"v":1,"type":"hello","mode":"devid","ek_public":"AAE=","ak_public":"AAE=","pcr_bank":"sha256","pcrs":[0,2,4,7],"devid_cert":["MAA="],"devid_public":"AAE="}`))
	strict := fuzzVerifier(testattest.CABundle(d.ca), nil)
	lenient := fuzzVerifier(testattest.CABundle(d.ca), func(p *verify.EKPolicy) { p.AllowInsecure = true })
	devid := fuzzVerifier(testattest.CABundle(d.ca), func(p *verify.EKPolicy) { p.AllowInsecure = true })
	devid.Mode = protocol.ModeDevID
	devid.DevID = verify.DevIDPolicy{Bundle: d.devidCA.Bundle(), CRL: func() (*x509.RevocationList, error) { return d.devidCRL, nil }}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []*verify.Verifier{strict, lenient, devid} {
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
			if v == devid {
				// Only the DevID the CA certified, for the key the TPM made, passes.
				if s.Identity.DevID == nil || !bytes.Equal(s.Identity.DevID.Cert.Raw, devidLeaf(t, d.devidHonestHello())) {
					t.Fatalf("accepted a DevID the CA did not certify: %+v", s.Identity.DevID)
				}
			} else if s.Identity.DevID != nil {
				t.Fatalf("a DevID in mode %q", s.Identity.Mode)
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
// valid JSON, so that the TPM structure parsers and the signature check get the input;
// then the same to a DevID-mode session, with the honest DevID evidence's Certify replaced
// (certify, certifySig). What is accepted must be the TPM's own statement: one of its
// quotes, the PCR values it holds, and in DevID mode its Certify of the DevID key over the
// nonce.
func FuzzFinish(f *testing.F) {
	d := loadAttestFuzz(f)
	honest, err := protocol.DecodeEvidence(d.honest)
	if err != nil {
		f.Fatal(err)
	}
	devidHonest, err := protocol.DecodeEvidence(d.devidHonest)
	if err != nil {
		f.Fatal(err)
	}
	for i, raw := range append(slices.Clone(d.evidences), d.devidEvidences...) {
		ev, err := protocol.DecodeEvidence(raw)
		if err != nil {
			f.Fatal(err)
		}
		dev := d.devidEvidences[i%len(d.devidEvidences)]
		dv, err := protocol.DecodeEvidence(dev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, ev.Quote, ev.Signature, dv.DevIDCertify, dv.DevIDCertifySignature)
	}
	f.Add(d.honest[:len(d.honest)/2], honest.Quote[:len(honest.Quote)/2], honest.Signature[:8],
		devidHonest.DevIDCertify[:len(devidHonest.DevIDCertify)/2], devidHonest.DevIDCertifySignature[:8])
	f.Add(d.helloNoCert, []byte{}, []byte{0, 0x18, 0, 0x0B}, devidHonest.Quote, devidHonest.Signature)

	begin := func(t *testing.T, v *verify.Verifier, hello []byte) *verify.Session {
		s, _, err := v.Begin(hello)
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
	acceptedDevID := func(t *testing.T, res *verify.Result, err error, quote, certify []byte) {
		t.Helper()
		accepted(t, res, err, quote)
		if err == nil && (res.DevID == nil || !slices.ContainsFunc(d.devidCertifies, func(c []byte) bool { return bytes.Equal(c, certify) })) {
			t.Fatalf("accepted a Certify the TPM did not make over the nonce: %x", certify)
		}
	}
	f.Fuzz(func(t *testing.T, raw, quote, sig, certify, certifySig []byte) {
		for _, mode := range []string{protocol.ModeEKCert, protocol.ModeDevID} {
			v, hello, base := d.finishVerifier(), d.helloNoCert, *honest
			if mode == protocol.ModeDevID {
				v, hello, base = d.devidVerifier(), d.devidHelloNoEK, *devidHonest
			}
			res, err := begin(t, v, hello).Finish(raw)
			if err == nil {
				ev, derr := protocol.DecodeEvidence(raw)
				if derr != nil {
					t.Fatalf("accepted evidence that does not decode: %v", derr)
				}
				if mode == protocol.ModeDevID {
					acceptedDevID(t, res, nil, ev.Quote, ev.DevIDCertify)
				} else if accepted(t, res, nil, ev.Quote); res.DevID != nil || len(ev.DevIDCertify) != 0 {
					t.Fatalf("accepted a DevID Certify in mode ek_cert")
				}
			} else {
				accepted(t, res, err, nil)
			}

			ev := base
			ev.Quote, ev.Signature = quote, sig
			if mode == protocol.ModeDevID {
				ev.Quote, ev.Signature = devidHonest.Quote, devidHonest.Signature
				ev.DevIDCertify, ev.DevIDCertifySignature = certify, certifySig
			}
			b, err := protocol.Encode(&ev)
			if err != nil {
				t.Fatal(err)
			}
			res, err = begin(t, v, hello).Finish(b)
			if mode == protocol.ModeDevID {
				acceptedDevID(t, res, err, ev.Quote, certify)
			} else {
				accepted(t, res, err, quote)
			}
		}
	})
}

func (d *attestFuzzData) devidHonestHello() []byte { return d.devidHellos[0] }

// devidLeaf is the DevID certificate of a Hello.
func devidLeaf(t *testing.T, hello []byte) []byte {
	h, err := protocol.DecodeHello(hello)
	if err != nil {
		t.Fatal(err)
	}
	return h.DevIDCert[0]
}
