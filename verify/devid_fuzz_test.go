package verify_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// devidRecording records the DevID test data once per process (the fuzzers' workers
// each record their own); the fuzzed code is the verifier alone.
var devidRecording = sync.OnceValues(recordDevID)

// FuzzCheckDevIDPublic: what is accepted is a canonical public area of a DevID-shaped key
// whose returned key is the area's.
func FuzzCheckDevIDPublic(f *testing.F) {
	d := loadDevIDData(f)
	for _, s := range [][]byte{d.a, d.b, d.rsa, d.software, d.decrypt, d.srk, d.rsa1024, tpm2.Marshal(d.ak),
		tpm2.Marshal(tpmrules.DevIDTemplateRSA), tpm2.Marshal(tpmrules.DevIDTemplateECC)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, key, err := verify.CheckDevIDPublic(b)
		if err != nil {
			if pub != nil || key != nil {
				t.Fatal("key returned with an error")
			}
			if verify.FailedCheck(err) != verify.CheckDevIDAttributes {
				t.Fatalf("rejection names check %q: %v", verify.FailedCheck(err), err)
			}
			return
		}
		if !bytes.Equal(tpm2.Marshal(*pub), b) {
			t.Fatal("accepted a public area that does not re-encode to itself")
		}
		if err := tpm.IsDevIDKey(pub); err != nil {
			t.Fatalf("accepted: %v", err)
		}
		want, err := tpm2.Pub(*pub)
		if err != nil || !key.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Fatalf("returned key %v is not the public area's (%v)", key, err)
		}
	})
}

// FuzzVerifyCertify: with the recorded AK, what is accepted is a Certify the TPM made
// over the nonce, about the key presented.
func FuzzVerifyCertify(f *testing.F) {
	d := loadDevIDData(f)
	for _, c := range []struct {
		certify [2][]byte
		pub     []byte
	}{
		{d.certifyA, d.a}, {d.certifyRSA, d.rsa}, {d.otherAK, d.a}, {d.staleA, d.a},
		{d.notGenerated, d.a}, {d.quote, d.a}, {d.certifyA, d.b},
	} {
		f.Add(c.certify[0], c.certify[1], d.nonce, c.pub)
	}
	// What the AK signed that is a Certify: the fuzzer cannot make another.
	signed := [][]byte{d.certifyA[0], d.certifyRSA[0], d.staleA[0]}
	f.Fuzz(func(t *testing.T, attest, sig, nonce, pub []byte) {
		err := verify.VerifyCertify(&d.ak, attest, sig, nonce, pub)
		if err != nil {
			if verify.FailedCheck(err) == "" && len(nonce) >= 16 {
				t.Fatalf("rejection names no check: %v", err)
			}
			return
		}
		found := false
		for _, s := range signed {
			found = found || bytes.Equal(s, attest)
		}
		if !found {
			t.Fatalf("accepted a Certify the TPM did not make: %x", attest)
		}
		a, err := tpm2.Unmarshal[tpm2.TPMSAttest](attest)
		if err != nil || !bytes.Equal(a.ExtraData.Buffer, nonce) {
			t.Fatalf("accepted a Certify over %x with nonce %x (%v)", a.ExtraData.Buffer, nonce, err)
		}
		info, err := a.Attested.Certify()
		p, perr := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
		if err != nil || perr != nil {
			t.Fatalf("accepted: %v %v", err, perr)
		}
		name, err := tpm2.ObjectName(p)
		if err != nil || !bytes.Equal(name.Buffer, info.Name.Buffer) || !bytes.Equal(tpm2.Marshal(*p), pub) {
			t.Fatalf("accepted a Certify about %x for the key %x", info.Name.Buffer, pub)
		}
	})
}

// FuzzCheckCSR: against DevID key a, what is accepted is a CSR that a signed, which only
// the TPM can make: one of the recorded ones, whatever its signature's encoding.
func FuzzCheckCSR(f *testing.F) {
	d := loadDevIDData(f)
	f.Add(d.csrA)
	f.Add(d.csrBSignedByA)
	f.Add(d.csrA[:len(d.csrA)/2])
	a := must(tpm2.Pub(*must(tpm2.Unmarshal[tpm2.TPMTPublic](d.a))))
	recorded := must(x509.ParseCertificateRequest(d.csrA))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := verify.CheckCSR(b, a)
		if err != nil {
			if csr != nil {
				t.Fatal("CSR returned with an error")
			}
			if c := verify.FailedCheck(err); c != verify.CheckCSRSignature && c != verify.CheckCSRKey {
				t.Fatalf("rejection names check %q: %v", c, err)
			}
			return
		}
		if !bytes.Equal(csr.RawTBSCertificateRequest, recorded.RawTBSCertificateRequest) {
			t.Fatalf("accepted a CSR the DevID key did not sign: %x", b)
		}
	})
}
