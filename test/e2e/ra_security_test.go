package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/spireconf"
)

// bundleDir puts the manufacturer CA bundles of hosts in one directory, for --ek-ca.
func bundleDir(t *testing.T, hosts ...*simHost) string {
	t.Helper()
	dir := t.TempDir()
	for _, h := range hosts {
		b, err := os.ReadFile(h.bundle())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, h.name+".pem"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// raLogLine returns the line of the RA's log (next to its state directory) that carries
// request id id.
func raLogLine(t *testing.T, state, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(state), "ra.log"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "request_id="+id+" ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d RA log lines carry request_id=%s:\n%s", len(found), id, b)
	}
	return found[0]
}

var requestID = regexp.MustCompile(`check ([a-z_]+), request id ([0-9a-f]{16})\)`)

// refused runs a command that the RA must refuse with check, and returns the request id.
func refused(t *testing.T, check string, args ...string) string {
	t.Helper()
	out, err := exec.Command(build(t).omens, args...).CombinedOutput()
	m := requestID.FindStringSubmatch(string(out))
	if err == nil || m == nil || m[1] != check {
		t.Fatalf("omens %s: %v, want a refusal with check %s:\n%s", strings.Join(args, " "), err, check, out)
	}
	return m[2]
}

// TestHostHijackThroughPendingQueue: a second TPM asking for a host another TPM asked for
// is a second contender, not a replacement; approve without --ek refuses to choose and
// names both; the operator binds the victim; the attacker is refused (host_binding) and
// the refusal is in the RA's log with its EK and address. Through `omens ra serve`, over
// HTTPS, with real step-ca.
func TestHostHijackThroughPendingQueue(t *testing.T) {
	requireStepCA(t)
	victim := startSimHost(t, "victim")
	attacker := startSimHost(t, "attacker")
	ca := stepcatest.Start(t, stepcatest.Config{})
	raURL, state := startRA(t, ca, bundleDir(t, victim, attacker))
	const host = "auth.funlab.casa"
	enroll := func(h *simHost) []string {
		return []string{"devid", "enroll", "--tpm", h.socket, "--ra", raURL, "--ra-root", ca.RootPath,
			"--host", host, "--dir", filepath.Join(h.dir, "devid")}
	}
	victimEK, attackerEK := victim.ekHash(t), attacker.ekHash(t)

	refused(t, "pending_approval", enroll(victim)...)
	refused(t, "pending_approval", enroll(attacker)...)

	var b struct {
		Version int
		Pending map[string][]struct {
			EKHash    string    `json:"ek_hash"`
			EKIssuer  string    `json:"ek_issuer"`
			Source    string    `json:"source"`
			FirstSeen time.Time `json:"first_seen"`
		}
	}
	if err := json.Unmarshal([]byte(omens(t, "ra", "pending", "--state", state, "--json")), &b); err != nil {
		t.Fatal(err)
	}
	ps := b.Pending[host]
	if b.Version != 2 || len(ps) != 2 || ps[0].EKHash != victimEK || ps[1].EKHash != attackerEK || ps[1].FirstSeen.Before(ps[0].FirstSeen) {
		t.Fatalf("pending queue %+v, want the victim %s then the attacker %s", b, victimEK, attackerEK)
	}
	for _, p := range ps {
		if p.Source != "127.0.0.1" || p.EKIssuer != "CN=omens Simulated TPM Manufacturer EK Intermediate CA,O=omens" || p.FirstSeen.IsZero() {
			t.Errorf("contender %+v", p)
		}
	}
	table := omens(t, "ra", "pending", "--state", state)
	for _, ek := range []string{victimEK, attackerEK} {
		if !strings.Contains(table, ek) || !strings.Contains(table, "127.0.0.1") {
			t.Errorf("ra pending does not list %s with its address:\n%s", ek, table)
		}
	}

	out, err := exec.Command(build(t).omens, "ra", "approve", host, "--state", state).CombinedOutput()
	want := "ra: 2 TPMs asked for auth.funlab.casa; choose one by its EK hash (omens ra pending shows each one's first request, address and EK issuer): --ek " + victimEK + ", --ek " + attackerEK
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("approve without --ek: %v\n%s\nwant %s", err, out, want)
	}
	omens(t, "ra", "approve", host, "--state", state, "--ek", victimEK)
	if got := omens(t, enroll(victim)...); !strings.Contains(got, "enrolled auth.funlab.casa") {
		t.Fatalf("the victim's enrollment: %s", got)
	}

	id := refused(t, "host_binding", enroll(attacker)...)
	line := raLogLine(t, state, id)
	for _, field := range []string{"check=host_binding", "host=" + host, "ek_hash=" + attackerEK, "source=127.0.0.1", "result=refused",
		`reason="ra: host auth.funlab.casa is bound to EK ` + victimEK + `, not to this TPM's EK ` + attackerEK + `"`} {
		if !strings.Contains(line, field) {
			t.Errorf("RA log line lacks %s:\n%s", field, line)
		}
	}
}

// fetchCRLSerials returns the serials (hexadecimal) in step-ca's CRL.
func fetchCRLSerials(t *testing.T, ca *stepcatest.CA) map[string]bool {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.RootPool}}}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, ca.URL+"/1.0/crl", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out
}

// TestDecommissionRevokesEarlierDevID: a host enrolled twice keeps both certificates on
// record; `omens devid revoke` revokes both in step-ca (both in its CRL), and the earlier
// certificate with its saved key blobs is refused by the SPIRE server plugin
// (devid_revoked). With real step-ca and real SPIRE.
func TestDecommissionRevokesEarlierDevID(t *testing.T) {
	requireStepCA(t)
	requireEngines(t)
	auth := startSimHost(t, "auth")
	ca := stepcatest.Start(t, stepcatest.Config{})
	raURL, state := startRA(t, ca, auth.bundle())
	omens(t, "ra", "approve", "auth.funlab.casa", "--state", state, "--ek", auth.ekHash(t))
	serialOf := regexp.MustCompile(`DevID certificate serial ([0-9a-f]+) `)
	var dirs, serials []string
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("devid", i))
		out := omens(t, "devid", "enroll", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath, "--host", "auth.funlab.casa", "--dir", dir)
		m := serialOf.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("enrollment %d: %s", i, out)
		}
		dirs, serials = append(dirs, dir), append(serials, m[1])
	}

	out, err := exec.Command(build(t).omens, "ra", "unbind", "auth.funlab.casa", "--state", state).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "(serials "+serials[0]+", "+serials[1]+")") {
		t.Fatalf("unbind with live certificates: %v\n%s", err, out)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(ca.ProvisionerPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	revoke := omens(t, "devid", "revoke", "--host", "auth.funlab.casa", "--state", state, "--ca-url", ca.URL, "--ca-root", ca.RootPath,
		"--ca-config", ca.CAConfig, "--provisioner-password-file", pw)
	if !strings.Contains(revoke, "revoked DevID certificate serials "+serials[0]+", "+serials[1]+" of auth.funlab.casa") {
		t.Fatalf("revoke: %s", revoke)
	}
	crl := fetchCRLSerials(t, ca)
	for _, s := range serials {
		if !crl[s] {
			t.Errorf("serial %s is not in step-ca's CRL", s)
		}
	}

	srv := spiretest.StartServer(t, spiretest.ServerConfig{NodeAttestors: []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm", Cmd: build(t).server, Data: []spireconf.Setting{
		{Key: "devid_mode", Value: "devid"},
		{Key: "devid_ca_path", Value: ca.RootPath},
		{Key: "endorsement_ca_path", Value: auth.bundle()},
		{Key: "devid_crl_url", Value: ca.URL + "/1.0/crl"},
		{Key: "pcr_bank", Value: "sha256"},
		{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
	}}}})
	old := dirs[0]
	a := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{Name: "auth-old-devid", FailFast: true, NodeAttestor: tpmAgentAttestor(t, auth.socket,
		spireconf.Setting{Key: "devid_cert_path", Value: filepath.Join(old, "devid.crt")},
		spireconf.Setting{Key: "devid_priv_path", Value: filepath.Join(old, "devid.priv")},
		spireconf.Setting{Key: "devid_pub_path", Value: filepath.Join(old, "devid.pub")})})
	if err := a.WaitExit(t, 60*time.Second); err == nil {
		t.Fatal("an agent with the earlier, revoked DevID attested")
	}
	srv.WaitLog(t, "devid_revoked", 10*time.Second)
	var line string
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(l, "devid_revoked") {
			line = l
		}
	}
	if !strings.Contains(line, "verify: devid_revoked: DevID certificate serial 0x"+serials[0]+" (CN=auth.funlab.casa) is revoked since") {
		t.Errorf("the server's refusal does not name the earlier serial %s:\n%s", serials[0], line)
	}
}
