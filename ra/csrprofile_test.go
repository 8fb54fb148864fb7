package ra_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/tpm"
)

// finishWith is device.finish with a CSR of tmpl, signed by the device's DevID key in its
// TPM: a device asking for more than a DevID certificate.
func (d *device) finishWith(ch *protocol.EnrollChallenge, tmpl *x509.CertificateRequest) []byte {
	d.t.Helper()
	ek, err := tpm.LoadEK(d.r.sim, d.ek)
	if err != nil {
		d.t.Fatal(err)
	}
	secret, err := tpm.ActivateCredential(d.r.sim, d.ak, ek, ch.CredentialBlob, ch.EncryptedSecret)
	ek.Close(d.r.sim)
	if err != nil {
		d.t.Fatal(err)
	}
	attest, sig, err := tpm.Certify(d.r.sim, d.key, d.ak, ch.Nonce)
	if err != nil {
		d.t.Fatal(err)
	}
	signer, err := d.key.Signer(d.r.sim)
	if err != nil {
		d.t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		d.t.Fatal(err)
	}
	body, _ := protocol.EncodeEnroll(&protocol.EnrollFinish{Session: ch.Session, Secret: secret, Certify: attest, CertifySignature: sig, CSR: csr})
	return body
}

// TestCSRProfile: a genuine TPM, bound to its host, whose DevID key signs a request for
// CA:TRUE, for code signing or with more subject attributes, is refused by the RA
// (devid_csr_profile, naming the attribute or extension); step-ca never sees the request,
// and the device enrolls when it asks for its DevID only.
func TestCSRProfile(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, r)
	cn := pkix.Name{CommonName: host}
	dns := []string{host}
	caTrue, _ := asn1.Marshal(struct{ IsCA bool }{true})
	codeSigning, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 3}})
	for _, tc := range []struct {
		name string
		tmpl *x509.CertificateRequest
		want string
	}{
		{"CA:TRUE", &x509.CertificateRequest{Subject: cn, DNSNames: dns, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}}},
			"stepca: devid_csr_profile: CSR requests extension 2.5.29.19 (basicConstraints) (critical true): a DevID certificate's extensions are the CA's to set"},
		{"code signing", &x509.CertificateRequest{Subject: cn, DNSNames: dns, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: codeSigning}}},
			"stepca: devid_csr_profile: CSR requests extension 2.5.29.37 (extKeyUsage) (critical false): a DevID certificate's extensions are the CA's to set"},
		{"organizational unit", &x509.CertificateRequest{Subject: pkix.Name{CommonName: host, OrganizationalUnit: []string{"Tower Admins"}}, DNSNames: dns},
			`stepca: devid_csr_profile: CSR subject holds attribute 2.5.4.11 (OU) = "Tower Admins": a DevID subject is its host's common name only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skip := len(r.ca.Log())
			status, e := d.refusal("/v1/enroll/finish", d.finishWith(d.begin(tpm2.Marshal(d.key.Public)), tc.tmpl))
			wantBody(t, r, status, e, http.StatusForbidden, stepca.CheckDevIDCSRProfile, "ra: "+tc.want)
			if n := len(r.ca.Log()); n != skip {
				t.Errorf("step-ca logged %d bytes: it saw the request", n-skip)
			}
		})
	}
	ch := d.begin(tpm2.Marshal(d.key.Public))
	status, b := d.post("/v1/enroll/finish", d.finishWith(ch, &x509.CertificateRequest{Subject: cn, DNSNames: dns}))
	if status != http.StatusOK {
		t.Fatalf("DevID request: %d %s", status, b)
	}
	res, err := protocol.DecodeEnrollResult(b)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.String() != "CN="+host || leaf.KeyUsage != x509.KeyUsageDigitalSignature ||
		len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || leaf.BasicConstraintsValid {
		t.Errorf("DevID certificate: subject %s, KU %v, EKU %v, basic constraints %t", leaf.Subject, leaf.KeyUsage, leaf.ExtKeyUsage, leaf.BasicConstraintsValid)
	}
}

// TestCSRProfileNotQueued: a host the RA does not know yet, whose request asks for more
// than a DevID certificate, is refused before it would wait for an operator: it is not
// queued.
func TestCSRProfileNotQueued(t *testing.T) {
	r := newRig(t, nil)
	d := newDevice(t, r)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: host, Organization: []string{"Evil Corp"}}, DNSNames: []string{host}}
	status, e := d.refusal("/v1/enroll/finish", d.finishWith(d.begin(tpm2.Marshal(d.key.Public)), tmpl))
	wantBody(t, r, status, e, http.StatusForbidden, stepca.CheckDevIDCSRProfile,
		`ra: stepca: devid_csr_profile: CSR subject holds attribute 2.5.4.10 (O) = "Evil Corp": a DevID subject is its host's common name only`)
	b, err := r.store.Read()
	if err != nil {
		t.Fatal(err)
	}
	if p := b.PendingList(); len(p) != 0 {
		t.Errorf("%d requests pending after a refused request, want none", len(p))
	}
}
