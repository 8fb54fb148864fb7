package ra_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/enroll"
	"omens.dev/omens/ra"
)

// crlSerials returns the serials (hexadecimal) in step-ca's CRL.
func (r *rig) crlSerials(t *testing.T) map[string]bool {
	t.Helper()
	crl, err := r.client.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out
}

// TestDecommissionRevokesEveryCertificate: a host enrolled twice has two certificates on
// record; decommissioning revokes both in step-ca (both are in its CRL), the RA then
// refuses the host, and unbind is allowed only once nothing issued to it is valid.
func TestDecommissionRevokesEveryCertificate(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	first, err := r.enroll(t, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := r.enroll(t, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := r.store.Read()
	bd := b.Hosts[host]
	if len(bd.Certificates) != 2 || bd.Certificates[0].Serial != first.Serial || bd.Certificates[1].Serial != second.Serial ||
		bd.Certificates[0].Superseded.IsZero() || !bd.Certificates[1].Superseded.IsZero() {
		t.Fatalf("certificates on record %+v %+v, want %s superseded by %s", bd.Certificates[0], bd.Certificates[len(bd.Certificates)-1], first.Serial, second.Serial)
	}

	// Unbind refuses while they are valid, and names them.
	err = r.store.Unbind(host, time.Now())
	want := "ra: auth.funlab.casa has DevID certificates that are still valid (serials " + first.Serial + ", " + second.Serial +
		"): revoke them first with `omens devid revoke --host auth.funlab.casa` (step-ca flags), then unbind"
	var le *ra.LiveError
	if !errors.As(err, &le) || err.Error() != want {
		t.Fatalf("unbind with live certificates: %v\nwant %s", err, want)
	}

	bd, revoked, err := r.store.Decommission(context.Background(), r.client, host, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(revoked, " ") != first.Serial+" "+second.Serial || !bd.Decommissioned || bd.EKHash != r.ekHash {
		t.Errorf("decommission revoked %v, binding %+v", revoked, bd)
	}
	crl := r.crlSerials(t)
	for _, serial := range []string{first.Serial, second.Serial} {
		if !crl[serial] {
			t.Errorf("serial %s is not in step-ca's CRL", serial)
		}
	}
	_, err = r.enroll(t, t.TempDir(), 0)
	line := wantRefusal(t, r, err, 403, ra.CheckBinding, "ra: host auth.funlab.casa was decommissioned: to enroll it again, `omens ra unbind auth.funlab.casa` then approve it")
	if line["host"] != host || line["ek_hash"] != r.ekHash || line["source"] != "127.0.0.1" {
		t.Errorf("audit line %v", line)
	}
	// Decommissioning again does not ask step-ca to revoke twice.
	if _, again, err := r.store.Decommission(context.Background(), r.client, host, time.Now()); err != nil || len(again) != 0 {
		t.Errorf("second decommission: revoked %v, %v", again, err)
	}
	if err := r.store.Unbind(host, time.Now()); err != nil {
		t.Errorf("unbind after decommission: %v", err)
	}
}

// TestDecommissionPartial: when a certificate is not revoked, the host is still marked
// decommissioned (the RA refuses it), the certificate stays live on record and the error
// names its serial; the next decommission revokes it.
func TestDecommissionPartial(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	meta, err := r.enroll(t, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A damaged record: the serial cannot be sent to step-ca.
	if err := r.store.Update(func(b *ra.Bindings) error {
		b.Hosts[host].Certificates[0].Serial = "zz"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, revoked, err := r.store.Decommission(context.Background(), r.client, host, time.Now())
	want := "ra: auth.funlab.casa: step-ca did not revoke DevID serials zz (run the revocation again): serial \"zz\" on record is not hexadecimal"
	if err == nil || err.Error() != want || len(revoked) != 0 {
		t.Fatalf("decommission: revoked %v, %v\nwant %s", revoked, err, want)
	}
	b, _ := r.store.Read()
	if bd := b.Hosts[host]; !bd.Decommissioned || !bd.Certificates[0].Revoked.IsZero() {
		t.Errorf("binding after a failed revocation %+v %+v", bd, bd.Certificates[0])
	}
	r.store.Update(func(b *ra.Bindings) error {
		b.Hosts[host].Certificates[0].Serial = meta.Serial
		return nil
	})
	if _, revoked, err := r.store.Decommission(context.Background(), r.client, host, time.Now()); err != nil || len(revoked) != 1 || revoked[0] != meta.Serial {
		t.Errorf("retried decommission: revoked %v, %v", revoked, err)
	}
}

// TestRenewalRevokesSuperseded: after a renewal the previous certificate stays valid for
// the supersede grace, then the RA revokes it (reason superseded) and only it.
func TestRenewalRevokesSuperseded(t *testing.T) {
	r := newRigWith(t, nil, func(c *ra.Config) { c.SupersedeGrace = 30 * time.Minute })
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	first, err := r.enroll(t, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := r.enroll(t, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r.clock.advance(29 * time.Minute)
	if err := r.srv.RevokeSuperseded(context.Background()); err != nil {
		t.Fatal(err)
	}
	if crl := r.crlSerials(t); crl[first.Serial] {
		t.Fatalf("serial %s revoked within the grace", first.Serial)
	}
	r.clock.advance(2 * time.Minute)
	if err := r.srv.RevokeSuperseded(context.Background()); err != nil {
		t.Fatal(err)
	}
	crl := r.crlSerials(t)
	if !crl[first.Serial] || crl[second.Serial] {
		t.Errorf("after the grace: superseded %s in the CRL %v, current %s in the CRL %v", first.Serial, crl[first.Serial], second.Serial, crl[second.Serial])
	}
	if ls := r.log.lines("msg", "ra revocation"); len(ls) != 1 || ls[0]["serial"] != first.Serial || ls[0]["reason"] != "superseded" {
		t.Errorf("revocation log %v", ls)
	}
	b, _ := r.store.Read()
	if c := b.Hosts[host].Certificates; c[0].Revoked.IsZero() || !c[1].Revoked.IsZero() {
		t.Errorf("record after the grace %+v %+v", c[0], c[1])
	}
}

// TestLiveCertificateCap: a host holds at most MaxLiveCertificates valid certificates;
// once the superseded one is revoked after the grace, it enrolls again.
func TestLiveCertificateCap(t *testing.T) {
	r := newRigWith(t, nil, func(c *ra.Config) { c.MaxLiveCertificates = 2 })
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.enroll(t, t.TempDir(), 0); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.enroll(t, t.TempDir(), 0)
	wantRefusal(t, r, err, 429, ra.CheckRate, "ra: host auth.funlab.casa has 2 valid DevID certificates, the most one host may have; superseded ones are revoked 1h0m0s after their renewal")
	r.clock.advance(ra.DefaultSupersedeGrace + time.Minute)
	if err := r.srv.RevokeSuperseded(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.enroll(t, t.TempDir(), 0); err != nil {
		t.Errorf("enrollment once the superseded certificate is revoked: %v", err)
	}
}

// breakAfterSign is step-ca followed by a failure of the RA's disk: the certificate is
// issued and then cannot be recorded.
type breakAfterSign struct {
	ra.Signer
	path string
}

func (b breakAfterSign) SignDevID(ctx context.Context, csr *x509.CertificateRequest, host string, life time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
	leaf, chain, err := b.Signer.SignDevID(ctx, csr, host, life)
	if err == nil {
		os.Remove(b.path)
		err = os.Mkdir(b.path, 0o700)
	}
	return leaf, chain, err
}

// TestUnrecordedCertificateRevoked: a certificate the RA issued but could not record is
// revoked at once, since no decommission would find it; the client gets check internal.
func TestUnrecordedCertificateRevoked(t *testing.T) {
	var store *ra.Store
	r := newRigWith(t, nil, func(c *ra.Config) {
		store = c.Store
		c.Signer = breakAfterSign{Signer: c.Signer, path: c.Store.Path()}
	})
	if _, err := store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := r.enroll(t, t.TempDir(), 0)
	var re *enroll.RAError
	if !errors.As(err, &re) || re.Status != 500 || re.Check != ra.CheckInternal {
		t.Fatalf("got %v, want check internal", err)
	}
	reason, _ := r.log.decision(t, re.RequestID)["reason"].(string)
	m := regexp.MustCompile(`^ra: recording DevID serial ([0-9a-f]+) of auth.funlab.casa: ra: limits: .* is not a regular file \(a directory\): an RA bindings file must be one; the certificate \(serial ([0-9a-f]+)\) was revoked$`).FindStringSubmatch(reason)
	if m == nil || m[1] != m[2] {
		t.Fatalf("logged reason %q", reason)
	}
	if !r.crlSerials(t)[m[1]] {
		t.Errorf("the unrecorded certificate %s is not in step-ca's CRL", m[1])
	}
}
