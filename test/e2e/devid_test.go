package e2e_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/spireconf"
)

func requireStepCA(t *testing.T) {
	t.Helper()
	enginetest.Require(t, engines.StepCA, engines.Step)
}

// startRA runs `omens ra serve` in front of ca, trusting host's manufacturer, and returns
// its URL and state directory.
func startRA(t *testing.T, ca *stepcatest.CA, ekCA string) (string, string) {
	t.Helper()
	url, dir := startRAWith(t, ca, ekCA, "--listen", "127.0.0.1:0", "--state", "state")
	return url, filepath.Join(dir, "state")
}

// startRAWith runs `omens ra serve` with args (its --listen and its state: --state,
// relative to the directory returned, or --database) and returns its URL and directory,
// which holds ra.log.
func startRAWith(t *testing.T, ca *stepcatest.CA, ekCA string, args ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "provisioner-password")
	if err := os.WriteFile(pw, []byte(ca.ProvisionerPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(build(t).omens, append([]string{"ra", "serve", "--name", "ra.funlab.casa",
		"--ek-ca", ekCA, "--ca-url", ca.URL, "--ca-root", ca.RootPath,
		"--ca-config", ca.CAConfig, "--provisioner", ca.Provisioner, "--provisioner-password-file", pw}, args...)...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "ra.log"))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "ra.log"))
			t.Logf("RA log:\n%s", b)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "RA serving on ") {
			b, _ := os.ReadFile(filepath.Join(dir, "ra.log"))
			t.Fatalf("RA did not start (%q):\n%s", l, b)
		}
		url := strings.Fields(strings.TrimPrefix(l, "RA serving on "))[0]
		return url, dir
	case <-time.After(60 * time.Second):
		t.Fatal("RA did not start within a minute")
	}
	return "", ""
}

// TestDevIDEnrollmentThroughRA: a host enrolls its DevID through the RA (HTTPS, a
// certificate from step-ca) and real step-ca: first queued for the operator, then, once
// approved, issued; the key is in the TPM, at the plan's handle.
func TestDevIDEnrollmentThroughRA(t *testing.T) {
	requireStepCA(t)
	auth := startSimHost(t, "auth")
	ca := stepcatest.Start(t, stepcatest.Config{})
	raURL, state := startRA(t, ca, auth.bundle())
	dir := filepath.Join(t.TempDir(), "devid")
	enroll := []string{"devid", "enroll", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath,
		"--host", "auth.funlab.casa", "--dir", dir, "--handle", "0x81010002"}

	out, err := exec.Command(build(t).omens, enroll...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "check pending_approval") || !strings.Contains(string(out), "omens ra approve HOST") {
		t.Fatalf("first enrollment of an unknown host: %v\n%s", err, out)
	}
	pending := omens(t, "ra", "pending", "--state", state)
	if !strings.Contains(pending, "auth.funlab.casa") || !strings.Contains(pending, auth.ekHash(t)) {
		t.Fatalf("pending queue does not list the host:\n%s", pending)
	}
	omens(t, "ra", "approve", "auth.funlab.casa", "--state", state)
	out2 := omens(t, enroll...)
	if !strings.Contains(out2, "enrolled auth.funlab.casa") || !strings.Contains(out2, "key persisted at 0x81010002") {
		t.Fatalf("enrollment after approval:\n%s", out2)
	}
	var st struct {
		Host, Subject, Issuer, Serial string
		InTPM                         bool      `json:"key_in_tpm"`
		TPMCheck                      string    `json:"tpm_check"`
		NotAfter                      time.Time `json:"not_after"`
	}
	if err := json.Unmarshal([]byte(omens(t, "devid", "status", "--tpm", auth.socket, "--dir", dir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Subject != "CN=auth.funlab.casa" || !st.InTPM || st.TPMCheck != "persisted at 0x81010002" {
		t.Errorf("devid status %+v", st)
	}
	if d := time.Until(st.NotAfter); d < 2150*time.Hour || d > 2161*time.Hour {
		t.Errorf("DevID valid for %s, want 90 days", d)
	}
	status := omens(t, "devid", "status", "--tpm", auth.socket, "--dir", dir)
	renew := omens(t, "devid", "renew", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath, "--dir", dir)
	if !strings.Contains(renew, "not due for renewal until") {
		t.Errorf("renewing a fresh DevID: %s", renew)
	}
	forced := omens(t, "devid", "renew", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath, "--dir", dir, "--force")
	if !strings.Contains(forced, "renewed auth.funlab.casa: serial ") {
		t.Errorf("forced renewal: %s", forced)
	}

	// Decommission: revoke in step-ca and ban the host's SPIRE agent (attested with tpm).
	requireEngines(t)
	srv := spiretest.StartServer(t, spiretest.ServerConfig{NodeAttestors: tpmServerAttestors(t, auth.bundle(), "")})
	spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth", NodeAttestor: tpmAgentAttestor(t, auth.socket)})
	agentID := "spiffe://funlab.casa/spire/agent/tpm/" + auth.ekHash(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte(ca.ProvisionerPassword), 0o600)
	revoke := omens(t, "devid", "revoke", "--host", "auth.funlab.casa", "--state", state,
		"--ca-url", ca.URL, "--ca-root", ca.RootPath, "--ca-config", ca.CAConfig, "--provisioner-password-file", pw,
		"--spire-socket", srv.SocketPath)
	if !strings.Contains(revoke, "banned SPIRE agent "+agentID) {
		t.Errorf("revoke: %s", revoke)
	}
	if !srv.Agent(t, agentID).Banned {
		t.Errorf("agent %s is not banned after revoke", agentID)
	}
	again, err := exec.Command(build(t).omens, enroll...).CombinedOutput()
	if err == nil || !strings.Contains(string(again), "check host_binding") {
		t.Errorf("enrollment of a decommissioned host: %v\n%s", err, again)
	}
	t.Logf("%s\n%s\n%s\n%s\n%s\n%s\n%s", out, pending, out2, status, renew, forced, revoke)
}

// TestDevIDInteropWithSPIREtpmDevID: the DevID that omens provisions is one SPIRE's own
// built-in tpm_devid node attestor accepts: its agent loads the key blobs under its SRK
// and proves possession and residency on the same TPM.
func TestDevIDInteropWithSPIREtpmDevID(t *testing.T) {
	requireStepCA(t)
	requireEngines(t)
	auth := startSimHost(t, "auth")
	ca := stepcatest.Start(t, stepcatest.Config{})
	raURL, state := startRA(t, ca, auth.bundle())
	omens(t, "ra", "approve", "auth.funlab.casa", "--state", state, "--ek", auth.ekHash(t))
	srv := spiretest.StartServer(t, spiretest.ServerConfig{NodeAttestors: []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm_devid", Data: []spireconf.Setting{
		{Key: "devid_ca_path", Value: ca.RootPath},
		{Key: "endorsement_ca_path", Value: auth.bundle()},
	}}}})
	for _, key := range []string{"rsa", "ecc"} {
		t.Run(key, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "devid")
			omens(t, "devid", "enroll", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath,
				"--host", "auth.funlab.casa", "--dir", dir, "--key", key)
			cert, err := os.ReadFile(filepath.Join(dir, "devid.crt"))
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(cert)
			sum := sha1.Sum(blk.Bytes)
			id := "spiffe://funlab.casa/spire/agent/tpm_devid/" + hex.EncodeToString(sum[:])
			a := spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth-tpm-devid-" + key, NodeAttestor: &spireconf.Plugin{Type: "NodeAttestor", Name: "tpm_devid", Data: []spireconf.Setting{
				{Key: "tpm_device_path", Value: auth.socket},
				{Key: "devid_cert_path", Value: filepath.Join(dir, "devid.crt")},
				{Key: "devid_priv_path", Value: filepath.Join(dir, "devid.priv")},
				{Key: "devid_pub_path", Value: filepath.Join(dir, "devid.pub")},
			}}})
			info := srv.Agent(t, id)
			if info.AttestationType != "tpm_devid" || !slices.Contains(info.Selectors, "tpm_devid:subject:cn:auth.funlab.casa") {
				t.Errorf("tpm_devid agent %s: type %s selectors %v", id, info.AttestationType, info.Selectors)
			}
			a.Stop(t)
		})
	}
}
