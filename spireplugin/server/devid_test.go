package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/tpm"
)

// devidHandle is where the tests persist the DevID key: the handle of the plan.
const devidHandle tpm2.TPMHandle = 0x81010002

// devidHost is a simulated host with a DevID key in its TPM, persisted at devidHandle, and
// the files of a DevID deployment: the DevID CA bundle (server), the certificate chain
// (agent), a CRL (server).
type devidHost struct {
	*simHost
	ca                        *testattest.DevIDCA
	key                       *tpm.DevIDKey
	caPath, certPath, crlPath string
	serverHCL, agentHCL       string
}

func startDevIDHost(t *testing.T) *devidHost {
	t.Helper()
	h := &devidHost{simHost: startSimHost(t)}
	srk, err := tpm.LoadSRK(h.sim, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm.CreateDevID(h.sim, srk, tpm2.TPMAlgECC)
	srk.Close(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.PersistDevID(h.sim, key, devidHandle); err != nil {
		t.Fatal(err)
	}
	h.key = key
	if h.ca, err = testattest.NewDevIDCA("Tower of Omens"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h.caPath, h.certPath, h.crlPath = filepath.Join(dir, "devid-ca.pem"), filepath.Join(dir, "devid.crt"), filepath.Join(dir, "devid.crl")
	if err := os.WriteFile(h.caPath, h.ca.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	h.issue(t, 0x1001)
	h.writeCRL(t, 1)
	h.serverHCL = `devid_mode = "devid"
		endorsement_ca_path = "` + h.sim.BundlePath() + `"
		devid_ca_path = "` + h.caPath + `"
		devid_crl_path = "` + h.crlPath + `"`
	h.agentHCL = `tpm_path = "` + h.socket + `"
		devid_cert_path = "` + h.certPath + `"
		devid_priv_path = "0x81010002"`
	return h
}

// issue writes a DevID certificate of serial for the key, as enrollment and renewal do.
func (h *devidHost) issue(t *testing.T, serial int64) {
	t.Helper()
	pub, err := h.key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := h.ca.Issue(pub, testattest.DevIDTemplate{Serial: big.NewInt(serial)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.certPath, testattest.ChainPEM(chain), 0o644); err != nil {
		t.Fatal(err)
	}
}

// crl returns a DER CRL of the DevID CA revoking serials since revokedAt.
func (h *devidHost) crl(t *testing.T, number int64, revokedAt time.Time, serials ...int64) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: revokedAt})
	}
	now := time.Now()
	b, err := h.ca.CRL(number, now.Add(-time.Minute), now.Add(24*time.Hour), entries...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *devidHost) writeCRL(t *testing.T, number int64, serials ...int64) time.Time {
	t.Helper()
	revokedAt := time.Now().UTC().Truncate(time.Second)
	if err := os.WriteFile(h.crlPath, h.crl(t, number, revokedAt, serials...), 0o644); err != nil {
		t.Fatal(err)
	}
	return revokedAt
}

func devidSelectors(sel []string) []string {
	var out []string
	for _, s := range sel {
		if strings.HasPrefix(s, "devid:") {
			out = append(out, s)
		}
	}
	return out
}

// TestDevIDAttestThroughPlugins: a host attests in DevID mode, renews its certificate (the
// next attestation shows it, under the same agent ID, with no reconfiguration), and is
// refused once the CRL lists its certificate.
func TestDevIDAttestThroughPlugins(t *testing.T) {
	h := startDevIDHost(t)
	p := loadPlugins(t)
	p.configure(t, h.serverHCL, h.agentHCL)
	hash := h.ekHash(t)
	wantID := "spiffe://funlab.casa/spire/agent/tpm/" + hash

	attrs, err := p.attest(t)
	if err != nil {
		t.Fatal(err)
	}
	if attrs.SpiffeId != wantID || !attrs.CanReattest {
		t.Errorf("agent ID %s (reattest %v), want %s", attrs.SpiffeId, attrs.CanReattest, wantID)
	}
	want := []string{"devid:subject:cn:auth.funlab.casa", "devid:issuer:cn:Tower of Omens Intermediate CA", "devid:serial:1001"}
	if got := devidSelectors(attrs.SelectorValues); !slices.Equal(got, want) {
		t.Errorf("DevID selectors %q, want %q", got, want)
	}
	for _, s := range []string{"pub_hash:" + hash, "ek_cert:issuer:cn:omens Simulated TPM Manufacturer EK Intermediate CA", "pcr:sha256:7:"} {
		if !slices.ContainsFunc(attrs.SelectorValues, func(v string) bool { return strings.HasPrefix(v, s) }) {
			t.Errorf("selector %q missing from %v", s, attrs.SelectorValues)
		}
	}
	if log := p.log.String(); !strings.Contains(log, "tpm attestation accepted: mode=devid agent_id="+wantID) ||
		!strings.Contains(log, "devid_serial=1001 devid_cn=auth.funlab.casa") {
		t.Errorf("audit line:\n%s", log)
	}

	// Renewal: a new certificate in devid_cert_path, nothing reconfigured.
	h.issue(t, 0x1002)
	if attrs, err = p.attest(t); err != nil {
		t.Fatal(err)
	}
	want[2] = "devid:serial:1002"
	if got := devidSelectors(attrs.SelectorValues); attrs.SpiffeId != wantID || !slices.Equal(got, want) {
		t.Errorf("after renewal: agent ID %s, DevID selectors %q; want %s, %q", attrs.SpiffeId, got, wantID, want)
	}

	// The old certificate revoked: the renewed one still attests.
	h.writeCRL(t, 2, 0x1001)
	if _, err := p.attest(t); err != nil {
		t.Fatalf("with the replaced certificate revoked: %v", err)
	}
	// The current one revoked: refused at the next attestation.
	since := h.writeCRL(t, 3, 0x1001, 0x1002)
	_, err = p.attest(t)
	wantErr := "rpc error: code = PermissionDenied desc = tpm: verify: devid_revoked: DevID certificate serial 0x1002 (CN=auth.funlab.casa) is revoked since " +
		since.Format(time.RFC3339)
	if err == nil || err.Error() != wantErr {
		t.Fatalf("after revocation: %v\nwant %s", err, wantErr)
	}
	if log := p.log.String(); !strings.Contains(log, "tpm attestation rejected: mode=devid agent_id="+wantID) || !strings.Contains(log, "check=devid_revoked") {
		t.Errorf("audit line:\n%s", log)
	}
	if hs, err := tpm.TransientHandles(h.sim); err != nil || len(hs) != 0 {
		t.Errorf("transient handles left in the TPM: %x %v", hs, err)
	}
}

// TestDevIDModeMismatch: an agent in EK mode is refused by a server in DevID mode.
func TestDevIDModeMismatch(t *testing.T) {
	h := startDevIDHost(t)
	p := loadPlugins(t)
	p.configure(t, h.serverHCL, `tpm_path = "`+h.socket+`"`)
	_, err := p.attest(t)
	want := `rpc error: code = InvalidArgument desc = tpm: verify: protocol: mode "ek_cert" is not served by this verifier (want "devid")`
	if err == nil || err.Error() != want {
		t.Errorf("EK-mode agent: %v\nwant %s", err, want)
	}
}

// TestDevIDPCRPolicy: the boot-state policy applies in DevID mode too.
func TestDevIDPCRPolicy(t *testing.T) {
	h := startDevIDHost(t)
	hash := h.ekHash(t)
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	zero := strings.Repeat("00", 32)
	if err := os.WriteFile(policyPath, []byte(`
group "tower" {
  set "firmware-0.9" {
    pcrs = { "0" = "`+zero+`" }
  }
}
host "`+hash+`" {
  name  = "auth"
  group = "tower"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	p.configure(t, h.serverHCL+"\npcr_policy_path = \""+policyPath+"\"", h.agentHCL)
	_, err := p.attest(t)
	bank, _ := tpm.ParseBank("sha256")
	pcrs, rerr := tpm.ReadPCRs(h.sim, bank, []int{0})
	if rerr != nil {
		t.Fatal(rerr)
	}
	want := fmt.Sprintf("rpc error: code = PermissionDenied desc = tpm: policy: host %s (auth) PCR 0 is %x, allowed set tower/firmware-0.9 wants %s", hash, pcrs[0], zero)
	if err == nil || err.Error() != want {
		t.Fatalf("policy rejection in DevID mode:\n%v\nwant\n%s", err, want)
	}
}

// TestDevIDCRLURL: the CRL fetched from step-ca's /1.0/crl over HTTPS (trusting the DevID
// CA's root): no attestation before a CRL could be fetched, then kept until its refresh
// (5 minutes here), then fetched again.
func TestDevIDCRLURL(t *testing.T) {
	h := startDevIDHost(t)
	var (
		mu      sync.Mutex
		current []byte // nil: the CA answers 503
		fetches int
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		if r.URL.Path != "/1.0/crl" || current == nil {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(current)
	}))
	cert, err := h.ca.ServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	serve := func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		current = b
	}

	clock := time.Now()
	var clockMu sync.Mutex
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance := func(d time.Duration) { clockMu.Lock(); defer clockMu.Unlock(); clock = clock.Add(d) }
	p := loadPlugins(t)
	p.serverPlugin.Now = now
	url := srv.URL + "/1.0/crl"
	p.configure(t, `devid_mode = "devid"
		ca_path = "`+h.sim.BundlePath()+`"
		devid_ca_path = "`+h.caPath+`"
		devid_crl_url = "`+url+`"`, h.agentHCL)

	_, err = p.attest(t)
	want := "rpc error: code = Unavailable desc = tpm: verify: devid_crl: no CRL to check DevID certificate serial 0x1001 against: " +
		"no CRL could be fetched yet: devid_crl_url " + url + ": HTTP status 503 Service Unavailable"
	if err == nil || err.Error() != want {
		t.Fatalf("before any CRL: %v\nwant %s", err, want)
	}
	serve(h.crl(t, 1, time.Now()))
	if _, err := p.attest(t); err == nil {
		t.Fatal("a failed fetch is retried at once: the CA would be asked at every attestation of an outage")
	}
	advance(31 * time.Second)
	if _, err := p.attest(t); err != nil {
		t.Fatalf("once the CRL is served: %v", err)
	}
	revokedAt := time.Now().UTC().Truncate(time.Second)
	serve(h.crl(t, 2, revokedAt, 0x1001))
	advance(time.Minute)
	if _, err := p.attest(t); err != nil {
		t.Fatalf("within the refresh period, the cached CRL is used: %v", err)
	}
	advance(5 * time.Minute)
	_, err = p.attest(t)
	want = "rpc error: code = PermissionDenied desc = tpm: verify: devid_revoked: DevID certificate serial 0x1001 (CN=auth.funlab.casa) is revoked since " +
		revokedAt.Format(time.RFC3339)
	if err == nil || err.Error() != want {
		t.Fatalf("after the refresh: %v\nwant %s", err, want)
	}
	mu.Lock()
	if fetches != 3 {
		t.Errorf("%d fetches, want 3 (failed, first CRL, refresh)", fetches)
	}
	mu.Unlock()
	// The CA down again: the last CRL is kept until its nextUpdate.
	serve(nil)
	advance(6 * time.Minute)
	if _, err := p.attest(t); err == nil || !strings.Contains(err.Error(), "devid_revoked") {
		t.Errorf("with the CA down, the kept CRL still applies: %v", err)
	}

	// devid_crl_refresh_interval shortens the refresh: the certificate reinstated (a CRL
	// without it), seen 10 seconds later.
	p.configure(t, `devid_mode = "devid"
		ca_path = "`+h.sim.BundlePath()+`"
		devid_ca_path = "`+h.caPath+`"
		devid_crl_url = "`+url+`"
		devid_crl_refresh_interval = "10s"`, h.agentHCL)
	serve(h.crl(t, 3, time.Now(), 0x1001))
	if _, err := p.attest(t); err == nil || !strings.Contains(err.Error(), "devid_revoked") {
		t.Fatalf("revoked: %v", err)
	}
	serve(h.crl(t, 4, time.Now()))
	advance(11 * time.Second)
	if _, err := p.attest(t); err != nil {
		t.Errorf("10 seconds after the CRL changed: %v", err)
	}
}

func TestDevIDValidate(t *testing.T) {
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	validate := func(client configv1.ConfigServiceClient, hcl string) []string {
		t.Helper()
		resp, err := client.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: hcl})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Valid != (len(resp.Notes) == 0) {
			t.Errorf("Valid = %v with notes %q", resp.Valid, resp.Notes)
		}
		return resp.Notes
	}
	cert := filepath.Join(t.TempDir(), "devid.crt")
	if err := os.WriteFile(cert, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		client configv1.ConfigServiceClient
		hcl    string
		want   []string
	}{
		{"server, devid mode", p.serverConfig, `
			devid_mode = "devid"
			ca_path = "/nonexistent/a"
			endorsement_ca_path = "/nonexistent/b"
			devid_crl_url = "http://ca.funlab.casa/1.0/crl"
			devid_crl_path = "/nonexistent/devid.crl"
			devid_crl_refresh_interval = "500ms"
			devid_crl = "x"`, []string{
			`unknown key "devid_crl" (line 8)`,
			`ca_path "/nonexistent/a" and endorsement_ca_path "/nonexistent/b" name different manufacturer bundles; set one of them`,
			`devid_ca_path is required with devid_mode = "devid" (the DevID CA bundle: step-ca's root and intermediate)`,
			`devid_crl_url "http://ca.funlab.casa/1.0/crl": want an https URL (step-ca serves its CRL at https://CA/1.0/crl)`,
			`devid_crl_refresh_interval "500ms": want a duration of at least 1s, such as "1m"`,
			`ca_path: stat /nonexistent/a: no such file or directory`,
			`devid_crl_path: stat /nonexistent/devid.crl: no such file or directory`,
		}},
		{"server, refresh without URL", p.serverConfig, `
			devid_mode = "devid"
			allow_insecure = true
			devid_ca_path = "` + cert + `"
			devid_crl_refresh_interval = "1m"`, []string{
			`devid_crl_refresh_interval is set without devid_crl_url`,
		}},
		{"server, ek_cert mode with DevID keys", p.serverConfig, `
			devid_mode = "ek_cert"
			endorsement_ca_path = "/nonexistent/b"
			devid_ca_path = "/nonexistent/devid-ca.pem"
			devid_crl_url = "https://ca.funlab.casa/1.0/crl"`, []string{
			`devid_ca_path is set, but devid_mode is "ek_cert": set devid_mode = "devid" or remove it`,
			`devid_crl_url is set, but devid_mode is "ek_cert": set devid_mode = "devid" or remove it`,
			`endorsement_ca_path: stat /nonexistent/b: no such file or directory`,
			`devid_ca_path: stat /nonexistent/devid-ca.pem: no such file or directory`,
		}},
		{"server, no devid_mode: devid_ca_path means DevID mode", p.serverConfig, `
			endorsement_ca_path = "/nonexistent/b"
			devid_ca_path = "/nonexistent/devid-ca.pem"
			devid_crl_url = "https://ca.funlab.casa/1.0/crl"`, []string{
			`endorsement_ca_path: stat /nonexistent/b: no such file or directory`,
			`devid_ca_path: stat /nonexistent/devid-ca.pem: no such file or directory`,
		}},
		{"server, no devid_mode, DevID CRL without devid_ca_path", p.serverConfig, `
			allow_insecure = true
			devid_crl_url = "https://ca.funlab.casa/1.0/crl"`, []string{
			`devid_crl_url is set, but devid_mode is "ek_cert": set devid_mode = "devid" or remove it`,
		}},
		{"agent, handle", p.agentConfig, `
			devid_priv_path = "0x01000002"
			devid_pub_path = "/nonexistent/devid.pub"`, []string{
			`devid_cert_path is required in DevID mode (set with devid_priv_path or devid_pub_path)`,
			`devid_priv_path "0x01000002" is not a persistent handle (0x81000000 to 0x81FFFFFF)`,
			`devid_pub_path: stat /nonexistent/devid.pub: no such file or directory`,
		}},
		{"agent, blob", p.agentConfig, `
			devid_cert_path = "` + cert + `"
			devid_priv_path = "/nonexistent/devid.priv"
			devid_key = "x"`, []string{
			`unknown key "devid_key" (line 4)`,
			`devid_pub_path is required when devid_priv_path is the path of the private blob`,
			`devid_priv_path: stat /nonexistent/devid.priv: no such file or directory`,
		}},
		{"agent, no key", p.agentConfig, `devid_cert_path = "` + cert + `"`, []string{
			`devid_priv_path is required in DevID mode: a persistent handle such as "0x81010002", or the path of the private blob`,
		}},
		{"agent, handle, valid", p.agentConfig, `devid_cert_path = "` + cert + `"
			devid_priv_path = "0x81010002"`, nil},
	} {
		if got := validate(c.client, c.hcl); !slices.Equal(got, c.want) {
			t.Errorf("%s: notes\n%s\nwant\n%s", c.name, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

// TestDevIDModeFromDevIDCAPath: the plan's DevID-phase block (devid_ca_path and
// endorsement_ca_path, no devid_mode) means DevID mode; Configure says so once.
func TestDevIDModeFromDevIDCAPath(t *testing.T) {
	h := startDevIDHost(t)
	p := loadPlugins(t)
	planHCL := `
		# DevID CA - step-ca root certificate
		devid_ca_path = "` + h.caPath + `"

		# Endorsement CA - the manufacturer CA
		endorsement_ca_path = "` + h.sim.BundlePath() + `"`
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: planHCL})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Valid {
		t.Fatalf("Validate refused the plan's DevID block: %q", resp.Notes)
	}
	p.configure(t, planHCL, h.agentHCL)
	attrs, err := p.attest(t)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(attrs.SelectorValues, "devid:serial:1001") {
		t.Errorf("no DevID selector: not attested in DevID mode: %v", attrs.SelectorValues)
	}
	line := `devid_mode is not set and devid_ca_path is: DevID mode: mode=devid devid_ca_path=` + h.caPath
	if n := strings.Count(p.log.String(), line); n != 1 {
		t.Errorf("log has %d lines %q, want 1:\n%s", n, line, p.log)
	}
	// An EK-mode agent is refused: the server is in DevID mode.
	p.configure(t, planHCL, `tpm_path = "`+h.socket+`"`)
	if _, err := p.attest(t); err == nil || !strings.Contains(err.Error(), `mode "ek_cert" is not served by this verifier (want "devid")`) {
		t.Errorf("EK-mode agent against the plan's DevID block: %v", err)
	}
}
