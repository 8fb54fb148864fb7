package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/spireconf"
)

// TestDevIDAttestationLifecycle is the plan's phase 2 on real SPIRE and step-ca: host auth
// enrolls its DevID through the RA, its agent attests with NodeAttestor "tpm" in DevID
// mode (the key at the plan's handle 0x81010002), a renewed certificate is picked up at
// the next re-attestation under the same agent ID while the workload keeps its SVID, and
// after `omens devid revoke` the agent is banned and refused, and the workload gets no new
// SVIDs.
func TestDevIDAttestationLifecycle(t *testing.T) {
	requireStepCA(t)
	requireEngines(t)
	auth := startSimHost(t, "auth")
	ca := stepcatest.Start(t, stepcatest.Config{})
	raURL, state := startRA(t, ca, auth.bundle())
	ekHash := auth.ekHash(t)
	omens(t, "ra", "approve", "auth.funlab.casa", "--state", state, "--ek", ekHash)
	dir := filepath.Join(t.TempDir(), "devid")
	omens(t, "devid", "enroll", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath,
		"--host", "auth.funlab.casa", "--dir", dir, "--handle", "0x81010002")

	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		AgentTTL:           "20s",
		DefaultX509SVIDTTL: "20s",
		NodeAttestors: []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm", Cmd: build(t).server, Data: []spireconf.Setting{
			{Key: "devid_mode", Value: "devid"},
			{Key: "devid_ca_path", Value: ca.RootPath},
			{Key: "endorsement_ca_path", Value: auth.bundle()},
			{Key: "devid_crl_url", Value: ca.URL + "/1.0/crl"},
			{Key: "devid_crl_refresh_interval", Value: "2s"},
			{Key: "pcr_bank", Value: "sha256"},
			{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
		}}},
	})
	agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth", NodeAttestor: tpmAgentAttestor(t, auth.socket,
		spireconf.Setting{Key: "devid_cert_path", Value: filepath.Join(dir, "devid.crt")},
		spireconf.Setting{Key: "devid_priv_path", Value: "0x81010002"})})
	agentID := "spiffe://funlab.casa/spire/agent/tpm/" + ekHash
	serialSelector := func() string {
		for _, s := range srv.Agent(t, agentID).Selectors {
			if strings.HasPrefix(s, "tpm:devid:serial:") {
				return s
			}
		}
		return ""
	}
	info := srv.Agent(t, agentID)
	if !slices.Contains(info.Selectors, "tpm:devid:subject:cn:auth.funlab.casa") || !slices.Contains(info.Selectors, "tpm:pub_hash:"+ekHash) {
		t.Fatalf("DevID-mode agent selectors %v", info.Selectors)
	}
	first := serialSelector()

	srv.CreateNodeAlias(t, "spiffe://funlab.casa/agent/auth", "tpm:devid:subject:cn:auth.funlab.casa")
	srv.CreateEntry(t, "spiffe://funlab.casa/agent/auth", "spiffe://funlab.casa/openbao", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	if _, err := spiretest.WaitX509SVID(t, agent.WorkloadSocket, "spiffe://funlab.casa/openbao", 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// Renewal: a new certificate (and key, at the same handle) is used at the next
	// re-attestation, without restarting the agent; the agent ID stays; the workload is
	// never without a valid SVID.
	omens(t, "devid", "renew", "--tpm", auth.socket, "--ra", raURL, "--ra-root", ca.RootPath, "--dir", dir, "--force")
	deadline := time.Now().Add(90 * time.Second)
	for serialSelector() == first {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed DevID was not used within 90s (still %s)", first)
		}
		svid, err := spiretest.FetchX509SVID(t, agent.WorkloadSocket, 5*time.Second)
		if err != nil || time.Now().After(svid.Certificates[0].NotAfter) {
			t.Fatalf("workload without a valid SVID during DevID renewal: %v", err)
		}
		time.Sleep(time.Second)
	}
	if srv.Agent(t, agentID).ID != agentID {
		t.Fatal("agent ID changed with the DevID certificate")
	}

	// Revocation: the agent is banned, its next attestation refused, and the workload
	// stops getting SVIDs.
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(ca.ProvisionerPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	omens(t, "devid", "revoke", "--host", "auth.funlab.casa", "--state", state, "--ca-url", ca.URL, "--ca-root", ca.RootPath,
		"--ca-config", ca.CAConfig, "--provisioner-password-file", pw, "--spire-socket", srv.SocketPath)
	if !srv.Agent(t, agentID).Banned {
		t.Error("agent not banned after revoke")
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		svid, err := spiretest.FetchX509SVID(t, agent.WorkloadSocket, 3*time.Second)
		if err != nil || time.Now().After(svid.Certificates[0].NotAfter) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the workload of a revoked host still gets valid SVIDs after 90s")
		}
		time.Sleep(2 * time.Second)
	}
	// A fresh agent on the revoked host is refused: banned, and its DevID is in the CRL.
	os.RemoveAll(filepath.Join(agent.Dir, "data"))
	a2 := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{Name: "auth-again", NodeAttestor: &spireconf.Plugin{
		Type: "NodeAttestor", Name: "tpm", Cmd: build(t).agent, Data: []spireconf.Setting{
			{Key: "tpm_path", Value: auth.socket},
			{Key: "devid_cert_path", Value: filepath.Join(dir, "devid.crt")},
			{Key: "devid_priv_path", Value: "0x81010002"},
		}}, FailFast: true})
	if err := a2.WaitExit(t, 60*time.Second); err == nil {
		t.Error("an agent with a revoked DevID attested")
	}
	srv.WaitLog(t, "devid_revoked", 10*time.Second)
}
