package stepca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"strings"
	"testing"

	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/ra/stepca"
)

// Extensions and attributes a hostile request asks for.
var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidStepProvisioner  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 37476, 9000, 64, 1}
	oidCodeSigning      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	oidChallengePwd     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
)

func mustDER(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// caTrue is basicConstraints CA:TRUE, critical.
func caTrue(t testing.TB) pkix.Extension {
	return pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: mustDER(t, struct {
		IsCA bool
	}{true})}
}

// codeSigning is extKeyUsage codeSigning.
func codeSigning(t testing.TB) pkix.Extension {
	return pkix.Extension{Id: oidExtKeyUsage, Value: mustDER(t, []asn1.ObjectIdentifier{oidCodeSigning})}
}

// certSign is keyUsage keyCertSign (bit 5), critical.
func certSign(t testing.TB) pkix.Extension {
	return pkix.Extension{Id: oidKeyUsage, Critical: true, Value: mustDER(t, asn1.BitString{Bytes: []byte{0x04}, BitLength: 6})}
}

// sanExt is a subjectAltName extension of the given general names.
func sanExt(t testing.TB, names ...asn1.RawValue) pkix.Extension {
	return pkix.Extension{Id: oidSubjectAltName, Value: mustDER(t, names)}
}

func dnsName(n string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(n)}
}

// dirName is a directoryName general name (CN=name), which crypto/x509 and step-ca's
// validators do not look at.
func dirName(t testing.TB, name string) asn1.RawValue {
	rdn := mustDER(t, pkix.Name{CommonName: name}.ToRDNSequence())
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rdn}
}

// hostileCSR returns a CSR of key for host that also asks for CA:TRUE, code signing, key
// certificate signing, an organization and an organizational unit, with the given SAN
// extension, or the DNS SANs dns.
func hostileCSR(t testing.TB, key crypto.Signer, san *pkix.Extension, dns ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: host, Organization: []string{"Evil Corp"}, OrganizationalUnit: []string{"Code Signing"}},
		DNSNames:        dns,
		ExtraExtensions: []pkix.Extension{caTrue(t), codeSigning(t), certSign(t)},
	}
	if san != nil {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, *san)
	}
	return signCSR(t, tmpl, key)
}

func signCSR(t testing.TB, tmpl *x509.CertificateRequest, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func ecKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func devIDToken(t testing.TB, client *stepca.Client, profile string) string {
	t.Helper()
	ott, err := client.Prov.ProfileToken(client.SignAudience(), host, []string{host}, profile)
	if err != nil {
		t.Fatal(err)
	}
	return ott
}

// wantDevIDProfile checks that leaf carries exactly the DevID profile for host: subject
// CN=host and nothing else, DNS SAN host and nothing else, keyUsage digitalSignature,
// extKeyUsage clientAuth (or serverAuth, for the server profile), not a CA, and no
// extension but those and step-ca's own (key identifiers, provisioner).
func wantProfile(t *testing.T, leaf *x509.Certificate, eku x509.ExtKeyUsage, ku x509.KeyUsage) {
	t.Helper()
	wantSubject := mustDER(t, pkix.Name{CommonName: host}.ToRDNSequence())
	if string(leaf.RawSubject) != string(wantSubject) {
		t.Errorf("subject %q, want CN=%s only", leaf.Subject, host)
	}
	if !slices.Equal(leaf.DNSNames, []string{host}) || len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("SANs DNS %v IP %v URI %v email %v, want DNS [%s] only", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses, host)
	}
	if leaf.KeyUsage != ku {
		t.Errorf("keyUsage %#x, want %#x", leaf.KeyUsage, ku)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{eku}) || len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("extKeyUsage %v %v, want [%v]", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage, eku)
	}
	if leaf.IsCA || leaf.BasicConstraintsValid {
		t.Errorf("basicConstraints present (CA %t), want none", leaf.IsCA)
	}
	var got []string
	for _, e := range leaf.Extensions {
		got = append(got, e.Id.String())
	}
	slices.Sort(got)
	want := []string{oidStepProvisioner.String(), oidSubjectKeyID.String(), oidKeyUsage.String(), oidSubjectAltName.String(), oidAuthorityKeyID.String(), oidExtKeyUsage.String()}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("extensions %v, want %v", got, want)
	}
}

// TestDevIDTemplateWithRealStepCA sends step-ca, with a DevID token of the RA, requests
// that ask for CA:TRUE, code signing, key certificate signing, more subject attributes and
// more SANs, as a compromised or buggy RA would forward them: the certificates step-ca
// issues carry exactly the DevID profile, for ECC and RSA keys; a request with another
// DNS SAN than the token's is refused by step-ca itself.
func TestDevIDTemplateWithRealStepCA(t *testing.T) {
	ca, client := startCA(t)
	ctx := context.Background()
	if err := client.CheckTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ext := sanExt(t, dnsName(host), dirName(t, "spire.funlab.casa"))
	for _, tc := range []struct {
		name string
		csr  *x509.CertificateRequest
	}{
		{"ECC, CA:TRUE, codeSigning, keyCertSign, O and OU", hostileCSR(t, ecKey(t), nil, host)},
		{"RSA, CA:TRUE, codeSigning, keyCertSign, O and OU", hostileCSR(t, rsaKey, nil, host)},
		{"a directoryName SAN beside the host's", hostileCSR(t, ecKey(t), &ext)},
		{"no SAN", signCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}}, ecKey(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, _, err := client.SignWithToken(ctx, tc.csr, devIDToken(t, client, stepca.ProfileDevID), 0)
			if err != nil {
				t.Fatal(err)
			}
			wantProfile(t, leaf, x509.ExtKeyUsageClientAuth, x509.KeyUsageDigitalSignature)
		})
	}

	t.Run("a token without a profile is a DevID token", func(t *testing.T) {
		leaf, _, err := client.SignWithToken(ctx, hostileCSR(t, ecKey(t), nil, host), devIDToken(t, client, ""), 0)
		if err != nil {
			t.Fatal(err)
		}
		wantProfile(t, leaf, x509.ExtKeyUsageClientAuth, x509.KeyUsageDigitalSignature)
	})

	t.Run("another DNS SAN", func(t *testing.T) {
		skip := len(ca.Log())
		_, _, err := client.SignWithToken(ctx, hostileCSR(t, ecKey(t), nil, host, "spire.funlab.casa"), devIDToken(t, client, stepca.ProfileDevID), 0)
		want := "stepca: sign: 403 Forbidden: The request was forbidden by the certificate authority: certificate request does not contain the valid DNS names - got [auth.funlab.casa spire.funlab.casa], want [auth.funlab.casa]."
		if err == nil || err.Error() != want {
			t.Errorf("\n got %v\nwant %s", err, want)
		}
		t.Logf("step-ca logged: %s", caReason(ca, skip))
	})

	t.Run("unknown profile", func(t *testing.T) {
		_, _, err := client.SignWithToken(ctx, newCSR(t, host, host), devIDToken(t, client, "ca"), 0)
		want := "stepca: sign: 400 Bad Request: The request could not be completed: omens: unknown certificate profile ca."
		if err == nil || err.Error() != want {
			t.Errorf("\n got %v\nwant %s", err, want)
		}
	})

	t.Run("server profile", func(t *testing.T) {
		leaf, _, err := client.SignServer(ctx, hostileCSR(t, ecKey(t), nil, host), 0)
		if err != nil {
			t.Fatal(err)
		}
		wantProfile(t, leaf, x509.ExtKeyUsageServerAuth, x509.KeyUsageDigitalSignature)
		leaf, _, err = client.SignServer(ctx, hostileCSR(t, rsaKey, nil, host), 0)
		if err != nil {
			t.Fatal(err)
		}
		wantProfile(t, leaf, x509.ExtKeyUsageServerAuth, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)
	})

	t.Run("SignDevID refuses the request before step-ca sees it", func(t *testing.T) {
		skip := len(ca.Log())
		_, _, err := client.SignDevID(ctx, hostileCSR(t, ecKey(t), nil, host), host, 0)
		want := `stepca: devid_csr_profile: CSR subject holds attribute 2.5.4.10 (O) = "Evil Corp": a DevID subject is its host's common name only`
		if err == nil || err.Error() != want {
			t.Errorf("\n got %v\nwant %s", err, want)
		}
		if lines := caLogSince(ca, skip, "/1.0/sign"); len(lines) != 0 {
			t.Errorf("step-ca saw a sign request: %v", lines)
		}
	})
}

// TestWithoutTemplate shows what the template changes: step-ca's default template, on the
// same hostile request, issues a certificate for serverAuth as well as clientAuth; and
// CheckTemplate, with which the RA starts, refuses such a step-ca.
func TestWithoutTemplate(t *testing.T) {
	ca := stepcatest.Start(t, stepcatest.Config{NoTemplate: true})
	prov, err := stepca.LoadProvisioner(ca.CAConfig, ca.Provisioner, []byte(ca.ProvisionerPassword))
	if err != nil {
		t.Fatal(err)
	}
	client := stepca.New(ca.URL, ca.RootPool, prov)
	ctx := context.Background()
	err = client.CheckTemplate(ctx)
	want := `stepca: provisioner "tower-of-omens" has no X.509 template (step-ca's default would sign what a request asks for serverAuth and clientAuth alike): run ` +
		"`omens ra template > devid.tpl` and `step ca provisioner update tower-of-omens --x509-template devid.tpl` on the step-ca host, then restart step-ca"
	if err == nil || err.Error() != want {
		t.Errorf("CheckTemplate:\n got %v\nwant %s", err, want)
	}
	leaf, _, err := client.SignWithToken(ctx, hostileCSR(t, ecKey(t), nil, host), devIDToken(t, client, stepca.ProfileDevID), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("default template: extKeyUsage %v", leaf.ExtKeyUsage)
	}
	t.Logf("default template: subject %q, KU %v, EKU %v, CA %t", leaf.Subject, leaf.KeyUsage, leaf.ExtKeyUsage, leaf.IsCA)

	other := stepca.New(ca.URL, ca.RootPool, &stepca.Provisioner{Name: "acme"})
	if err := other.CheckTemplate(ctx); err == nil || err.Error() != `stepca: step-ca at `+ca.URL+` has no JWK provisioner "acme"` {
		t.Errorf("CheckTemplate of a missing provisioner: %v", err)
	}
}

// TestCheckDevIDCSR refuses, by name and value, every wish a DevID request may not hold.
func TestCheckDevIDCSR(t *testing.T) {
	key := ecKey(t)
	csr := func(tmpl x509.CertificateRequest) *x509.CertificateRequest { return signCSR(t, &tmpl, key) }
	dns := []string{host}
	cn := pkix.Name{CommonName: host}
	for _, tc := range []struct {
		name    string
		csr     *x509.CertificateRequest
		wantErr string
	}{
		{name: "CN and DNS SAN", csr: csr(x509.CertificateRequest{Subject: cn, DNSNames: dns})},
		{name: "CN only", csr: csr(x509.CertificateRequest{Subject: cn})},
		{name: "organization", csr: csr(x509.CertificateRequest{Subject: pkix.Name{CommonName: host, Organization: []string{"Evil Corp"}}, DNSNames: dns}),
			wantErr: `stepca: devid_csr_profile: CSR subject holds attribute 2.5.4.10 (O) = "Evil Corp": a DevID subject is its host's common name only`},
		{name: "another CN", csr: csr(x509.CertificateRequest{Subject: pkix.Name{CommonName: "spire.funlab.casa"}}),
			wantErr: `stepca: devid_csr_profile: CSR subject common name "spire.funlab.casa" is not the host "auth.funlab.casa"`},
		{name: "two CNs", csr: csr(x509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: host}, {Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: host}}}}),
			wantErr: `stepca: devid_csr_profile: CSR subject holds 2 common names, want 1 ("auth.funlab.casa")`},
		{name: "no subject", csr: csr(x509.CertificateRequest{DNSNames: dns}),
			wantErr: `stepca: devid_csr_profile: CSR subject holds 0 common names, want 1 ("auth.funlab.casa")`},
		{name: "CA:TRUE", csr: csr(x509.CertificateRequest{Subject: cn, DNSNames: dns, ExtraExtensions: []pkix.Extension{caTrue(t)}}),
			wantErr: `stepca: devid_csr_profile: CSR requests extension 2.5.29.19 (basicConstraints) (critical true): a DevID certificate's extensions are the CA's to set`},
		{name: "code signing", csr: csr(x509.CertificateRequest{Subject: cn, DNSNames: dns, ExtraExtensions: []pkix.Extension{codeSigning(t)}}),
			wantErr: `stepca: devid_csr_profile: CSR requests extension 2.5.29.37 (extKeyUsage) (critical false): a DevID certificate's extensions are the CA's to set`},
		{name: "keyCertSign", csr: csr(x509.CertificateRequest{Subject: cn, ExtraExtensions: []pkix.Extension{certSign(t)}}),
			wantErr: `stepca: devid_csr_profile: CSR requests extension 2.5.29.15 (keyUsage) (critical true): a DevID certificate's extensions are the CA's to set`},
		{name: "an unknown extension", csr: csr(x509.CertificateRequest{Subject: cn, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}}}),
			wantErr: `stepca: devid_csr_profile: CSR requests extension 1.2.3.4 (critical false): a DevID certificate's extensions are the CA's to set`},
		{name: "another DNS SAN", csr: csr(x509.CertificateRequest{Subject: cn, DNSNames: []string{host, "spire.funlab.casa"}}),
			wantErr: `stepca: devid_csr_profile: CSR subjectAltName holds 2 names [dNSName "auth.funlab.casa", dNSName "spire.funlab.casa"], want only DNS "auth.funlab.casa"`},
		{name: "a directoryName SAN", csr: csr(x509.CertificateRequest{Subject: cn, ExtraExtensions: []pkix.Extension{sanExt(t, dnsName(host), dirName(t, "spire.funlab.casa"))}}),
			wantErr: `stepca: devid_csr_profile: CSR subjectAltName holds 2 names [dNSName "auth.funlab.casa", directoryName], want only DNS "auth.funlab.casa"`},
		{name: "a URI SAN only", csr: csr(x509.CertificateRequest{Subject: cn, ExtraExtensions: []pkix.Extension{sanExt(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("spiffe://funlab.casa/spire/server")})}}),
			wantErr: `stepca: devid_csr_profile: CSR subjectAltName holds uniformResourceIdentifier "spiffe://funlab.casa/spire/server", want only DNS "auth.funlab.casa"`},
		{name: "another host's DNS SAN", csr: csr(x509.CertificateRequest{Subject: cn, DNSNames: []string{"spire.funlab.casa"}}),
			wantErr: `stepca: devid_csr_profile: CSR subjectAltName holds dNSName "spire.funlab.casa", want only DNS "auth.funlab.casa"`},
		{name: "challengePassword", csr: csr(x509.CertificateRequest{Subject: cn, Attributes: []pkix.AttributeTypeAndValueSET{{Type: oidChallengePwd, Value: [][]pkix.AttributeTypeAndValue{{}}}}}),
			wantErr: `stepca: devid_csr_profile: CSR holds attribute 1.2.840.113549.1.9.7 (challengePassword): a DevID request holds only its extension request`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := stepca.CheckDevIDCSR(tc.csr, host)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("\n got %v\nwant %s", err, tc.wantErr)
			}
		})
	}
}

// FuzzCheckDevIDCSR: CheckDevIDCSR takes any request crypto/x509 parses without
// panicking, and accepts only what asks for the host and nothing more.
func FuzzCheckDevIDCSR(f *testing.F) {
	key := ecKey(f)
	f.Add(hostileCSR(f, key, nil, host).Raw)
	f.Add(signCSR(f, &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}}, key).Raw)
	ext := sanExt(f, dnsName(host), dirName(f, "x"))
	f.Add(hostileCSR(f, key, &ext).Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		if stepca.CheckDevIDCSR(csr, host) != nil {
			return
		}
		if csr.Subject.String() != "CN="+host || len(csr.Extensions) > 1 ||
			len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) != 0 ||
			!(len(csr.DNSNames) == 0 || slices.Equal(csr.DNSNames, []string{host})) {
			t.Errorf("accepted %s, SANs %v %v %v %v, %d extensions", csr.Subject, csr.DNSNames, csr.IPAddresses, csr.URIs, csr.EmailAddresses, len(csr.Extensions))
		}
		if strings.Contains(csr.Subject.String(), ",") {
			t.Errorf("accepted subject %s", csr.Subject)
		}
	})
}
