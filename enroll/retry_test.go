package enroll_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/enroll"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/ra"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// raProcess is the real RA, in front of a real step-ca, served over TLS on one address
// that it can leave (stop) and take again (start), with the same certificate.
type raProcess struct {
	t       *testing.T
	handler http.Handler
	addr    string
	cert    tls.Certificate
	srv     *httptest.Server
}

func (r *raProcess) start() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: r.handler}}
	if r.cert.Certificate != nil {
		r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{r.cert}}
	}
	r.srv.StartTLS()
	r.addr, r.cert = ln.Addr().String(), r.srv.TLS.Certificates[0]
}

func (r *raProcess) stop() { r.srv.Close() }

func startRA(t *testing.T, d *device) (*raProcess, *x509.CertPool) {
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
	r := &raProcess{t: t, addr: "127.0.0.1:0",
		handler: ra.New(ra.Config{Enroller: &verify.Enroller{EK: verify.EKPolicy{Bundle: d.bundle}}, Store: store, Signer: client, Revoker: client}).Handler()}
	r.start()
	t.Cleanup(func() { r.srv.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(r.srv.Certificate())
	return r, roots
}

// devidState is what a host's DevID is: its certificate file and the key at its handle.
type devidState struct {
	cert []byte
	key  []byte // TPMT_PUBLIC at the handle
}

func readDevID(t *testing.T, d *device, dir string, h tpm2.TPMHandle) devidState {
	t.Helper()
	cert, err := os.ReadFile(filepath.Join(dir, enroll.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm.LoadPersistentDevID(d.sim, h)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := enroll.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.Pub(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	if !cur.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Fatalf("the key at 0x%08X is not the certificate's", uint32(h))
	}
	return devidState{cert: cert, key: k.PublicBlob}
}

// TestRenewWhileRAUnreachable renews a DevID while the real RA is stopped: each attempt
// fails, is reported with its number and the next delay (doubling), and the host keeps its
// DevID (certificate file and TPM key at the handle); when the RA is started again the
// next attempt renews. With the RA away for good, the tries stop at Attempts.
func TestRenewWhileRAUnreachable(t *testing.T) {
	d := newDevice(t)
	r, roots := startRA(t, d)
	const handle = tpm2.TPMHandle(0x81010002)
	dir := filepath.Join(t.TempDir(), "devid")
	cfg := d.config("https://"+r.addr, dir)
	cfg.RARoots, cfg.Handle = roots, handle
	if _, err := enroll.Enroll(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	old := readDevID(t, d, dir, handle)
	r.stop()

	type attempt struct {
		n    int
		err  error
		next time.Duration
	}
	var tries []attempt
	b := enroll.Backoff{Attempts: 5, First: 10 * time.Millisecond, Max: time.Second}
	m, err := enroll.RenewRetrying(context.Background(), cfg, true, b, func(n int, err error, next time.Duration) {
		tries = append(tries, attempt{n, err, next})
		t.Logf("attempt %d failed: %v; next in %s", n, err, next)
		if now := readDevID(t, d, dir, handle); !bytes.Equal(now.cert, old.cert) || !bytes.Equal(now.key, old.key) {
			t.Errorf("after failed attempt %d the DevID changed", n)
		}
		if n == 2 {
			r.start()
		}
	})
	if err != nil {
		t.Fatalf("renewal after the RA came back: %v", err)
	}
	if len(tries) != 2 {
		t.Fatalf("%d failed attempts reported, want 2 (the RA was back after the second)", len(tries))
	}
	for i, want := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond} {
		if tries[i].n != i+1 || tries[i].next != want || !enroll.Unreachable(tries[i].err) || !strings.Contains(tries[i].err.Error(), r.addr) {
			t.Errorf("attempt %d: reported as %d, next %s (want %s), error %v", i+1, tries[i].n, tries[i].next, want, tries[i].err)
		}
	}
	renewed := readDevID(t, d, dir, handle)
	if bytes.Equal(renewed.cert, old.cert) || bytes.Equal(renewed.key, old.key) {
		t.Error("the renewal did not replace the certificate and the key")
	}
	if cur, _ := enroll.Load(dir); cur.Meta.Serial != m.Serial {
		t.Errorf("devid.json serial %s, the renewal returned %s", cur.Meta.Serial, m.Serial)
	}

	// The RA away for good: the tries are bounded, and the DevID stays.
	r.stop()
	tries = nil
	b.Attempts = 3
	_, err = enroll.RenewRetrying(context.Background(), cfg, true, b, func(n int, err error, next time.Duration) {
		tries = append(tries, attempt{n, err, next})
	})
	if err == nil || !strings.Contains(err.Error(), "attempt 3 of 3, the last") || len(tries) != 2 {
		t.Errorf("with the RA down: %d retries reported, error %v", len(tries), err)
	}
	if now := readDevID(t, d, dir, handle); !bytes.Equal(now.cert, renewed.cert) || !bytes.Equal(now.key, renewed.key) {
		t.Error("a renewal that never reached the RA changed the DevID")
	}
	if hs, _ := tpm.TransientHandles(d.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
}

// TestRenewRefusalNotRetried: an RA that refuses (4xx) is not asked again.
func TestRenewRefusalNotRetried(t *testing.T) {
	refusal := &enroll.RAError{Status: 403, Check: "ek_certificate"}
	if enroll.Unreachable(refusal) || !enroll.Unreachable(&enroll.RAError{Status: 502, Check: "stepca"}) {
		t.Error("Unreachable: a 403 refusal is not an outage, a 502 is")
	}
	if enroll.Unreachable(errors.New("tpm: gone")) {
		t.Error("Unreachable: a TPM error is not an outage of the RA")
	}
}
