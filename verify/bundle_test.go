package verify_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

func testBundle() *verify.Bundle {
	return verify.NewBundle([]*x509.Certificate{testCA().Root()}, []*x509.Certificate{testCA().Intermediate()})
}

// plainCA is a one-level CA made in the test, to sign certificates that mfgca would not
// issue (wrong EKU, CA leaf, unknown critical extension).
type plainCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPlainCA(t testing.TB) plainCA {
	t.Helper()
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	der := selfSigned(t, key, &x509.Certificate{
		Subject: pkix.Name{CommonName: "plain root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-year), NotAfter: time.Now().Add(year),
	})
	return plainCA{cert: must(x509.ParseCertificate(der)), key: key}
}

func (ca plainCA) sign(t testing.TB, pub crypto.PublicKey, tmpl *x509.Certificate) *verify.EKCertificate {
	t.Helper()
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der := must(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key))
	return must(verify.ParseEKCertificate(der))
}

func TestVerifyEKCertificate(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	parse := func(der []byte) *verify.EKCertificate { return must(verify.ParseEKCertificate(der)) }

	other := must(mfgca.NewEphemeral("other"))
	impostor := must(mfgca.NewEphemeral("verify test")) // same names as testCA, other keys
	expiredInter := must(mfgca.NewEphemeral("expired",
		mfgca.WithRootValidity(now.Add(-20*year), now.Add(20*year)),
		mfgca.WithIntermediateValidity(now.Add(-10*year), now.Add(-year))))
	futureInter := must(mfgca.NewEphemeral("future",
		mfgca.WithRootValidity(now.Add(-20*year), now.Add(20*year)),
		mfgca.WithIntermediateValidity(now.Add(year), now.Add(10*year))))
	expiredRoot := must(mfgca.NewEphemeral("old root",
		mfgca.WithRootValidity(now.Add(-20*year), now.Add(-2*year)),
		mfgca.WithIntermediateValidity(now.Add(-10*year), now.Add(10*year))))
	bundleOf := func(ca *mfgca.CA) *verify.Bundle {
		return verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate()})
	}
	issueBy := func(ca *mfgca.CA, pub crypto.PublicKey, tmpl mfgca.EKTemplate) *verify.EKCertificate {
		return parse(must(ca.IssueEK(pub, tmpl)))
	}
	pastLeaf := mfgca.EKTemplate{NotBefore: now.Add(-5 * year), NotAfter: now.Add(-year)}
	oldLeaf := mfgca.EKTemplate{NotBefore: now.Add(-5 * year), NotAfter: now.Add(5 * year)}

	plain := newPlainCA(t)
	ekuOID := asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	wrongEKU := plain.sign(t, &p256().PublicKey, &x509.Certificate{SerialNumber: big.NewInt(42),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, UnknownExtKeyUsage: []asn1.ObjectIdentifier{{1, 2, 3, 4}}})
	caLeaf := plain.sign(t, &p256().PublicKey, &x509.Certificate{SerialNumber: big.NewInt(43), IsCA: true, BasicConstraintsValid: true,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{ekuOID}})
	noEKU := plain.sign(t, &p256().PublicKey, &x509.Certificate{SerialNumber: big.NewInt(44)})
	unknownCritical := plain.sign(t, &p256().PublicKey, &x509.Certificate{SerialNumber: big.NewInt(45),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 99}, Critical: true, Value: []byte{5, 0}}}})
	cnOnlySAN := must(asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true,
		Bytes: must(asn1.Marshal(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "not a TPM"}}}))}}))
	nonTPMSAN := plain.sign(t, &p256().PublicKey, &x509.Certificate{SerialNumber: big.NewInt(46),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: cnOnlySAN}}})
	plainBundle := verify.NewBundle([]*x509.Certificate{plain.cert}, nil)

	untrusted := func(ek *verify.EKCertificate, reason string) string {
		return fmt.Sprintf("verify: certificate not trusted: issuer %q (serial %#x) does not chain to the CA bundle: %s",
			ek.Cert.Issuer.String(), ek.Cert.SerialNumber, reason)
	}

	type tc struct {
		name     string
		bundle   *verify.Bundle
		ek       *verify.EKCertificate
		at       time.Time
		chainLen int
		wantErr  error
		notErr   error
		errText  string
	}
	cases := []tc{
		{name: "RSA-2048", bundle: testBundle(), ek: parse(issue(t, &rsaKey().PublicKey, mfgca.EKTemplate{})), at: now, chainLen: 3},
		{name: "ECC P-256", bundle: testBundle(), ek: parse(issue(t, &p256().PublicKey, mfgca.EKTemplate{})), at: now, chainLen: 3},
		{name: "ECC P-384", bundle: testBundle(), ek: parse(issue(t, &p384().PublicKey, mfgca.EKTemplate{})), at: now, chainLen: 3},
		{name: "zero time is now", bundle: testBundle(), ek: parse(issue(t, &p256().PublicKey, mfgca.EKTemplate{})), chainLen: 3},
		{name: "no EKU extension is accepted", bundle: plainBundle, ek: noEKU, at: now, chainLen: 2},
	}
	ek := issueBy(other, &p256().PublicKey, mfgca.EKTemplate{})
	cases = append(cases, tc{name: "other manufacturer's CA", bundle: testBundle(), ek: ek, at: now, wantErr: verify.ErrUntrusted,
		errText: untrusted(ek, "x509: certificate signed by unknown authority")})
	ek = issueBy(impostor, &p256().PublicKey, mfgca.EKTemplate{})
	cases = append(cases, tc{name: "CA with the same names, other keys", bundle: testBundle(), ek: ek, at: now, wantErr: verify.ErrUntrusted,
		errText: untrusted(ek, `x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "verify test EK Intermediate CA")`)})
	ek = issueBy(other, &p256().PublicKey, pastLeaf)
	cases = append(cases, tc{name: "expired and untrusted is untrusted", bundle: testBundle(), ek: ek, at: now, wantErr: verify.ErrUntrusted, notErr: verify.ErrExpired,
		errText: untrusted(ek, "x509: certificate signed by unknown authority")})
	ek = parse(issue(t, &rsaKey().PublicKey, pastLeaf))
	cases = append(cases, tc{name: "expired EK certificate", bundle: testBundle(), ek: ek, at: now, wantErr: verify.ErrExpired, notErr: verify.ErrUntrusted,
		errText: fmt.Sprintf("verify: certificate expired: EK certificate serial %#x: notAfter %s is before the verification time %s (the chain is otherwise trusted)",
			ek.Cert.SerialNumber, rfc(now.Add(-year)), rfc(now))})
	ek = parse(issue(t, &p384().PublicKey, mfgca.EKTemplate{NotBefore: now.Add(year), NotAfter: now.Add(2 * year)}))
	cases = append(cases, tc{name: "EK certificate not yet valid", bundle: testBundle(), ek: ek, at: now, wantErr: verify.ErrNotYetValid, notErr: verify.ErrUntrusted,
		errText: fmt.Sprintf("verify: certificate not yet valid: EK certificate serial %#x: notBefore %s is after the verification time %s (the chain is otherwise trusted)",
			ek.Cert.SerialNumber, rfc(now.Add(year)), rfc(now))})
	ek = issueBy(expiredInter, &p256().PublicKey, oldLeaf)
	cases = append(cases, tc{name: "expired intermediate", bundle: bundleOf(expiredInter), ek: ek, at: now, wantErr: verify.ErrExpired, notErr: verify.ErrUntrusted,
		errText: fmt.Sprintf(`verify: certificate expired: CA "CN=expired EK Intermediate CA,O=omens" serial %#x in the EK chain: notAfter %s is before the verification time %s (the chain is otherwise trusted)`,
			expiredInter.Intermediate().SerialNumber, rfc(now.Add(-year)), rfc(now))})
	ek = issueBy(futureInter, &p256().PublicKey, oldLeaf)
	cases = append(cases, tc{name: "intermediate not yet valid", bundle: bundleOf(futureInter), ek: ek, at: now, wantErr: verify.ErrNotYetValid,
		errText: fmt.Sprintf(`verify: certificate not yet valid: CA "CN=future EK Intermediate CA,O=omens" serial %#x in the EK chain: notBefore %s is after the verification time %s (the chain is otherwise trusted)`,
			futureInter.Intermediate().SerialNumber, rfc(now.Add(year)), rfc(now))})
	ek = issueBy(expiredRoot, &p256().PublicKey, oldLeaf)
	cases = append(cases, tc{name: "expired root", bundle: bundleOf(expiredRoot), ek: ek, at: now, wantErr: verify.ErrExpired,
		errText: fmt.Sprintf(`verify: certificate expired: CA "CN=old root Root CA,O=omens" serial %#x in the EK chain: notAfter %s is before the verification time %s (the chain is otherwise trusted)`,
			expiredRoot.Root().SerialNumber, rfc(now.Add(-2*year)), rfc(now))})
	cases = append(cases,
		tc{name: "wrong EKU", bundle: plainBundle, ek: wrongEKU, at: now, wantErr: verify.ErrNotEKCert,
			errText: "verify: not an EK certificate: serial 0x2a: extended key usage [serverAuth 1.2.3.4] lacks tcg-kp-EKCertificate (2.23.133.8.1)"},
		tc{name: "CA certificate", bundle: plainBundle, ek: caLeaf, at: now, wantErr: verify.ErrNotEKCert,
			errText: "verify: not an EK certificate: serial 0x2b is a CA certificate (basicConstraints cA=true)"},
		tc{name: "unknown critical extension", bundle: plainBundle, ek: unknownCritical, at: now, wantErr: verify.ErrUntrusted,
			errText: untrusted(unknownCritical, "x509: unhandled critical extension")},
		tc{name: "critical SAN without TPM attributes", bundle: plainBundle, ek: nonTPMSAN, at: now, wantErr: verify.ErrUntrusted,
			errText: untrusted(nonTPMSAN, "x509: unhandled critical extension")},
		tc{name: "empty bundle", bundle: verify.NewBundle(nil, nil), ek: noEKU, at: now, wantErr: verify.ErrUntrusted,
			errText: untrusted(noEKU, "x509: certificate signed by unknown authority")},
		tc{name: "zero Bundle trusts nothing", bundle: &verify.Bundle{}, ek: noEKU, at: now, wantErr: verify.ErrUntrusted,
			errText: untrusted(noEKU, "x509: certificate signed by unknown authority")},
		tc{name: "nil certificate", bundle: testBundle(), ek: nil, at: now, wantErr: verify.ErrMalformed,
			errText: "verify: malformed certificate: no certificate"},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chains, err := tc.bundle.VerifyEKCertificate(tc.ek, tc.at)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(chains) == 0 || len(chains[0]) != tc.chainLen {
					t.Fatalf("chains = %v, want one of length %d", chains, tc.chainLen)
				}
				return
			}
			if chains != nil {
				t.Errorf("chains = %v, want none", chains)
			}
			if !errors.Is(err, tc.wantErr) || err.Error() != tc.errText {
				t.Fatalf("error =\n  %v\nwant (errors.Is %v)\n  %s", err, tc.wantErr, tc.errText)
			}
			if tc.notErr != nil && errors.Is(err, tc.notErr) {
				t.Errorf("errors.Is(err, %v) = true, want false", tc.notErr)
			}
		})
	}
}

func TestVerifyWrapsX509Error(t *testing.T) {
	ek := must(verify.ParseEKCertificate(must(must(mfgca.NewEphemeral("stranger")).IssueEK(&p256().PublicKey, mfgca.EKTemplate{}))))
	_, err := testBundle().VerifyEKCertificate(ek, time.Now())
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("error %v does not wrap x509.UnknownAuthorityError", err)
	}
}

type problem struct{ file, reason string }

func problemsOf(root string, ps []verify.BundleProblem) []problem {
	var out []problem
	for _, p := range ps {
		rel, _ := filepath.Rel(root, p.File)
		out = append(out, problem{filepath.ToSlash(rel), p.Reason})
	}
	slices.SortFunc(out, func(a, b problem) int { return strings.Compare(a.file+a.reason, b.file+b.reason) })
	return out
}

func TestLoadBundle(t *testing.T) {
	caDir := t.TempDir()
	ca, err := mfgca.Open(caDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("mfgca bundle file", func(t *testing.T) {
		b, problems, err := verify.LoadBundle(ca.BundlePath())
		if err != nil || len(problems) != 0 {
			t.Fatalf("LoadBundle: %v, %v", problems, err)
		}
		if r, i := b.Roots(), b.Intermediates(); len(r) != 1 || !r[0].Equal(ca.Root()) || len(i) != 1 || !i[0].Equal(ca.Intermediate()) {
			t.Errorf("roots %d, intermediates %d, want the mfgca root and intermediate", len(r), len(i))
		}
	})

	t.Run("directory with unusable files", func(t *testing.T) {
		dir := t.TempDir()
		two := must(mfgca.NewEphemeral("two"))
		three := must(mfgca.NewEphemeral("three"))
		leaf := must(ca.IssueEK(&p256().PublicKey, mfgca.EKTemplate{}))
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
		files := map[string][]byte{
			"good.pem":            ca.BundlePEM(),
			"again/dup.pem":       pemCert(ca.Root().Raw), // same root again: loaded once
			"orphan.der":          two.Intermediate().Raw,
			"padded-root.der":     append(append([]byte{}, three.Root().Raw...), make([]byte, 64)...),
			"three-inter.crt":     pemCert(three.Intermediate().Raw),
			"sub/deeper/leaf.pem": pemCert(leaf),
			"key.pem":             keyPEM,
			"empty.der":           nil,
			"README":              []byte("hello"),
			"broken.pem":          []byte("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
			"notcert.pem":         pemCert([]byte{0x30, 0x03, 0x02, 0x01, 0x00}),
		}
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, problems, err := verify.LoadBundle(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Log(p)
		}
		want := []problem{
			{"README", "neither PEM nor a DER certificate: malformed certificate: not DER: first byte 0x68, want a SEQUENCE (0x30)"},
			{"broken.pem", "no PEM block found"},
			{"empty.der", "empty file"},
			{"key.pem", `PEM block "PRIVATE KEY" is not a certificate`},
			{"notcert.pem", "unparseable: x509: malformed tbs certificate"},
			{"orphan.der", `no chain to a root of the bundle: issuer "CN=two Root CA,O=omens" is not in the bundle`},
			{"sub/deeper/leaf.pem", "not a CA: basicConstraints cA=false"},
		}
		if got := problemsOf(dir, problems); !slices.Equal(got, want) {
			t.Errorf("problems =\n%q\nwant\n%q", got, want)
		}
		if len(b.Roots()) != 2 || len(b.Intermediates()) != 2 {
			t.Errorf("roots %d, intermediates %d, want 2 and 2", len(b.Roots()), len(b.Intermediates()))
		}
		// An EK issued by a CA whose intermediate was left out names why.
		ek := must(verify.ParseEKCertificate(must(two.IssueEK(&p256().PublicKey, mfgca.EKTemplate{}))))
		_, err = b.VerifyEKCertificate(ek, time.Now())
		wantErr := fmt.Sprintf(`verify: certificate not trusted: issuer "CN=two EK Intermediate CA,O=omens" (serial %#x) does not chain to the CA bundle: x509: certificate signed by unknown authority; the issuer is in the CA bundle but unusable: "CN=two EK Intermediate CA,O=omens": no chain to a root of the bundle: issuer "CN=two Root CA,O=omens" is not in the bundle`,
			ek.Cert.SerialNumber)
		if !errors.Is(err, verify.ErrUntrusted) || err.Error() != wantErr {
			t.Errorf("error =\n  %v\nwant\n  %s", err, wantErr)
		}
	})

	t.Run("errors", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing")
		if _, _, err := verify.LoadBundle(missing); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "verify: CA bundle: ") {
			t.Errorf("missing path: error = %v", err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "inter.pem"), pemCert(ca.Intermediate().Raw), 0o644); err != nil {
			t.Fatal(err)
		}
		_, problems, err := verify.LoadBundle(dir)
		want := fmt.Sprintf("verify: CA bundle %q holds no usable root certificate (1 problems)", dir)
		if err == nil || err.Error() != want || len(problems) != 1 {
			t.Errorf("no root: error = %v, problems %v, want %s", err, problems, want)
		}
		empty := t.TempDir()
		if _, _, err := verify.LoadBundle(empty); err == nil {
			t.Error("empty directory: no error")
		}
	})
}

// ekSHA1Advice is what an EK chain refused for a SHA-1 signature tells the operator.
const ekSHA1Advice = "such a TPM can be accepted only by its EK hash (ek_allowlist_path), until its manufacturer publishes a chain signed with SHA-256"

// realworldTime is the date of the real-world collection's own checks.
var realworldTime = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)

func TestRealWorldManufacturerCABundle(t *testing.T) {
	dir := filepath.Join(realworld.Dir(t), "manufacturer-ca")
	b, problems, err := verify.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files int
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	roots, inters := len(b.Roots()), len(b.Intermediates())
	t.Logf("%d files: %d roots, %d intermediates usable, %d problems:", files, roots, inters, len(problems))
	for _, p := range problems {
		t.Log("  ", p)
	}
	// Every file holds one distinct certificate: each is usable or reported.
	if roots+inters+len(problems) != files {
		t.Errorf("usable %d + problems %d != %d files", roots+inters, len(problems), files)
	}
	if roots != 48 || inters != 334 {
		t.Errorf("usable roots %d, intermediates %d, want 48 and 334", roots, inters)
	}

	// The problems, each with why: what the collection's README reports, as crypto/x509
	// sees it.
	const sha1Refused = `which crypto/x509 refuses (x509: cannot verify signature: insecure algorithm SHA1-RSA)`
	const stmECCRoot = `no chain to a root of the bundle: issuer "CN=STM TPM ECC Root CA 01,O=STMicroelectronics NV,C=CH" is in the bundle (STMicro_STM_TPM_ECC_Root_CA_01.pem) only with a differently encoded name, and crypto/x509 matches names byte for byte`
	want := map[string]string{
		"Alibaba_Aliyun_TPM_EKMF_CA.pem":                  `no chain to a root of the bundle: issuer "CN=Aliyun TPM Root CA,OU=Aliyun TPM Root CA,O=Aliyun,C=CN" is not in the bundle`,
		"Intel_CSME_TGL_ROM_CA.pem":                       `no chain to a root of the bundle: issuer "CN=www.intel.com,OU=On Die CSME E_TGL 00002003 Issuing CA" is not in the bundle`,
		"Intel_CSME_TGL_SVN01_Kernel_CA.pem":              `no chain to a root of the bundle: its issuer "CN=CSME TGL ROM CA" is not usable either`,
		"Intel_CSME_TGL_PTT__01SVN.pem":                   `no chain to a root of the bundle: its issuer "CN=CSME TGL SVN01 Kernel CA" is not usable either`,
		"Intel_On_Die_CSME_D_TGL_DEBUG000_Issuing_CA.pem": `no chain to a root of the bundle: the signature does not verify with the key of "CN=www.intel.com,OU=OnDie CA CSME Intermediate CA": x509: ECDSA verification failure`,
		"STMicro_STM_TPM_ECC384_Intermediate_CA_01.pem":   stmECCRoot,
		"STMicro_STM_TPM_ECC384_Intermediate_CA_02.pem":   stmECCRoot,
		"STMicro_STM_TPM_ECC_Intermediate_CA_02.pem":      stmECCRoot,
		"STMicro_STM_TPM_ECC_Intermediate_CA_03.pem":      stmECCRoot,
		"Infineon_IFX_TPM_EK_Root_CA.pem":                 `no chain to a root of the bundle: signed by "CN=VeriSign Trusted Platform Module Root CA,OU=VeriSign Trusted Computing Certification Authority,O=VeriSign\\, Inc.,C=US" with SHA1-RSA, ` + sha1Refused,
	}
	malformed := regexp.MustCompile(`^_malformed/STMicro_.*__ORIGINAL_nonDER_serial\.pem$`)
	ifxIntermediate := regexp.MustCompile(`^Infineon_IFX_TPM_EK_Intermediate_CA_\d\d\.pem$`)
	var nMalformed, nIFX int
	for _, p := range problemsOf(dir, problems) {
		switch {
		case malformed.MatchString(p.file):
			nMalformed++
			if p.reason != "unparseable: x509: malformed serial number" {
				t.Errorf("%s: reason %q", p.file, p.reason)
			}
		case ifxIntermediate.MatchString(p.file):
			nIFX++
			if want := `no chain to a root of the bundle: signed by "CN=IFX TPM EK Root CA,OU=AIM,O=Infineon Technologies AG,ST=Bavaria,C=DE" with SHA1-RSA, ` + sha1Refused; p.reason != want {
				t.Errorf("%s: reason %q, want %q", p.file, p.reason, want)
			}
		default:
			w, ok := want[p.file]
			if !ok {
				t.Errorf("unexpected problem %s: %s", p.file, p.reason)
				continue
			}
			delete(want, p.file)
			if p.reason != w {
				t.Errorf("%s: reason\n  %q\nwant\n  %q", p.file, p.reason, w)
			}
		}
	}
	for f := range want {
		t.Errorf("no problem reported for %s", f)
	}
	if nMalformed != 7 || nIFX != 39 {
		t.Errorf("%d malformed and %d SHA-1 IFX intermediates, want 7 and 39", nMalformed, nIFX)
	}
	for _, p := range problems {
		if p.Reason == "" {
			t.Errorf("%s: empty reason", p.File)
		}
		if p.Subject == "" {
			t.Errorf("%s: no subject", p.File)
		}
	}
}

func TestRealWorldEKCertificates(t *testing.T) {
	rw := realworld.Dir(t)
	bundle, _, err := verify.LoadBundle(filepath.Join(rw, "manufacturer-ca"))
	if err != nil {
		t.Fatal(err)
	}
	google := verify.TPMSpec{Manufacturer: "id:474F4F47", ManufacturerID: "GOOG", ManufacturerName: "Google", Model: "vTPM", Version: "id:20160511"}
	stm := func(model, version string) verify.TPMSpec {
		return verify.TPMSpec{Manufacturer: "id:53544D20", ManufacturerID: "STM", ManufacturerName: "STMicroelectronics", Model: model, Version: version}
	}
	stmChain := []string{"", "STM TPM EK Intermediate CA 05", "STM TPM EK Root CA", "GlobalSign Trusted Platform Module Root CA"}
	type verifyCase struct {
		at      time.Time
		chain   []string // subject CNs, leaf first
		wantErr error
		errText string // exact, or a substring when errSub
		errSub  bool
	}
	for _, tc := range []struct {
		file    string
		keyType string
		spec    verify.TPMSpec
		quirks  []string
		checks  []verifyCase
	}{
		{file: "Google_GCE-vTPM_ECCP256_EK_26b2ded1.pem", keyType: "ECC-P256", spec: google, checks: []verifyCase{{at: realworldTime, chain: []string{"",
			"tpm_ek_v1_cloud_host-signer-0-2021-10-12T04:22:11-07:00 K:1, 3:nbvaGZFLcuc:0:18",
			"tpm_ek_v1_cloud_host_root-signer-0-2018-04-06T10:58:26-07:00 K:1, 1:Pw003HsFYO4:0:18"}}}},
		// keyUsage digitalSignature alone (a signing key's), but the EKU says EK.
		{file: "Google_GCE-vTPM_RSA2048_EK_5df04177.pem", keyType: "RSA-2048", spec: google,
			quirks: []string{"keyUsage digitalSignature without keyEncipherment or keyAgreement, accepted for its extended key usage tcg-kp-EKCertificate"},
			checks: []verifyCase{{at: realworldTime, chain: []string{"",
				"tpm_ek_v1_cloud_host-signer-0-2020-10-22T14:02:08-07:00 K:1, 2:HBNpA3TPAbM:0:18",
				"tpm_ek_v1_cloud_host_root-signer-0-2018-04-06T10:58:26-07:00 K:1, 1:Pw003HsFYO4:0:18"}}}},
		{file: "Infineon_SLB_9670_TPM2.0_RSA2048_EK_01910046.pem", keyType: "RSA-2048",
			spec:   verify.TPMSpec{Manufacturer: "id:49465800", ManufacturerID: "IFX", ManufacturerName: "Infineon", Model: "SLB 9670 TPM2.0", Version: "id:073f"},
			checks: []verifyCase{{at: realworldTime, chain: []string{"", "Infineon OPTIGA(TM) RSA Manufacturing CA 035", "Infineon OPTIGA(TM) RSA Root CA"}}}},
		{file: "Nuvoton_NPCT6xx_RSA2048_EK_114bb31e.pem", keyType: "RSA-2048",
			spec:   verify.TPMSpec{Manufacturer: "id:4E544300", ManufacturerID: "NTC", ManufacturerName: "Nuvoton Technology", Model: "NPCT6xx", Version: "id:13"},
			checks: []verifyCase{{at: realworldTime, chain: []string{"", "Nuvoton TPM Root CA 2110"}}}},
		{file: "STMicro_ST33HTPHAHB4_RSA2048_EK_ff3d5e82.pem", keyType: "RSA-2048", spec: stm("ST33HTPHAHB4", "id:00490004"), checks: []verifyCase{
			{at: realworldTime, chain: stmChain},
			{at: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC), wantErr: verify.ErrExpired,
				errText: "verify: certificate expired: EK certificate serial 0x4cbd0fe61ee762edb28d50b268fc3586ff3d5e82: notAfter 2028-07-11T00:00:00Z is before the verification time 2029-01-01T00:00:00Z (the chain is otherwise trusted)"},
		}},
		{file: "STMicro_ST33HTPHAHB4_RSA2048_EK_ff3d5e82.orig.bin", keyType: "RSA-2048", spec: stm("ST33HTPHAHB4", "id:00490004"),
			quirks: []string{"431 bytes of 0xFF padding stripped"}, checks: []verifyCase{{at: realworldTime, chain: stmChain}}},
		{file: "STMicro_ST33HTPHAHC0_RSA2048_EK_998de40a.pem", keyType: "RSA-2048", spec: stm("ST33HTPHAHC0", "id:00490008"),
			checks: []verifyCase{{at: realworldTime, chain: stmChain}}},
		// TPM 1.2 profile: RSAES-OAEP key, signed with SHA-1 by an intermediate that is
		// itself fine; crypto/x509 refuses SHA-1, whatever the time (it also expired in
		// January 2024).
		{file: "STMicro_ST33ZP24PVSP_RSA2048-OAEP-SPKI_EK_537ac54c.pem", keyType: "RSA-2048", spec: stm("ST33ZP24PVSP", "id:0D0C"),
			quirks: []string{"RSAES-OAEP public key algorithm"}, checks: []verifyCase{
				{at: realworldTime, wantErr: verify.ErrUntrusted, errText: `verify: certificate not trusted: EK certificate serial 0x5864642ac8a29155095b3f9e3bc3f3d2537ac54c is signed with SHA-1 (SHA1-RSA) by "STM TPM EK Intermediate CA 02", which Go's crypto/x509 refuses (no setting re-enables SHA-1 since Go 1.24): ` + ekSHA1Advice + `; issuer "CN=STM TPM EK Intermediate CA 02,O=STMicroelectronics NV,C=CH" (serial 0x5864642ac8a29155095b3f9e3bc3f3d2537ac54c) does not chain to the CA bundle: x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "STM TPM EK Intermediate CA 02")`},
				{at: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), wantErr: verify.ErrUntrusted, errText: "insecure algorithm SHA1-RSA", errSub: true},
			}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(rw, "ek-certs", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ek, err := verify.ParseEKCertificate(raw)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, TPM %+v, quirks %q", ek.KeyType, ek.TPM, ek.Quirks)
			if ek.KeyType != tc.keyType || ek.TPM != tc.spec || !ek.HasTPMSAN || !ek.HasEKU || !slices.Equal(ek.Quirks, tc.quirks) {
				t.Errorf("got %s %+v SAN=%v EKU=%v quirks %q, want %s %+v quirks %q", ek.KeyType, ek.TPM, ek.HasTPMSAN, ek.HasEKU, ek.Quirks, tc.keyType, tc.spec, tc.quirks)
			}
			if len(ek.Cert.UnhandledCriticalExtensions) != 0 {
				t.Errorf("UnhandledCriticalExtensions = %v", ek.Cert.UnhandledCriticalExtensions)
			}
			if err := ek.CheckPublicKey(ek.PublicKey); err != nil {
				t.Error(err)
			}
			for _, c := range tc.checks {
				chains, err := bundle.VerifyEKCertificate(ek, c.at)
				if c.wantErr == nil {
					if err != nil {
						t.Errorf("at %s: %v", c.at.Format(time.DateOnly), err)
						continue
					}
					var cns []string
					for _, cert := range chains[0] {
						cns = append(cns, cert.Subject.CommonName)
					}
					if !slices.Equal(cns, c.chain) {
						t.Errorf("at %s: chain %q, want %q", c.at.Format(time.DateOnly), cns, c.chain)
					}
					continue
				}
				t.Logf("at %s: %v", c.at.Format(time.DateOnly), err)
				if !errors.Is(err, c.wantErr) || (c.errSub && !strings.Contains(err.Error(), c.errText)) || (!c.errSub && err.Error() != c.errText) {
					t.Errorf("at %s: error =\n  %v\nwant (errors.Is %v)\n  %s", c.at.Format(time.DateOnly), err, c.wantErr, c.errText)
				}
			}
		})
	}

	// The raw NV dump and the PEM of the same chip hold the same certificate.
	pemEK := must(verify.ParseEKCertificate(must(os.ReadFile(filepath.Join(rw, "ek-certs", "STMicro_ST33HTPHAHB4_RSA2048_EK_ff3d5e82.pem")))))
	nvEK := must(verify.ParseEKCertificate(must(os.ReadFile(filepath.Join(rw, "ek-certs", "STMicro_ST33HTPHAHB4_RSA2048_EK_ff3d5e82.orig.bin")))))
	if !pemEK.Cert.Equal(nvEK.Cert) {
		t.Error("orig.bin and PEM differ")
	}

	// Every EK certificate of the collection is covered above.
	all, _ := filepath.Glob(filepath.Join(rw, "ek-certs", "*"))
	if len(all) != 8 {
		t.Errorf("%d files in ek-certs, the table covers 8", len(all))
	}
}
