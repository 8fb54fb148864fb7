package mfgca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	p256   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOpenIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mfgca")
	ca1, err := mfgca.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := mfgca.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ca1.Root().Equal(ca2.Root()) || !ca1.Intermediate().Equal(ca2.Intermediate()) {
		t.Fatal("second Open loaded another CA")
	}
	if got, want := ca1.Root().Subject.CommonName, mfgca.RootCommonName; got != want {
		t.Errorf("root CN = %q, want %q", got, want)
	}
	if got, want := ca1.Intermediate().Subject.CommonName, mfgca.IntermediateCommonName; got != want {
		t.Errorf("intermediate CN = %q, want %q", got, want)
	}
	if ca1.Root().PublicKeyAlgorithm != x509.ECDSA || ca1.Root().PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P384() {
		t.Errorf("root key is not ECDSA P-384")
	}
	if got, want := ca1.BundlePath(), filepath.Join(dir, mfgca.BundleFile); got != want {
		t.Errorf("BundlePath() = %q, want %q", got, want)
	}
	bundle, err := os.ReadFile(ca1.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundle, ca1.BundlePEM()) {
		t.Error("bundle file differs from BundlePEM()")
	}
	for _, f := range []string{mfgca.RootKeyFile, mfgca.IntermediateKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", f, st.Mode().Perm())
		}
	}

	// A certificate issued after a "restart" verifies against the bundle written first.
	der, err := ca2.IssueEK(&p256().PublicKey, mfgca.EKTemplate{})
	if err != nil {
		t.Fatal(err)
	}
	b, problems, err := verify.LoadBundle(ca1.BundlePath())
	if err != nil || len(problems) != 0 {
		t.Fatalf("LoadBundle: %v %v", problems, err)
	}
	ek, err := verify.ParseEKCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := b.VerifyEKCertificate(ek, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 || len(chains[0]) != 3 || !chains[0][2].Equal(ca1.Root()) {
		t.Errorf("chains = %v, want leaf, intermediate, root", chains)
	}
}

func TestOpenRewritesMissingBundle(t *testing.T) {
	dir := t.TempDir()
	ca, err := mfgca.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ca.BundlePath()); err != nil {
		t.Fatal(err)
	}
	if _, err := mfgca.Open(dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(ca.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ca.BundlePEM()) {
		t.Error("rewritten bundle differs")
	}
}

func TestOpenRefusesPartialCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := mfgca.Open(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, mfgca.IntermediateKeyFile)); err != nil {
		t.Fatal(err)
	}
	_, err := mfgca.Open(dir)
	want := `mfgca: CA directory "` + dir + `" holds root.pem, root.key, intermediate.pem but not intermediate.key: refusing to create a new CA over a partial one`
	if err == nil || err.Error() != want {
		t.Errorf("Open() error = %v, want %s", err, want)
	}
}

func TestOpenRefusesMismatchedKey(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if _, err := mfgca.Open(d); err != nil {
			t.Fatal(err)
		}
	}
	key, err := os.ReadFile(filepath.Join(b, mfgca.RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, mfgca.RootKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = mfgca.Open(a)
	if want := "mfgca: root.key does not hold the key of root.pem"; err == nil || err.Error() != want {
		t.Errorf("Open() error = %v, want %s", err, want)
	}
}

func TestOpenConcurrentFirstStart(t *testing.T) {
	dir := t.TempDir()
	const n = 4
	cas := make([]*mfgca.CA, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cas[i], errs[i] = mfgca.Open(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !cas[i].Root().Equal(cas[0].Root()) {
			t.Fatal("concurrent Opens created different CAs")
		}
	}
}

func TestIssueEK(t *testing.T) {
	ca, err := mfgca.NewEphemeral("issue")
	if err != nil {
		t.Fatal(err)
	}
	if ca.BundlePath() != "" {
		t.Errorf("ephemeral BundlePath() = %q, want empty", ca.BundlePath())
	}
	bundle := verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate()})
	notBefore := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	notAfter := time.Date(2045, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		pub      crypto.PublicKey
		tmpl     mfgca.EKTemplate
		keyType  string
		usage    x509.KeyUsage
		wantSpec verify.TPMSpec
	}{
		{
			name: "RSA defaults", pub: &rsaKey().PublicKey, keyType: "RSA-2048", usage: x509.KeyUsageKeyEncipherment,
			wantSpec: verify.TPMSpec{Manufacturer: "id:4D534654", ManufacturerID: "MSFT", ManufacturerName: "Microsoft", Model: "omens-sim", Version: "id:00010002"},
		},
		{
			name: "ECC P-256", pub: &p256().PublicKey, keyType: "ECC-P256", usage: x509.KeyUsageKeyAgreement,
			wantSpec: verify.TPMSpec{Manufacturer: "id:4D534654", ManufacturerID: "MSFT", ManufacturerName: "Microsoft", Model: "omens-sim", Version: "id:00010002"},
		},
		{
			name: "ECC P-384 with template", pub: &p384().PublicKey, keyType: "ECC-P384", usage: x509.KeyUsageKeyAgreement,
			tmpl:     mfgca.EKTemplate{Manufacturer: "id:49465800", Model: "SLB 9672", Version: "id:000F0001", NotBefore: notBefore, NotAfter: notAfter, Serial: big.NewInt(4242)},
			wantSpec: verify.TPMSpec{Manufacturer: "id:49465800", ManufacturerID: "IFX", ManufacturerName: "Infineon", Model: "SLB 9672", Version: "id:000F0001"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := ca.IssueEK(tc.pub, tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			ek, err := verify.ParseEKCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			c := ek.Cert
			if ek.KeyType != tc.keyType {
				t.Errorf("KeyType = %q, want %q", ek.KeyType, tc.keyType)
			}
			if ek.TPM != tc.wantSpec || !ek.HasTPMSAN {
				t.Errorf("TPM = %+v (found %v), want %+v", ek.TPM, ek.HasTPMSAN, tc.wantSpec)
			}
			if !bytes.Equal(c.RawSubject, []byte{0x30, 0x00}) {
				t.Errorf("subject = %x, want an empty SEQUENCE", c.RawSubject)
			}
			var sanCritical bool
			for _, e := range c.Extensions {
				if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
					sanCritical = e.Critical
				}
			}
			if !sanCritical {
				t.Error("subjectAltName is not critical")
			}
			if len(c.UnhandledCriticalExtensions) != 0 {
				t.Errorf("UnhandledCriticalExtensions = %v", c.UnhandledCriticalExtensions)
			}
			if !ek.HasEKU || len(c.UnknownExtKeyUsage) != 1 || !c.UnknownExtKeyUsage[0].Equal(asn1.ObjectIdentifier{2, 23, 133, 8, 1}) || len(c.ExtKeyUsage) != 0 {
				t.Errorf("EKU = %v %v, want only 2.23.133.8.1", c.ExtKeyUsage, c.UnknownExtKeyUsage)
			}
			if c.KeyUsage != tc.usage {
				t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, tc.usage)
			}
			if !c.BasicConstraintsValid || c.IsCA {
				t.Errorf("basicConstraints valid=%v cA=%v, want cA=false", c.BasicConstraintsValid, c.IsCA)
			}
			if !bytes.Equal(c.AuthorityKeyId, ca.Intermediate().SubjectKeyId) || len(c.AuthorityKeyId) == 0 {
				t.Errorf("AuthorityKeyId = %x, want %x", c.AuthorityKeyId, ca.Intermediate().SubjectKeyId)
			}
			if c.SignatureAlgorithm != x509.ECDSAWithSHA384 {
				t.Errorf("SignatureAlgorithm = %v", c.SignatureAlgorithm)
			}
			if tc.tmpl.Serial != nil && c.SerialNumber.Cmp(tc.tmpl.Serial) != 0 {
				t.Errorf("serial = %v, want %v", c.SerialNumber, tc.tmpl.Serial)
			}
			if !tc.tmpl.NotBefore.IsZero() && (!c.NotBefore.Equal(notBefore) || !c.NotAfter.Equal(notAfter)) {
				t.Errorf("validity = %v..%v, want %v..%v", c.NotBefore, c.NotAfter, notBefore, notAfter)
			}
			if tc.tmpl.NotAfter.IsZero() && !c.NotAfter.Equal(ca.Intermediate().NotAfter) {
				t.Errorf("NotAfter = %v, want the intermediate's %v", c.NotAfter, ca.Intermediate().NotAfter)
			}
			if err := ek.CheckPublicKey(tc.pub); err != nil {
				t.Error(err)
			}
			at := time.Now()
			if !tc.tmpl.NotBefore.IsZero() {
				at = tc.tmpl.NotBefore.Add(time.Hour)
				if at.Before(ca.Intermediate().NotBefore) {
					at = ca.Intermediate().NotBefore.Add(time.Hour)
				}
			}
			if _, err := bundle.VerifyEKCertificate(ek, at); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestIssueEKErrors(t *testing.T) {
	ca, err := mfgca.NewEphemeral("errors")
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		tmpl mfgca.EKTemplate
		want string
	}{
		{"ed25519", edPub, mfgca.EKTemplate{}, "mfgca: unsupported EK public key type ed25519.PublicKey"},
		{"P-224", &p224.PublicKey, mfgca.EKTemplate{}, "mfgca: unsupported EK curve P-224"},
		{"nil RSA", (*rsa.PublicKey)(nil), mfgca.EKTemplate{}, "mfgca: nil RSA EK public key"},
		{"inverted validity", &p256().PublicKey, mfgca.EKTemplate{NotBefore: now, NotAfter: now.Add(-time.Second)},
			"mfgca: EK certificate NotAfter " + now.Add(-time.Second).Format(time.RFC3339) + " is not after NotBefore " + now.Format(time.RFC3339)},
		{"zero serial", &p256().PublicKey, mfgca.EKTemplate{Serial: big.NewInt(0)}, "mfgca: EK certificate serial 0 is not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.IssueEK(tc.pub, tc.tmpl)
			if err == nil || err.Error() != tc.want {
				t.Errorf("IssueEK() error = %v, want %s", err, tc.want)
			}
		})
	}
	if _, err := mfgca.NewEphemeral(""); err == nil || err.Error() != "mfgca: empty CA name" {
		t.Errorf("NewEphemeral(\"\") error = %v", err)
	}
}

func TestNewEphemeralValidity(t *testing.T) {
	nb := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	na := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	rnb := time.Date(2005, 1, 1, 0, 0, 0, 0, time.UTC)
	rna := time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := mfgca.NewEphemeral("old", mfgca.WithIntermediateValidity(nb, na), mfgca.WithRootValidity(rnb, rna))
	if err != nil {
		t.Fatal(err)
	}
	if i := ca.Intermediate(); !i.NotBefore.Equal(nb) || !i.NotAfter.Equal(na) {
		t.Errorf("intermediate validity %v..%v", i.NotBefore, i.NotAfter)
	}
	if r := ca.Root(); !r.NotBefore.Equal(rnb) || !r.NotAfter.Equal(rna) {
		t.Errorf("root validity %v..%v", r.NotBefore, r.NotAfter)
	}
	if got, want := ca.Root().Subject.String(), "CN=old Root CA,O=omens"; got != want {
		t.Errorf("root subject %q, want %q", got, want)
	}
	if got, want := ca.Intermediate().Subject.String(), "CN=old EK Intermediate CA,O=omens"; got != want {
		t.Errorf("intermediate subject %q, want %q", got, want)
	}
}

// TestRSAKeyAlgorithm: a CA with RSA keys signs its chain and its EK certificates with
// RSA and SHA-256, and they verify as an ECDSA CA's do; a P-256 CA signs with ECDSA and
// SHA-256.
func TestRSAKeyAlgorithm(t *testing.T) {
	p := must(mfgca.NewEphemeral("P-256 Vendor", mfgca.WithKeyAlgorithm(mfgca.P256)))
	if c := p.Intermediate(); c.SignatureAlgorithm != x509.ECDSAWithSHA256 || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("P-256 intermediate: key %v, signature %v", c.PublicKeyAlgorithm, c.SignatureAlgorithm)
	}
	ca := must(mfgca.NewEphemeral("RSA Vendor", mfgca.WithKeyAlgorithm(mfgca.RSA2048)))
	for _, c := range []*x509.Certificate{ca.Root(), ca.Intermediate()} {
		if c.PublicKeyAlgorithm != x509.RSA || c.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("%s: key %v, signature %v; want RSA, SHA256-RSA", c.Subject.CommonName, c.PublicKeyAlgorithm, c.SignatureAlgorithm)
		}
	}
	der := must(ca.IssueEK(&rsaKey().PublicKey, mfgca.EKTemplate{}))
	ek := must(x509.ParseCertificate(der))
	if ek.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("EK certificate signed with %v, want SHA256-RSA", ek.SignatureAlgorithm)
	}
	if err := ek.CheckSignatureFrom(ca.Intermediate()); err != nil {
		t.Errorf("EK certificate: %v", err)
	}
	if _, err := mfgca.NewEphemeral("Bad", mfgca.WithKeyAlgorithm("dsa")); err == nil || !strings.Contains(err.Error(), `key algorithm "dsa" is none of [p384 p256 rsa2048]`) {
		t.Errorf("unknown algorithm: %v", err)
	}
}
