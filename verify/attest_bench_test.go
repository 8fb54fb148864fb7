//go:build unix

package verify_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/policy"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// The benchmarks verify pre-recorded messages, without a TPM: one honest attestation per
// EK kind is recorded on the in-process simulator, which is then closed.
//
// A recorded Evidence answers one challenge only: it holds the credential secret and a
// quote over the challenge's nonce. So the verifier is given a Rand that yields the same
// fixed stream at every Begin (testattest.FixedStream, created anew for each iteration):
// every challenge then carries the same secret and nonce, and the recorded Evidence stays
// valid. What is measured is the verifier's whole work, as with crypto/rand (which would
// cost about the same); only the randomness is predictable, which a real verifier must
// never allow.

const benchStreamSeed = "omens verify benchmark"

// benchKind is one EK kind's recorded attestation, and the inputs of the public-key
// operations that verifying it cannot avoid.
type benchKind struct {
	kind       tpmrules.EKKind
	v          verify.Verifier
	hello      []byte
	evidence   []byte
	leaf       *x509.Certificate // the EK certificate
	inter      *x509.Certificate
	root       *x509.Certificate
	ek         any // *rsa.PublicKey or *ecdh.PublicKey
	ak         *ecdsa.PublicKey
	quote      []byte
	sigR       *big.Int
	sigS       *big.Int
	transcript *testattest.Transcript
}

var benchKinds = sync.OnceValues(func() ([]*benchKind, error) {
	var out []*benchKind
	for _, kind := range []tpmrules.EKKind{tpmrules.EKRSA2048, tpmrules.EKECCP256} {
		v := verify.Verifier{PCRBank: tpm2.TPMAlgSHA256, PCRs: testattest.DefaultPCRs, Rand: testattest.FixedStream(benchStreamSeed)}
		tr, err := testattest.Record(openSimulator, testattest.Config{EKKind: kind}, &v)
		if err != nil {
			return nil, err
		}
		k := &benchKind{kind: kind, v: v, hello: tr.Hello, evidence: tr.Evidence, transcript: tr,
			inter: tr.CA.Intermediate(), root: tr.CA.Root()}
		h, err := protocol.DecodeHello(tr.Hello)
		if err != nil {
			return nil, err
		}
		if k.leaf, err = x509.ParseCertificate(h.EKCert); err != nil {
			return nil, err
		}
		ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](h.EKPublic)
		if err != nil {
			return nil, err
		}
		ek, err := tpm2.Pub(*ekPub)
		if err != nil {
			return nil, err
		}
		switch key := ek.(type) {
		case *ecdsa.PublicKey:
			if k.ek, err = key.ECDH(); err != nil {
				return nil, err
			}
		default:
			k.ek = key
		}
		akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](h.AKPublic)
		if err != nil {
			return nil, err
		}
		ak, err := tpm2.Pub(*akPub)
		if err != nil {
			return nil, err
		}
		k.ak = ak.(*ecdsa.PublicKey)
		ev, err := protocol.DecodeEvidence(tr.Evidence)
		if err != nil {
			return nil, err
		}
		k.quote = ev.Quote
		sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](ev.Signature)
		if err != nil {
			return nil, err
		}
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		k.sigR, k.sigS = new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		out = append(out, k)
	}
	return out, nil
})

func loadBenchKinds(b *testing.B) []*benchKind {
	b.Helper()
	ks, err := benchKinds()
	if err != nil {
		b.Fatal(err)
	}
	return ks
}

// BenchmarkVerifyAttestation is one complete server-side verification: decode the Hello,
// EK certificate parse and chain, certificate key against EK public area, AK checks,
// MakeCredential, then decode the Evidence, compare the secret, check the quote signature,
// nonce, selection and PCR digest; and the PCR policy (package policy) on the result, as
// the SPIRE server plugin does. "cold" is a TPM's first attestation: the CA bundle has
// not verified its EK certificate's chain yet (a new bundle at each iteration, made
// outside the measured time) and the verifier has not decoded its Hello (known.go);
// "warm" one of its re-attestations, with the chain and the decoded Hello remembered.
func BenchmarkVerifyAttestation(b *testing.B) {
	for _, k := range loadBenchKinds(b) {
		for _, temp := range temperatures {
			b.Run(temp+"/"+k.kind.Name, func(b *testing.B) {
				store := k.policyStore(b, "")
				v := k.verifier(b, temp)
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					b.StopTimer()
					v.prepare()
					b.StartTimer()
					k.verify(b, v.v, store)
				}
			})
		}
	}
}

// temperatures are the states of the CA bundle a verification is measured in: "cold",
// the EK's first attestation, and "warm", a re-attestation.
var temperatures = []string{"cold", "warm"}

// benchVerifier is a verifier for one temperature: prepare, outside the measured time,
// gives a cold verifier a bundle that has verified nothing.
type benchVerifier struct {
	v       *verify.Verifier
	prepare func()
}

func (k *benchKind) verifier(b *testing.B, temp string) benchVerifier {
	b.Helper()
	v := k.v
	bundle := func() *verify.Bundle {
		return verify.NewBundle([]*x509.Certificate{k.root}, []*x509.Certificate{k.inter})
	}
	v.EK.Bundle = bundle()
	bv := benchVerifier{v: &v, prepare: func() {}}
	switch temp {
	case "cold":
		bv.prepare = func() { v.EK.Bundle = bundle(); verify.ForgetKnownTPMs() }
	case "warm":
		k.verify(b, &v, nil) // the first attestation, which the bundle remembers
	default:
		b.Fatalf("temperature %q", temp)
	}
	return bv
}

// policyStore writes a PCR policy that allows the recorded boot state of this host; boot,
// when not empty, is a boot block of its group.
func (k *benchKind) policyStore(b *testing.B, boot string) *policy.Store {
	b.Helper()
	v := k.v
	v.Rand = testattest.FixedStream(benchStreamSeed)
	s, _, err := v.Begin(k.hello)
	if err != nil {
		b.Fatal(err)
	}
	res, err := s.Finish(k.evidence)
	if err != nil {
		b.Fatal(err)
	}
	var pcrs strings.Builder
	for _, i := range []int{0, 2, 4, 7} {
		fmt.Fprintf(&pcrs, "      %q = %q\n", fmt.Sprint(i), hex.EncodeToString(res.PCRs[i]))
	}
	src := fmt.Sprintf("group \"tower\" {\n  set \"firmware\" {\n    pcrs = {\n%s    }\n  }\n%s}\nhost %q {\n  group = \"tower\"\n}\n", pcrs.String(), boot, res.EKHash)
	path := filepath.Join(b.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	store, err := policy.Open(path, "")
	if err != nil {
		b.Fatal(err)
	}
	return store
}

// verify is one verification by v and, unless store is nil, the PCR policy on its result.
func (k *benchKind) verify(b *testing.B, v *verify.Verifier, store *policy.Store) *verify.Result {
	vv := *v
	vv.Rand = testattest.FixedStream(benchStreamSeed)
	s, _, err := vv.Begin(k.hello)
	if err != nil {
		b.Fatal(err)
	}
	res, err := s.Finish(k.evidence)
	if err != nil {
		b.Fatal(err)
	}
	if res.CertStatus != "valid" {
		b.Fatalf("CertStatus %q", res.CertStatus)
	}
	if store == nil {
		return res
	}
	if d, err := store.Evaluate(res.EKHash, res.PCRBank, res.PCRs, time.Now()); err != nil || !d.Allowed {
		b.Fatalf("PCR policy: %v %v", d, err)
	}
	return res
}

// BenchmarkVerifyAttestationToFloor runs a verification and the floor's operations in
// turn and reports the ratio of their times: on a busy machine, slow periods then hit
// both alike. The target (at most 1.3x) is the cold verification's: the floor holds the
// signatures of the EK chain, which only a cold verification checks; a warm one is
// reported against the same floor, to show what remembering the chain saves.
func BenchmarkVerifyAttestationToFloor(b *testing.B) {
	for _, k := range loadBenchKinds(b) {
		for _, temp := range temperatures {
			b.Run(temp+"/"+k.kind.Name, func(b *testing.B) {
				store := k.policyStore(b, "")
				v := k.verifier(b, temp)
				k.toFloor(b, v.prepare, func() { k.verify(b, v.v, store) })
			})
		}
	}
}

// toFloor runs full and the floor's operations in turn, b.N times, and reports their
// times and ratio.
// prepare runs before each verification, outside the measured time.
func (k *benchKind) toFloor(b *testing.B, prepare, full func()) {
	var fullTime, floor time.Duration
	for b.Loop() {
		prepare()
		t0 := time.Now()
		full()
		t1 := time.Now()
		k.floor(b)
		fullTime, floor = fullTime+t1.Sub(t0), floor+time.Since(t1)
	}
	b.ReportMetric(float64(fullTime.Nanoseconds())/float64(b.N), "full-ns/op")
	b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(fullTime)/float64(floor), "full/floor")
}

// reportCPU reports the CPU time of the process per iteration (cpu-ns/op, garbage
// collection included) next to the wall time: on a shared machine, other processes
// stretch ns/op, not cpu-ns/op, so the ratio of two benchmarks is read from cpu-ns/op.
// Call it as defer reportCPU(b)() before the loop.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// identityLabel is the KDF label of MakeCredential (TPM 2.0 Part 1, 24.4).
var identityLabel = []byte("IDENTITY\x00")

// BenchmarkPublicKeyFloor is only the public-key operations that such a verification
// cannot avoid: the EK certificate's signature by the intermediate and the intermediate's
// by the root (ECDSA P-384 here), MakeCredential's encapsulation of a seed to the EK
// (RSA-OAEP, or an ephemeral ECDH on the EK's curve), and the quote signature (ECDSA
// P-256 over the SHA-256 of the quote).
func BenchmarkPublicKeyFloor(b *testing.B) {
	for _, k := range loadBenchKinds(b) {
		b.Run(k.kind.Name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				k.floor(b)
			}
		})
	}
}

var floorSeed = make([]byte, 32)

func (k *benchKind) floor(b *testing.B) {
	if err := k.leaf.CheckSignatureFrom(k.inter); err != nil {
		b.Fatal(err)
	}
	if err := k.inter.CheckSignatureFrom(k.root); err != nil {
		b.Fatal(err)
	}
	switch ek := k.ek.(type) {
	case *rsa.PublicKey:
		if _, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, ek, floorSeed, identityLabel); err != nil {
			b.Fatal(err)
		}
	case *ecdh.PublicKey:
		eph, err := ek.Curve().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := eph.ECDH(ek); err != nil {
			b.Fatal(err)
		}
	}
	digest := sha256.Sum256(k.quote)
	if !ecdsa.Verify(k.ak, digest[:], k.sigR, k.sigS) {
		b.Fatal("quote signature does not verify")
	}
}
