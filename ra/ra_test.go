package ra_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/enroll"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/ra"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

const host = "auth.funlab.casa"

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

// rig is one RA (in-process, over plain HTTP: TLS is the e2e test's) in front of a real
// step-ca, and one simulated TPM in this process.
type rig struct {
	sim    *tpmsim.Sim
	simDir string
	store  *ra.Store
	srv    *ra.Server
	url    string
	ekHash string
	ca     *stepcatest.CA
	client *stepca.Client
	log    *logBuffer
	clock  *clock
}

func newRig(t *testing.T, ekCA *verify.Bundle) *rig {
	return newRigWith(t, ekCA, nil)
}

// newRigWith is newRig with the RA's Config changed by edit.
func newRigWith(t *testing.T, ekCA *verify.Bundle, edit func(*ra.Config)) *rig {
	t.Helper()
	ca := stepcatest.Start(t, stepcatest.Config{})
	prov, err := stepca.LoadProvisioner(ca.CAConfig, ca.Provisioner, []byte(ca.ProvisionerPassword))
	if err != nil {
		t.Fatal(err)
	}
	simDir := t.TempDir()
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: simDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	if ekCA == nil {
		if ekCA, _, err = verify.LoadBundle(sim.BundlePath()); err != nil {
			t.Fatal(err)
		}
	}
	store, err := ra.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	client := stepca.New(ca.URL, ca.RootPool, prov)
	log := &logBuffer{}
	clk := &clock{}
	cfg := ra.Config{
		Enroller: &verify.Enroller{EK: verify.EKPolicy{Bundle: ekCA}},
		Store:    store,
		Signer:   client,
		Revoker:  client,
		Log:      slogJSON(log),
		Now:      clk.now,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv := ra.New(cfg)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	eks, err := tpm.EndorsementKeys(sim)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := verify.EKHash(eks[0].PublicKey)
	return &rig{sim: sim, simDir: simDir, store: store, srv: srv, url: hs.URL, ekHash: h, ca: ca, client: client, log: log, clock: clk}
}

// clock is the RA's time: the wall clock moved forward by skip.
type clock struct {
	mu   sync.Mutex
	skip time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skip)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.skip += d
	c.mu.Unlock()
}

func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// logBuffer holds the RA's JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines whose field key has value.
func (l *logBuffer) lines(key, value string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m[key] == value {
			out = append(out, m)
		}
	}
	return out
}

// decision returns the decision line of request id.
func (l *logBuffer) decision(t *testing.T, id string) map[string]any {
	t.Helper()
	ls := l.lines("request_id", id)
	if len(ls) != 1 {
		t.Fatalf("%d log lines carry request_id %q, want 1", len(ls), id)
	}
	return ls[0]
}

func (r *rig) enroll(t *testing.T, dir string, handle tpm2.TPMHandle) (*enroll.Meta, error) {
	t.Helper()
	return enroll.Enroll(context.Background(), enroll.Config{
		RAURL: r.url, Host: host, Dir: dir, Handle: handle, HTTP: http.DefaultClient,
		Open: func(string) (transport.TPMCloser, error) { return nopCloser{r.sim}, nil },
	})
}

// wantRefusal checks that the RA refused with status and check, told the client the
// check's fixed sentence and a request id, and logged reason under that id.
func wantRefusal(t *testing.T, r *rig, err error, status int, check, reason string) map[string]any {
	t.Helper()
	var re *enroll.RAError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a refusal by the RA", err)
	}
	if re.Status != status || re.Check != check || re.Message != ra.Answer(check) || re.RequestID == "" {
		t.Fatalf("refusal %d %s %q (request id %q)\nwant %d %s %q", re.Status, re.Check, re.Message, re.RequestID, status, check, ra.Answer(check))
	}
	line := r.log.decision(t, re.RequestID)
	if line["check"] != check || !reasonIs(line["reason"], reason) {
		t.Fatalf("logged check %v reason %q\nwant %s %q", line["check"], line["reason"], check, reason)
	}
	return line
}

// reasonIs compares a logged reason with want; a want ending in "..." is a prefix, for
// reasons that end in random values (nonces, key names).
func reasonIs(got any, want string) bool {
	g, _ := got.(string)
	if p, ok := strings.CutSuffix(want, "..."); ok {
		return strings.HasPrefix(g, p)
	}
	return g == want
}

// wantBody is wantRefusal for a raw answer.
func wantBody(t *testing.T, r *rig, status int, e protocol.EnrollError, wantStatus int, check, reason string) {
	t.Helper()
	if status != wantStatus || e.Check != check || e.Error != ra.Answer(check) || e.RequestID == "" {
		t.Fatalf("refusal %d %+v\nwant %d %s %q", status, e, wantStatus, check, ra.Answer(check))
	}
	line := r.log.decision(t, e.RequestID)
	if line["check"] != check || !reasonIs(line["reason"], reason) {
		t.Fatalf("logged check %v reason %q\nwant %s %q", line["check"], line["reason"], check, reason)
	}
}

// TestEnrollPendingApproveIssue: a host unknown to the RA waits for an operator, then gets
// a 90-day DevID certificate from step-ca for a key that is in its TPM.
func TestEnrollPendingApproveIssue(t *testing.T) {
	r := newRig(t, nil)
	dir := t.TempDir()
	_, err := r.enroll(t, dir, 0)
	wantRefusal(t, r, err, 403, ra.CheckPending, "ra: host auth.funlab.casa is not bound to EK "+r.ekHash+" yet (1 TPMs asked for it): an operator approves it on the RA host with `omens ra approve auth.funlab.casa`")
	b, err := r.store.Read()
	if err != nil {
		t.Fatal(err)
	}
	if ps := b.Pending[host]; len(ps) != 1 || ps[0].EKHash != r.ekHash || ps[0].Source != "127.0.0.1" ||
		ps[0].EKIssuer != "CN=omens Simulated TPM Manufacturer EK Intermediate CA,O=omens" || ps[0].Requests != 1 {
		t.Fatalf("pending queue %+v, want %s with EK %s from 127.0.0.1", b.Pending[host], host, r.ekHash)
	}
	if _, err := r.store.Approve(host, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	meta, err := r.enroll(t, dir, 0x81010002)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, enroll.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf := firstCert(t, pemBytes)
	if leaf.Subject.CommonName != host || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
		t.Errorf("certificate names %q %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 2159*time.Hour || life > 2161*time.Hour {
		t.Errorf("lifetime %s, want 2160h", life)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.ca.RootPool, Intermediates: poolOf(t, pemBytes), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("DevID certificate does not chain to step-ca's root: %v", err)
	}
	// The key is in the TPM: persisted at the handle, and loadable from the blobs.
	k, err := tpm.LoadPersistentDevID(r.sim, 0x81010002)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := k.PublicKey()
	if !kp.(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Error("the key at 0x81010002 is not the certificate's")
	}
	pub, _ := os.ReadFile(filepath.Join(dir, enroll.PubFile))
	if !bytes.Equal(pub, tpm2.Marshal(k.Public)) {
		t.Error("devid.pub is not the persisted key's public area")
	}
	if meta.Serial != leaf.SerialNumber.Text(16) || meta.EKHash != r.ekHash {
		t.Errorf("meta %+v", meta)
	}
	b, _ = r.store.Read()
	if bd := b.Hosts[host]; bd == nil || len(bd.Certificates) != 1 || bd.Certificates[0].Serial != meta.Serial || !bd.Certificates[0].NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("binding %+v does not record the serial %s", bd, meta.Serial)
	}
	if hs, _ := tpm.TransientHandles(r.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
}

func TestEKFromUnknownCA(t *testing.T) {
	other, err := mfgca.NewEphemeral("Other Vendor")
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, verify.NewBundle([]*x509.Certificate{other.Root()}, []*x509.Certificate{other.Intermediate()}))
	_, err = r.enroll(t, t.TempDir(), 0)
	wantRefusal(t, r, err, 403, verify.CheckEKCertificate, "verify: ek_certificate: verify: certificate not trusted: issuer \"CN=omens Simulated TPM Manufacturer EK Intermediate CA,O=omens\" (serial ...")
}

func TestHostBoundToAnotherEK(t *testing.T) {
	r := newRig(t, nil)
	other := strings.Repeat("ab", 32)
	if _, err := r.store.Approve(host, other, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := r.enroll(t, t.TempDir(), 0)
	line := wantRefusal(t, r, err, 403, ra.CheckBinding, "ra: host auth.funlab.casa is bound to EK "+other+", not to this TPM's EK "+r.ekHash)
	if line["host"] != host || line["ek_hash"] != r.ekHash || line["source"] != "127.0.0.1" || line["path"] != "/v1/enroll/begin" {
		t.Errorf("audit line %v", line)
	}
	if b, _ := r.store.Read(); len(b.Pending) != 0 {
		t.Errorf("a refused TPM was queued: %+v", b.Pending)
	}
}

// device plays the enrollment by hand, so a test can send what a careless or hostile
// device would.
type device struct {
	t   *testing.T
	r   *rig
	ek  tpmrules.EKKind
	ak  *tpm.AK
	key *tpm.DevIDKey
}

func newDevice(t *testing.T, r *rig) *device {
	ek, err := tpm.LoadEK(r.sim, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm.LoadOrCreateAK(r.sim, ek, tpmrules.DefaultAKHandle)
	ek.Close(r.sim)
	if err != nil {
		t.Fatal(err)
	}
	srk, err := tpm.LoadSRK(r.sim, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm.CreateDevID(r.sim, srk, tpm2.TPMAlgECC)
	srk.Close(r.sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { key.Close(r.sim) })
	return &device{t: t, r: r, ek: tpmrules.EKRSA2048, ak: ak, key: key}
}

func (d *device) post(path string, body []byte) (int, []byte) {
	resp, err := http.Post(d.r.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (d *device) begin(devidPublic []byte) *protocol.EnrollChallenge {
	d.t.Helper()
	status, b := d.post("/v1/enroll/begin", d.beginBody(devidPublic))
	if status != 200 {
		d.t.Fatalf("begin: %d %s", status, b)
	}
	ch, err := protocol.DecodeEnrollChallenge(b)
	if err != nil {
		d.t.Fatal(err)
	}
	return ch
}

func (d *device) beginBody(devidPublic []byte) []byte {
	d.t.Helper()
	cert, err := tpm.ReadEKCertificate(d.r.sim, d.ek)
	if err != nil {
		d.t.Fatal(err)
	}
	ek, err := tpm.LoadEK(d.r.sim, d.ek)
	if err != nil {
		d.t.Fatal(err)
	}
	ekPub := ek.Public
	ek.Close(d.r.sim)
	body, _ := protocol.EncodeEnroll(&protocol.EnrollBegin{Host: host, EKCert: cert, EKPublic: tpm2.Marshal(ekPub), AKPublic: tpm2.Marshal(d.ak.Public), DevIDPublic: devidPublic})
	return body
}

// finish answers ch, with Certify over certifyNonce.
func (d *device) finish(ch *protocol.EnrollChallenge, certifyNonce []byte) []byte {
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
	attest, sig, err := tpm.Certify(d.r.sim, d.key, d.ak, certifyNonce)
	if err != nil {
		d.t.Fatal(err)
	}
	signer, err := d.key.Signer(d.r.sim)
	if err != nil {
		d.t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}}, signer)
	if err != nil {
		d.t.Fatal(err)
	}
	body, _ := protocol.EncodeEnroll(&protocol.EnrollFinish{Session: ch.Session, Secret: secret, Certify: attest, CertifySignature: sig, CSR: csr})
	return body
}

func (d *device) refusal(path string, body []byte) (int, protocol.EnrollError) {
	t := d.t
	t.Helper()
	status, body := d.post(path, body)
	var e protocol.EnrollError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("refusal body %q is not JSON: %v", body, err)
	}
	return status, e
}

func TestRefusals(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, r)

	t.Run("key not fixedTPM", func(t *testing.T) {
		// A software key the device could copy: its public area says so.
		soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub := tpmrules.DevIDTemplateECC
		pub.ObjectAttributes.FixedTPM, pub.ObjectAttributes.FixedParent, pub.ObjectAttributes.SensitiveDataOrigin = false, false, false
		ecdh, _ := soft.PublicKey.ECDH()
		pt := ecdh.Bytes()
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]}})
		cert, _ := tpm.ReadEKCertificate(r.sim, tpmrules.EKRSA2048)
		ek, _ := tpm.LoadEK(r.sim, tpmrules.EKRSA2048)
		body, _ := protocol.EncodeEnroll(&protocol.EnrollBegin{Host: host, EKCert: cert, EKPublic: tpm2.Marshal(ek.Public), AKPublic: tpm2.Marshal(d.ak.Public), DevIDPublic: tpm2.Marshal(pub)})
		ek.Close(r.sim)
		status, e := d.refusal("/v1/enroll/begin", body)
		wantBody(t, r, status, e, 403, verify.CheckDevIDAttributes, "verify: devid_attributes: DevID key attributes 0x00040440 lack [fixedTPM fixedParent sensitiveDataOrigin]: a key made outside the TPM or able to leave it is no device identity (devid_name=...")
	})

	t.Run("Certify over a stale nonce", func(t *testing.T) {
		old := d.begin(tpm2.Marshal(d.key.Public))
		cur := d.begin(tpm2.Marshal(d.key.Public))
		status, e := d.refusal("/v1/enroll/finish", d.finish(cur, old.Nonce))
		wantBody(t, r, status, e, 403, verify.CheckCertifyNonce, "verify: devid_certify_nonce: Certify qualifying data ...")
	})

	t.Run("replayed enrollment", func(t *testing.T) {
		ch := d.begin(tpm2.Marshal(d.key.Public))
		body := d.finish(ch, ch.Nonce)
		if status, b := d.post("/v1/enroll/finish", body); status != 200 {
			t.Fatalf("first finish: %d %s", status, b)
		}
		status, e := d.refusal("/v1/enroll/finish", body)
		wantBody(t, r, status, e, 403, ra.CheckSession, "ra: session \""+ch.Session+"\" is unknown, used, replaced by a newer begin for its EK, or expired (a replayed enrollment?)")
	})

	t.Run("oversized request", func(t *testing.T) {
		status, e := d.refusal("/v1/enroll/begin", bytes.Repeat([]byte(" "), protocol.MaxEnrollMessageSize+1))
		wantBody(t, r, status, e, 413, ra.CheckSize, "ra: request is over 65536 bytes")
	})
}

func firstCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	certs := parseAll(t, pemBytes)
	return certs[0]
}

func poolOf(t *testing.T, pemBytes []byte) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range parseAll(t, pemBytes)[1:] {
		p.AddCert(c)
	}
	return p
}

// TestRenew: not before two thirds of the certificate's life (unless forced); then a fresh
// attestation, a new key in the TPM at the same handle, new files, the same TPM identity.
func TestRenew(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first, err := r.enroll(t, dir, 0x81010002)
	if err != nil {
		t.Fatal(err)
	}
	cfg := enroll.Config{RAURL: r.url, Dir: dir, HTTP: http.DefaultClient,
		Open: func(string) (transport.TPMCloser, error) { return nopCloser{r.sim}, nil }}
	cur, err := enroll.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = enroll.Renew(context.Background(), cfg, false, time.Now())
	var nd *enroll.ErrNotDue
	if !errors.As(err, &nd) || !nd.At.Equal(enroll.RenewAt(cur.Leaf)) {
		t.Fatalf("renewing a fresh certificate: %v, want not due until %s", err, enroll.RenewAt(cur.Leaf))
	}
	second, err := enroll.Renew(context.Background(), cfg, false, enroll.RenewAt(cur.Leaf).Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if second.Serial == first.Serial || second.EKHash != first.EKHash || second.Host != host || second.Handle != "0x81010002" {
		t.Errorf("renewal %+v after %+v", second, first)
	}
	now, err := enroll.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if now.Leaf.SerialNumber.Text(16) != second.Serial {
		t.Error("devid.crt is not the renewed certificate")
	}
	k, err := tpm.LoadPersistentDevID(r.sim, 0x81010002)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := k.PublicKey()
	if !kp.(interface{ Equal(crypto.PublicKey) bool }).Equal(now.Leaf.PublicKey) {
		t.Error("the key at 0x81010002 is not the renewed certificate's")
	}
	if kp.(interface{ Equal(crypto.PublicKey) bool }).Equal(cur.Leaf.PublicKey) {
		t.Error("renewal kept the old key")
	}
	if hs, _ := tpm.TransientHandles(r.sim); len(hs) != 0 {
		t.Errorf("transient handles left: %x", hs)
	}
}
