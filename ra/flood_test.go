package ra_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/ra"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// postFrom posts body to url from the loopback address source (127.0.0.0/8 all reaches
// the loopback interface), as a client on another address would.
func postFrom(t *testing.T, source, url string, body []byte) (int, protocol.EnrollError) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e protocol.EnrollError
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("refusal body %q: %v", b, err)
		}
	}
	return resp.StatusCode, e
}

// forgedBegins returns n EnrollBegin bodies for n distinct EKs whose certificates ca
// issued: what anyone can send, with public EK certificates, and without their TPMs.
func forgedBegins(t *testing.T, ca *mfgca.CA, d *device, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < n; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.IssueEK(&k.PublicKey, mfgca.EKTemplate{})
		if err != nil {
			t.Fatal(err)
		}
		pub := tpmrules.EKECCP256.Template
		ecdh, _ := k.PublicKey.ECDH()
		pt := ecdh.Bytes()
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]}})
		body, err := protocol.EncodeEnroll(&protocol.EnrollBegin{Host: fmt.Sprintf("h%d.funlab.casa", i), EKCert: cert, EKPublic: tpm2.Marshal(pub),
			AKPublic: tpm2.Marshal(d.ak.Public), DevIDPublic: tpm2.Marshal(d.key.Public)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, body)
	}
	return out
}

// TestSessionFlood: begins from EKs of an untrusted CA take no place; one address holds
// at most MaxSessionsPerAddress open sessions (rate_limit, 429); a flood from many
// addresses and many EKs fills the table, whose oldest sessions give way; and through
// it all a legitimate device enrolls. A second begin for one EK replaces its session.
func TestSessionFlood(t *testing.T) {
	r := newRigWith(t, nil, func(c *ra.Config) {
		c.RatePerMinute = 1000
		c.MaxSessions = 24
		c.MaxSessionsPerAddress = 4
	})
	if _, err := r.store.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, r)
	trusted, err := mfgca.Open(r.simDir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mfgca.NewEphemeral("Other Vendor")
	if err != nil {
		t.Fatal(err)
	}
	begin := r.url + "/v1/enroll/begin"

	// EKs no trusted manufacturer certified are refused before any session is made.
	for _, body := range forgedBegins(t, other, d, 10) {
		status, e := postFrom(t, "127.0.0.2", begin, body)
		wantBody(t, r, status, e, 403, verify.CheckEKCertificate, "verify: ek_certificate: verify: certificate not trusted: issuer \"CN=Other Vendor EK Intermediate CA,O=omens\" (serial ...")
	}
	// So the address still has its four places, and no fifth.
	forged := forgedBegins(t, trusted, d, 4+20*4+8)
	for _, body := range forged[:4] {
		if status, e := postFrom(t, "127.0.0.2", begin, body); status != 200 {
			t.Fatalf("begin of a trusted EK: %d %+v", status, e)
		}
	}
	status, e := postFrom(t, "127.0.0.2", begin, forged[4])
	wantBody(t, r, status, e, 429, ra.CheckRate, "ra: 127.0.0.2 has 4 enrollments open, the most one address may have; retry once they finish or expire")

	// A flood from 20 addresses, four EKs each: 80 sessions into a table of 24.
	for i, body := range forged[4 : 4+80] {
		if status, e := postFrom(t, fmt.Sprintf("127.0.0.%d", 10+i/4), begin, body); status != 200 {
			t.Fatalf("flood begin %d: %d %+v", i, status, e)
		}
	}
	// The legitimate device begins in a full table, the flood goes on, the device
	// finishes and gets its certificate.
	first := d.begin(tpm2.Marshal(d.key.Public))
	ch := d.begin(tpm2.Marshal(d.key.Public)) // a device that starts again replaces its session
	for i, body := range forged[84:] {
		if status, e := postFrom(t, fmt.Sprintf("127.0.0.%d", 40+i), begin, body); status != 200 {
			t.Fatalf("flood begin during the enrollment %d: %d %+v", i, status, e)
		}
	}
	status, e = d.refusal("/v1/enroll/finish", d.finish(first, first.Nonce))
	wantBody(t, r, status, e, 403, ra.CheckSession, "ra: session \""+first.Session+"\" is unknown, used, replaced by a newer begin for its EK, or expired (a replayed enrollment?)")
	if status, b := d.post("/v1/enroll/finish", d.finish(ch, ch.Nonce)); status != 200 {
		t.Fatalf("the legitimate device during the flood: %d %s", status, b)
	}
}

// TestRateLimit: the 31st request of a minute from one address is refused with 429.
func TestRateLimit(t *testing.T) {
	store, err := ra.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{}
	srv := ra.New(ra.Config{Enroller: &verify.Enroller{}, Store: store, Log: slogJSON(log)})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	r := &rig{log: log}
	for i := 0; i < 30; i++ {
		status, e := postFrom(t, "127.0.0.5", hs.URL+"/v1/enroll/begin", []byte("{}"))
		if status != 400 || e.Check != verify.CheckProtocol {
			t.Fatalf("request %d: %d %+v", i, status, e)
		}
	}
	status, e := postFrom(t, "127.0.0.5", hs.URL+"/v1/enroll/begin", []byte("{}"))
	wantBody(t, r, status, e, 429, ra.CheckRate, "ra: more than 30 requests a minute from 127.0.0.5")
	if status, e := postFrom(t, "127.0.0.6", hs.URL+"/v1/enroll/begin", []byte("{}")); status != 400 {
		t.Errorf("another address: %d %+v", status, e)
	}
}

// TestInternalErrorHidesDetail: when the RA fails (its bindings file cannot be read), the
// client gets check internal and a request id, not the path or the error; the RA's log
// has both under that id.
func TestInternalErrorHidesDetail(t *testing.T) {
	r := newRig(t, nil)
	d := newDevice(t, r)
	if err := os.Mkdir(r.store.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(r.url+"/v1/enroll/begin", "application/json", bytes.NewReader(d.beginBody(tpm2.Marshal(d.key.Public))))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e protocol.EnrollError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"check":"internal","request_id":%q,"error":%q}`, e.RequestID, ra.Answer(ra.CheckInternal))
	if resp.StatusCode != 500 || string(body) != want || len(e.RequestID) != 16 {
		t.Fatalf("answer %d %s\nwant 500 %s", resp.StatusCode, body, want)
	}
	if strings.Contains(string(body), r.store.Path()) || strings.Contains(string(body), "bindings") {
		t.Fatalf("answer names the bindings file: %s", body)
	}
	line := r.log.decision(t, e.RequestID)
	reason := fmt.Sprintf("ra: limits: %s is not a regular file (a directory): an RA bindings file must be one", r.store.Path())
	if line["check"] != "internal" || line["reason"] != reason || line["level"] != "ERROR" {
		t.Errorf("log line %v\nwant reason %s", line, reason)
	}
}
