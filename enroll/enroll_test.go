package enroll_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/enroll"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/protocol"
	"omens.dev/omens/ra"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/verify"
)

const host = "auth.funlab.casa"

// device is a simulated TPM in this process, served on a socket, and its manufacturer's
// CA bundle.
type device struct {
	sim    *tpmsim.Sim
	socket string
	bundle *verify.Bundle
}

func newDevice(t *testing.T) *device {
	t.Helper()
	sim, socket := testtpm.ServeSim(t, tpmsim.Options{})
	bundle, _, err := verify.LoadBundle(sim.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	return &device{sim: sim, socket: socket, bundle: bundle}
}

func (d *device) config(raURL, dir string) enroll.Config {
	return enroll.Config{TPMPath: d.socket, RAURL: raURL, Host: host, Dir: dir}
}

// clean checks that a failed enrollment left neither files nor TPM objects behind.
func (d *device) clean(t *testing.T, dir string) {
	t.Helper()
	if des, _ := os.ReadDir(dir); len(des) != 0 {
		t.Errorf("%d files written by a failed enrollment", len(des))
	}
	if hs, _ := tpm.TransientHandles(d.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
}

// TestEnrollThroughRA enrolls an RSA DevID through the real RA, over TLS with the client
// that Enroll builds from RARoots, in front of a real step-ca.
func TestEnrollThroughRA(t *testing.T) {
	d := newDevice(t)
	ca := stepcatest.Start(t, stepcatest.Config{})
	prov, err := stepca.LoadProvisioner(ca.CAConfig, ca.Provisioner, []byte(ca.ProvisionerPassword))
	if err != nil {
		t.Fatal(err)
	}
	store, err := ra.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eks, err := tpm.EndorsementKeys(d.sim)
	if err != nil {
		t.Fatal(err)
	}
	ekHash, _ := verify.EKHash(eks[0].PublicKey)
	if _, err := store.Approve(host, ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	client := stepca.New(ca.URL, ca.RootPool, prov)
	srv := ra.New(ra.Config{Enroller: &verify.Enroller{EK: verify.EKPolicy{Bundle: d.bundle}}, Store: store, Signer: client, Revoker: client})
	hs := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(hs.Close)
	roots := x509.NewCertPool()
	roots.AddCert(hs.Certificate())

	dir := filepath.Join(t.TempDir(), "devid")
	cfg := d.config(hs.URL, dir)
	cfg.RARoots, cfg.KeyAlg = roots, "rsa"
	meta, err := enroll.Enroll(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := enroll.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Meta != *meta || meta.Host != host || meta.KeyAlg != "rsa" || meta.Handle != "" || meta.EKHash != ekHash ||
		meta.Serial != cur.Leaf.SerialNumber.Text(16) || !meta.NotAfter.Equal(cur.Leaf.NotAfter) {
		t.Errorf("devid.json %+v, returned %+v (EK %s)", cur.Meta, *meta, ekHash)
	}
	pubBlob, err := os.ReadFile(filepath.Join(dir, enroll.PubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := tpm2.Pub(*pub)
	if pub.Type != tpm2.TPMAlgRSA || !cur.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key) {
		t.Errorf("devid.pub (type 0x%04X) is not the certificate's key", uint16(pub.Type))
	}
	if fi, err := os.Stat(filepath.Join(dir, enroll.PrivFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("devid.priv: %v, mode %v, want 0600", err, fi.Mode())
	}
	if hs, _ := tpm.TransientHandles(d.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
}

func TestEnrollConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*enroll.Config)
		want string
	}{
		{"no host", func(c *enroll.Config) { c.Host = "" }, "enroll: the host name, the RA URL and the output directory are required"},
		{"no RA", func(c *enroll.Config) { c.RAURL = "" }, "enroll: the host name, the RA URL and the output directory are required"},
		{"no directory", func(c *enroll.Config) { c.Dir = "" }, "enroll: the host name, the RA URL and the output directory are required"},
		{"key algorithm", func(c *enroll.Config) { c.KeyAlg = "ed25519" }, `enroll: key algorithm "ed25519": want ecc or rsa`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := enroll.Config{RAURL: "https://ca.funlab.casa:8443", Host: host, Dir: t.TempDir(),
				Open: func(string) (transport.TPMCloser, error) { return nil, errors.New("the TPM is not opened") }}
			c.edit(&cfg)
			if _, err := enroll.Enroll(context.Background(), cfg); err == nil || err.Error() != c.want {
				t.Errorf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

// standIn answers begin with a real challenge from the verifier, so that the device gets
// as far as finish, and finish with finish(w, csr).
func standIn(t *testing.T, d *device, finish func(http.ResponseWriter, *x509.CertificateRequest)) *httptest.Server {
	v := &verify.Enroller{EK: verify.EKPolicy{Bundle: d.bundle}}
	var session *verify.Enrollment
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v1/enroll/begin":
			m, err := protocol.DecodeEnrollBegin(b)
			if err != nil {
				t.Errorf("begin: %v", err)
				return
			}
			e, ch, err := v.BeginEnrollment(m)
			if err != nil {
				t.Errorf("begin: %v", err)
				return
			}
			session, ch.Session = e, "s1"
			out, _ := protocol.EncodeEnroll(ch)
			w.Write(out)
		case "/v1/enroll/finish":
			m, err := protocol.DecodeEnrollFinish(b)
			if err != nil {
				t.Errorf("finish: %v", err)
				return
			}
			csr, err := session.Finish(m)
			if err != nil {
				t.Errorf("finish: %v", err)
				return
			}
			finish(w, csr)
		}
	}))
	t.Cleanup(hs.Close)
	return hs
}

// TestRAHTTPErrors: what the device says when the RA's HTTP answers are not what the
// protocol expects, with an httptest server standing in for the RA.
func TestRAHTTPErrors(t *testing.T) {
	d := newDevice(t)
	status := func(code int, body string) func(http.ResponseWriter, *x509.CertificateRequest) {
		return func(w http.ResponseWriter, _ *x509.CertificateRequest) { w.WriteHeader(code); io.WriteString(w, body) }
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	otherCert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, otherKey.Public(), otherKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		finish func(http.ResponseWriter, *x509.CertificateRequest)
		want   string // %s is the RA's URL
	}{
		{"not the RA", status(http.StatusBadGateway, "<html>bad gateway</html>"), "enroll: RA %s: 502 Bad Gateway"},
		{"refusal", status(http.StatusForbidden, `{"check":"host_binding","request_id":"r1","error":"host bound elsewhere"}`),
			"enroll: the RA refused (403, check host_binding, request id r1): host bound elsewhere"},
		{"not a result", status(http.StatusOK, `{"v":1,"type":"enroll_challenge"}`),
			`enroll: RA %s: protocol: malformed message: message out of order: got "enroll_challenge", want "enroll_result"`},
		{"certificate for another key", func(w http.ResponseWriter, _ *x509.CertificateRequest) {
			out, _ := protocol.EncodeEnroll(&protocol.EnrollResult{Chain: [][]byte{otherCert}})
			w.Write(out)
		}, "enroll: the RA returned a certificate for another key: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			hs := standIn(t, d, c.finish)
			dir := filepath.Join(t.TempDir(), "devid")
			_, err := enroll.Enroll(context.Background(), d.config(hs.URL, dir))
			want := strings.ReplaceAll(c.want, "%s", hs.URL)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %v\nwant %s", err, want)
			}
			d.clean(t, dir)
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		hs := httptest.NewServer(http.NotFoundHandler())
		hs.Close()
		dir := filepath.Join(t.TempDir(), "devid")
		_, err := enroll.Enroll(context.Background(), d.config(hs.URL, dir))
		if want := "enroll: RA " + hs.URL + ": Post \"" + hs.URL + "/v1/enroll/begin\": "; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("got %v\nwant %s...", err, want)
		}
		d.clean(t, dir)
	})
	t.Run("untrusted TLS", func(t *testing.T) {
		hs := httptest.NewTLSServer(http.NotFoundHandler())
		t.Cleanup(hs.Close)
		dir := filepath.Join(t.TempDir(), "devid")
		cfg := d.config(hs.URL, dir)
		cfg.RARoots = x509.NewCertPool()
		_, err := enroll.Enroll(context.Background(), cfg)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("got %v, want the RA's certificate refused as of an unknown authority", err)
		}
		d.clean(t, dir)
	})
}
