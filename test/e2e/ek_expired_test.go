package e2e_test

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm"
)

// TestExpiredEKCertificate attests, through real SPIRE, a simulated host whose EK
// certificate expired (omens tpm simulate --ek-expired, from a manufacturer CA trusted by
// the server): under expired_ek_cert = "reject" it is refused with check ek_cert_expired
// and the certificate's notAfter; under "warn" it is accepted with the selector
// tpm:ek_cert:expired and a warning in the server's log.
func TestExpiredEKCertificate(t *testing.T) {
	requireEngines(t)
	host := startSimHost(t, "old", "--ek-expired")
	// The certificate as the agent reads it: from the TPM's NV index.
	tt, err := tpm.Open(host.socket)
	if err != nil {
		t.Fatal(err)
	}
	eks, err := tpm.EndorsementKeys(tt)
	tt.Close()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(eks[0].Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Before(time.Now()) {
		t.Fatalf("the simulator's EK certificate is valid until %s: not expired", cert.NotAfter)
	}
	notAfter := cert.NotAfter.UTC().Format(time.RFC3339)
	ekHash := host.ekHash(t)

	t.Run("reject", func(t *testing.T) {
		srv := spiretest.StartServer(t, spiretest.ServerConfig{
			NodeAttestors: tpmServerAttestors(t, host.bundle(), "", spireconf.Setting{Key: "expired_ek_cert", Value: "reject"}),
		})
		agent := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{Name: "old-reject", NodeAttestor: tpmAgentAttestor(t, host.socket)})
		if err := agent.WaitExit(t, 90*time.Second); err == nil {
			t.Error("the agent with an expired EK certificate attested and exited cleanly")
		}
		srv.WaitLog(t, "check=ek_cert_expired ek_hash="+ekHash, 10*time.Second)
		line := logLine(srv.Log(), "check=ek_cert_expired")
		t.Log(line)
		for _, want := range []string{"notAfter " + notAfter + " is before the verification time", `expired_ek_cert = \"warn\" accepts it`} {
			if !strings.Contains(line, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, line)
			}
		}
		if ids := srv.Agents(t); len(ids) != 0 {
			t.Errorf("agents attested with an expired EK certificate: %v", ids)
		}
	})

	t.Run("warn", func(t *testing.T) {
		srv := spiretest.StartServer(t, spiretest.ServerConfig{
			NodeAttestors: tpmServerAttestors(t, host.bundle(), "", spireconf.Setting{Key: "expired_ek_cert", Value: "warn"}),
		})
		spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "old-warn", NodeAttestor: tpmAgentAttestor(t, host.socket)})
		info := srv.Agent(t, "spiffe://funlab.casa/spire/agent/tpm/"+ekHash)
		for _, want := range []string{"tpm:ek_cert:expired", "tpm:pub_hash:" + ekHash} {
			if !slices.Contains(info.Selectors, want) {
				t.Errorf("selector %s missing; the agent has %v", want, info.Selectors)
			}
		}
		line := logLine(srv.Log(), "tpm attestation accepted with warnings")
		t.Log(line)
		for _, want := range []string{"level=warn", "EK certificate expired on " + notAfter, `accepted by expired_ek_cert = \"warn\"`, "ek_hash=" + ekHash} {
			if !strings.Contains(line, want) {
				t.Errorf("the server's warning does not say %q:\n%s", want, line)
			}
		}
	})
}

// logLine returns the first line of log holding substr, or "".
func logLine(log, substr string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
