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
)

// writePolicy allows host's current boot state as group "tower", set "firmware-1.0".
func writePolicy(t *testing.T, dir string, host *simHost) string {
	t.Helper()
	pcrs := host.pcrs(t)
	p := filepath.Join(dir, "pcr-policy.hcl")
	src := fmt.Sprintf(`unknown_hosts = "reject"
group "tower" {
  set "firmware-1.0" {
    bank = "sha256"
    pcrs = { "0" = %q, "2" = %q, "4" = %q, "7" = %q }
  }
}
host %q {
  name  = %q
  group = "tower"
}
`, pcrs[0], pcrs[2], pcrs[4], pcrs[7], host.ekHash(t), host.name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// countLog counts lines of the server log holding substr.
func countLog(s *spiretest.Server, substr string) int { return strings.Count(s.Log(), substr) }

// waitCount waits until the server log holds substr more than n times.
func waitCount(t *testing.T, s *spiretest.Server, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if countLog(s, substr) > n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("server log: %q seen %d times, waited %s for more", substr, countLog(s, substr), timeout)
}

// TestTPMAttestationWithRealSPIRE is the plan's phase 1A on real SPIRE v1.13.3: an agent
// attests with NodeAttestor "tpm" (EK certificate, credential activation, PCR boot state),
// a workload gets an SVID through a node alias, join_token still works beside it, a BIOS
// update is rejected until an allow-next window accepts and pins it, a TPM from an unknown
// manufacturer is refused, and a server restart breaks nothing.
func TestTPMAttestationWithRealSPIRE(t *testing.T) {
	requireEngines(t)
	auth := startSimHost(t, "auth")
	policyPath := writePolicy(t, t.TempDir(), auth)
	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		NodeAttestors: tpmServerAttestors(t, auth.bundle(), policyPath),
		AgentTTL:      "20s",
	})
	ekHash := auth.ekHash(t)
	agentID := "spiffe://funlab.casa/spire/agent/tpm/" + ekHash

	// (a) The agent attests with tpm; its ID and selectors are as specified.
	agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth", NodeAttestor: tpmAgentAttestor(t, auth.socket)})
	info := srv.Agent(t, agentID)
	if info.AttestationType != "tpm" || !info.CanReattest {
		t.Errorf("agent %s: attestation type %q, can_reattest %v", agentID, info.AttestationType, info.CanReattest)
	}
	pcrs := auth.pcrs(t)
	for _, want := range []string{
		"tpm:pub_hash:" + ekHash,
		"tpm:ek_cert:issuer:cn:omens Simulated TPM Manufacturer EK Intermediate CA",
		"tpm:manufacturer:MSFT",
		"tpm:model:omens-sim",
		"tpm:pcr:sha256:0:" + pcrs[0],
		"tpm:pcr:sha256:7:" + pcrs[7],
		"tpm:pcr_policy:tower",
	} {
		if !slices.Contains(info.Selectors, want) {
			t.Errorf("selector %s missing; agent has %v", want, info.Selectors)
		}
	}
	if !strings.Contains(srv.Log(), `"tpm attestation accepted"`) && !strings.Contains(srv.Log(), "tpm attestation accepted") {
		t.Error("no audit line for the accepted attestation")
	}

	// (b) A node alias on tpm:pub_hash and a workload entry with a unix selector give the
	// workload (this test process) an X.509-SVID from the agent's Workload API.
	srv.CreateNodeAlias(t, "spiffe://funlab.casa/agent/auth", "tpm:pub_hash:"+ekHash)
	srv.CreateEntry(t, "spiffe://funlab.casa/agent/auth", "spiffe://funlab.casa/openbao", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	if _, err := spiretest.WaitX509SVID(t, agent.WorkloadSocket, "spiffe://funlab.casa/openbao", 90*time.Second); err != nil {
		t.Fatal(err)
	}

	// (c) join_token configured beside tpm still works.
	jt := spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "legacy", JoinToken: srv.JoinToken(t, "")})
	if id := jt.SPIFFEID(t); !strings.HasPrefix(id, "spiffe://funlab.casa/spire/agent/join_token/") {
		t.Errorf("join-token agent ID %s", id)
	}

	// (f) A server restart does not break attested agents: the agent re-attests with tpm
	// and the workload keeps getting SVIDs.
	accepted := countLog(srv, "tpm attestation accepted")
	srv.Stop(t)
	srv.Start(t)
	waitCount(t, srv, "tpm attestation accepted", accepted, 90*time.Second)
	if _, err := spiretest.WaitX509SVID(t, agent.WorkloadSocket, "spiffe://funlab.casa/openbao", 60*time.Second); err != nil {
		t.Fatalf("after server restart: %v", err)
	}

	// (d) A BIOS update: new PCR 0 value, reboot. The next re-attestation is rejected and
	// the server log names PCR 0.
	omens(t, "tpm", "reboot", "--socket", auth.socket, "--set", "0=firmware 2.0")
	newPCR0 := auth.pcrs(t)[0]
	srv.WaitLog(t, "PCR 0 is "+newPCR0, 90*time.Second)
	// With an allow-next window the same change is accepted and pinned.
	omens(t, "pcr", "allow-next", "--policy", policyPath, "--host", ekHash, "--for", "2h")
	srv.WaitLog(t, "pinned", 90*time.Second)
	info = srv.Agent(t, agentID)
	if !slices.Contains(info.Selectors, "tpm:pcr:sha256:0:"+newPCR0) {
		t.Errorf("after the window the agent's PCR 0 selector is not the new value; selectors %v", info.Selectors)
	}
	show := omens(t, "pcr", "policy", "show", "--policy", policyPath)
	if !strings.Contains(show, "pinned") {
		t.Errorf("policy show does not list the pinned set:\n%s", show)
	}

	// (e) A TPM whose EK certificate comes from an unknown CA is rejected.
	rogue := startSimHost(t, "rogue")
	ra := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{Name: "rogue", NodeAttestor: tpmAgentAttestor(t, rogue.socket)})
	if err := ra.WaitExit(t, 90*time.Second); err == nil {
		t.Error("agent with an EK from an unknown manufacturer exited cleanly")
	}
	srv.WaitLog(t, "check=ek_certificate ek_hash="+rogue.ekHash(t), 10*time.Second)
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(l, "tpm attestation") {
			t.Log(l)
		}
	}
}
