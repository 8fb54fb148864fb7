package verify_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/verify"
)

var (
	oidEKCert = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	oidAKCert = asn1.ObjectIdentifier{2, 23, 133, 8, 3}
)

// TestAKCertificateIsNoEKCertificate: a certificate of a signing key, however it chains,
// is refused as an EK certificate; the rule is VerifyEKCertificate's, which omens ek
// verify, the attestation verifier and the RA all call.
func TestAKCertificateIsNoEKCertificate(t *testing.T) {
	plain := newPlainCA(t)
	bundle := verify.NewBundle([]*x509.Certificate{plain.cert}, nil)
	for _, c := range []struct {
		name   string
		tmpl   *x509.Certificate
		quirks []string
		err    string
	}{
		{name: "AK EKU", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x51), UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidAKCert}},
			err: "verify: not an EK certificate: serial 0x51 is an AK certificate: its extended key usage lists tcg-kp-AIKCertificate (2.23.133.8.3); an EK certificate certifies a decryption key"},
		{name: "AK and EK EKU", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x52), UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCert, oidAKCert}},
			err: "verify: not an EK certificate: serial 0x52 is an AK certificate: its extended key usage lists tcg-kp-AIKCertificate (2.23.133.8.3); an EK certificate certifies a decryption key"},
		{name: "keyUsage digitalSignature, no EKU", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x53), KeyUsage: x509.KeyUsageDigitalSignature},
			err: "verify: not an EK certificate: serial 0x53 certifies a signing key (an AK certificate?): keyUsage has digitalSignature without keyEncipherment or keyAgreement, and no extended key usage tcg-kp-EKCertificate"},
		{name: "keyUsage digitalSignature and contentCommitment, no EKU", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x54), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment},
			err: "verify: not an EK certificate: serial 0x54 certifies a signing key (an AK certificate?): keyUsage has digitalSignature without keyEncipherment or keyAgreement, and no extended key usage tcg-kp-EKCertificate"},
		{name: "keyUsage keyEncipherment (RSA EK)", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x55), KeyUsage: x509.KeyUsageKeyEncipherment, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCert}}},
		{name: "keyUsage keyAgreement (ECC EK), no EKU", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x56), KeyUsage: x509.KeyUsageKeyAgreement}},
		{name: "keyUsage digitalSignature and keyEncipherment", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x57), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}},
		{name: "keyUsage digitalSignature with the EK EKU (Google vTPM)", tmpl: &x509.Certificate{SerialNumber: big.NewInt(0x58), KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCert}},
			quirks: []string{"keyUsage digitalSignature without keyEncipherment or keyAgreement, accepted for its extended key usage tcg-kp-EKCertificate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ek := plain.sign(t, &p256().PublicKey, c.tmpl)
			if strings.Join(ek.Quirks, "|") != strings.Join(c.quirks, "|") {
				t.Errorf("quirks %q, want %q", ek.Quirks, c.quirks)
			}
			_, err := bundle.VerifyEKCertificate(ek, time.Now())
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err == "":
			case err == nil || err.Error() != c.err || !errors.Is(err, verify.ErrNotEKCert):
				t.Fatalf("error %v\nwant %s", err, c.err)
			}
		})
	}
}

// TestAttestRefusesAKCertificateAsEKCertificate: through the verifier (node attestation;
// the RA's enrollment checks the EK with the same code), an AK certificate of a CA the
// server trusts, issued for this TPM's EK key, is refused.
func TestAttestRefusesAKCertificateAsEKCertificate(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{})
	plain := newPlainCA(t)
	akCert := plain.sign(t, e.p.EKPublicKey(), &x509.Certificate{SerialNumber: big.NewInt(0xA1),
		KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidAKCert}})
	v := e.verifier(nil)
	v.EK.Bundle = verify.NewBundle([]*x509.Certificate{e.ca.Root(), plain.cert}, []*x509.Certificate{e.ca.Intermediate()})
	_, _, err := v.Begin(e.hello(testattest.HelloOptions{EKCert: akCert.Cert.Raw}))
	want := "verify: ek_certificate: verify: not an EK certificate: serial 0xa1 is an AK certificate: its extended key usage lists tcg-kp-AIKCertificate (2.23.133.8.3); an EK certificate certifies a decryption key (ek_hash=" + e.p.EKHash() + ")"
	if err == nil || err.Error() != want || verify.FailedCheck(err) != verify.CheckEKCertificate {
		t.Fatalf("Begin: %v\nwant %s", err, want)
	}
	// The enrollment (RA) side: the same EK check comes first.
	_, _, err = (&verify.Enroller{EK: v.EK, Now: v.Now, Rand: v.Rand}).BeginEnrollment(&protocol.EnrollBegin{Host: "auth", EKCert: akCert.Cert.Raw,
		EKPublic: tpm2.Marshal(e.p.EK.Public), AKPublic: tpm2.Marshal(e.p.AK.Public)})
	if err == nil || err.Error() != want {
		t.Fatalf("BeginEnrollment: %v\nwant %s", err, want)
	}
}

// sha1Sign re-signs a certificate made by crypto/x509 with SHA-1 RSA by key: the
// signature algorithm is replaced in the tbsCertificate and in the certificate.
func sha1Sign(t *testing.T, der []byte, key *rsa.PrivateKey) []byte {
	t.Helper()
	var cert struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &cert); err != nil {
		t.Fatal(err)
	}
	// Walk the tbsCertificate's elements by hand: version, serial, signature, the rest.
	var elems []asn1.RawValue
	rest := cert.TBS.Bytes
	for len(rest) > 0 {
		var v asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &v); err != nil {
			t.Fatal(err)
		}
		elems = append(elems, v)
	}
	sha1RSA := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, Parameters: asn1.NullRawValue}
	elems[2] = asn1.RawValue{FullBytes: must(asn1.Marshal(sha1RSA))}
	var body []byte
	for _, e := range elems {
		body = append(body, e.FullBytes...)
	}
	newTBS := must(asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body}))
	sum := sha1.Sum(newTBS)
	sig := must(rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, sum[:]))
	out := must(asn1.Marshal(struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}{asn1.RawValue{FullBytes: newTBS}, sha1RSA, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}}))
	c, err := x509.ParseCertificate(out)
	if err != nil || c.SignatureAlgorithm != x509.SHA1WithRSA {
		t.Fatalf("re-signed certificate: %v, %v", err, c.SignatureAlgorithm)
	}
	return out
}

// sha1Chain is a root, an intermediate the root signed with SHA-1 (as Infineon's "IFX
// TPM EK Intermediate CA" certificates are), and an EK certificate the intermediate signed
// with SHA-256.
type sha1Chain struct {
	root, inter *x509.Certificate
	ek          *verify.EKCertificate
}

func newSHA1Chain(t *testing.T) sha1Chain {
	t.Helper()
	now := time.Now()
	rootKey, interKey := rsaKey(), rsaKey2()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test TPM EK Root CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-year), NotAfter: now.Add(10 * year)}
	root := must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey))))
	interTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test TPM EK Intermediate CA 02"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-year), NotAfter: now.Add(5 * year)}
	inter := must(x509.ParseCertificate(sha1Sign(t, must(x509.CreateCertificate(rand.Reader, interTmpl, root, &interKey.PublicKey, rootKey)), rootKey)))
	ekTmpl := &x509.Certificate{SerialNumber: big.NewInt(0xE5), KeyUsage: x509.KeyUsageKeyAgreement, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCert},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(year)}
	ek := must(verify.ParseEKCertificate(must(x509.CreateCertificate(rand.Reader, ekTmpl, inter, &p256().PublicKey, interKey))))
	return sha1Chain{root: root, inter: inter, ek: ek}
}

// TestSHA1IntermediateSaidFirst: a chain refused because an intermediate is signed with
// SHA-1 says so first, in plain words, with what to do, whether the bundle was loaded from
// files (LoadBundle leaves such an intermediate out) or built with NewBundle.
func TestSHA1IntermediateSaidFirst(t *testing.T) {
	c := newSHA1Chain(t)
	dir := t.TempDir()
	for name, cert := range map[string]*x509.Certificate{"root.pem": c.root, "intermediate.pem": c.inter} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loaded, _, err := verify.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	const first = `verify: certificate not trusted: intermediate CA "Test TPM EK Intermediate CA 02" is signed with SHA-1 (SHA1-RSA) by "Test TPM EK Root CA", which Go's crypto/x509 refuses (no setting re-enables SHA-1 since Go 1.24): ` + ekSHA1Advice + `; `
	const issuer = `issuer "CN=Test TPM EK Intermediate CA 02" (serial 0xe5) does not chain to the CA bundle: x509: certificate signed by unknown authority`
	for _, b := range []struct {
		name   string
		bundle *verify.Bundle
		want   string
	}{
		{"LoadBundle", loaded, first + issuer + `; the issuer is in the CA bundle but unusable: "CN=Test TPM EK Intermediate CA 02": no chain to a root of the bundle: signed by "CN=Test TPM EK Root CA" with SHA1-RSA, which crypto/x509 refuses (x509: cannot verify signature: insecure algorithm SHA1-RSA)`},
		{"NewBundle", verify.NewBundle([]*x509.Certificate{c.root}, []*x509.Certificate{c.inter}), first + issuer +
			` (possibly because of "x509: cannot verify signature: insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "Test TPM EK Root CA")`},
	} {
		t.Run(b.name, func(t *testing.T) {
			_, err := b.bundle.VerifyEKCertificate(c.ek, time.Now())
			if err == nil || err.Error() != b.want || !errors.Is(err, verify.ErrUntrusted) {
				t.Fatalf("error\n  %v\nwant\n  %s", err, b.want)
			}
		})
	}

	// An EK certificate that only names the SHA-1 intermediate as its issuer, signed by
	// another key, is not blamed on SHA-1.
	plain := newPlainCA(t)
	forged := must(x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(0xF0), Subject: pkix.Name{},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCert}},
		&x509.Certificate{Subject: c.inter.Subject, RawSubject: c.inter.RawSubject}, &p256().PublicKey, plain.key))
	_, err = loaded.VerifyEKCertificate(must(verify.ParseEKCertificate(forged)), time.Now())
	if err == nil || strings.Contains(err.Error(), "is signed with SHA-1") {
		t.Errorf("forged EK certificate: %v; want no SHA-1 explanation", err)
	}
}

// TestSHA1RealInfineonIntermediates: with the real manufacturer CA collection, every
// Infineon "IFX TPM EK Intermediate CA" is signed with SHA-1 by "IFX TPM EK Root CA",
// itself signed with SHA-1 by VeriSign's TPM root (each signature valid); an EK
// certificate under one of them is explained in those words. The certificates are real;
// no IFX key being at hand, the EK certificate is the intermediate's own (the explanation
// is the same for any certificate it signed).
func TestSHA1RealInfineonIntermediates(t *testing.T) {
	dir := filepath.Join(realworld.Dir(t), "manufacturer-ca")
	b, _, err := verify.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "Infineon_IFX_TPM_EK_Intermediate_CA_*.pem"))
	if len(files) != 39 {
		t.Fatalf("%d IFX intermediates, want 39", len(files))
	}
	for _, f := range files {
		block, _ := pem.Decode(must(os.ReadFile(f)))
		inter := must(x509.ParseCertificate(block.Bytes))
		want := `certificate serial ` + serialHex(inter) + ` is signed with SHA-1 (SHA1-RSA) by "IFX TPM EK Root CA", and so is intermediate CA "IFX TPM EK Root CA" by "VeriSign Trusted Platform Module Root CA", which Go's crypto/x509 refuses (no setting re-enables SHA-1 since Go 1.24): ` + ekSHA1Advice
		if got := verify.SHA1Explanation(b, inter); got != want {
			t.Errorf("%s:\n  %s\nwant\n  %s", filepath.Base(f), got, want)
		}
	}
}

func serialHex(c *x509.Certificate) string { return "0x" + c.SerialNumber.Text(16) }
