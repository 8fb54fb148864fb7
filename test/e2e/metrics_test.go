package e2e_test

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/promtest"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/metrics"
)

// TestMetricsOnSPIREPrometheus: the plugins' metrics appear on real SPIRE's Prometheus
// endpoints (telemetry rendered by spireconf), under SPIRE's prefixes, and count the
// attestations made: one accepted, then one refused with its check. The plugins send
// counters and gauges at most a second after they change (the expiry gauge two), so each
// step waits for its count before it reads the endpoint.
func TestMetricsOnSPIREPrometheus(t *testing.T) {
	requireEngines(t)
	auth := startSimHost(t, "auth")
	policyPath := writePolicy(t, t.TempDir(), auth)
	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		NodeAttestors: tpmServerAttestors(t, auth.bundle(), policyPath),
		Metrics:       true,
	})
	attestations := metrics.SPIREServerPrefix + metrics.Attestation
	accepted := map[string]string{"result": "accepted", "check": "none", "mode": "ek_cert"}
	refused := map[string]string{"result": "rejected", "check": "ek_certificate", "mode": "ek_cert"}
	// Before any attestation, the counters are there at zero, one per check: a first
	// rejection is then an increase an alert sees.
	before := srv.Metrics(t)
	for _, labels := range []map[string]string{accepted, refused, {"result": "rejected", "check": "pcr_policy"}} {
		if v, ok := promtest.Sample(t, before, attestations, labels); !ok || v != 0 {
			t.Errorf("before any attestation, %s%v = %v (present %v), want 0", attestations, labels, v, ok)
		}
	}

	agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth", NodeAttestor: tpmAgentAttestor(t, auth.socket), Metrics: true})
	text := waitMetric(t, srv.Metrics, metrics.SPIREServerPrefix+metrics.EKCertExpiry, nil,
		waitMetric(t, srv.Metrics, attestations, accepted, ""))
	if v, _ := promtest.Sample(t, text, attestations, accepted); v != 1 {
		t.Errorf("after one accepted attestation, %s%v = %v, want 1", attestations, accepted, v)
	}
	if v, _ := promtest.Sample(t, text, attestations, map[string]string{"result": "rejected"}); v != 0 {
		t.Errorf("a rejection is counted before any:\n%s", grepLines(text, attestations))
	}
	if v, _ := promtest.Sample(t, text, metrics.SPIREServerPrefix+metrics.VerificationTime, nil); v != 1 {
		t.Errorf("%s has %v samples, want 1", metrics.VerificationTime, v)
	}
	left, ok := promtest.Sample(t, text, metrics.SPIREServerPrefix+metrics.EKCertExpiry, nil)
	if !ok || left <= 0 {
		t.Errorf("%s = %v (present %v), want the seconds left to the EK certificate", metrics.EKCertExpiry, left, ok)
	}
	if v, ok := promtest.Sample(t, text, metrics.SPIREServerPrefix+metrics.WindowsOpen, nil); !ok || v != 0 {
		t.Errorf("%s = %v (present %v), want 0", metrics.WindowsOpen, v, ok)
	}
	answered := map[string]string{"result": "answered"}
	if v, _ := promtest.Sample(t, waitMetric(t, agent.Metrics, metrics.SPIREAgentPrefix+metrics.AgentAttestation, answered, ""),
		metrics.SPIREAgentPrefix+metrics.AgentAttestation, answered); v != 1 {
		t.Errorf("agent: %s{result=answered} = %v, want 1", metrics.AgentAttestation, v)
	}

	// A TPM from an unknown manufacturer: refused once (the agent does not retry), counted
	// under its check; the accepted count stays.
	rogue := startSimHost(t, "rogue")
	ra := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{Name: "rogue", NodeAttestor: tpmAgentAttestor(t, rogue.socket), FailFast: true})
	if err := ra.WaitExit(t, 90*time.Second); err == nil {
		t.Error("agent with an EK from an unknown manufacturer exited cleanly")
	}
	text = waitMetric(t, srv.Metrics, attestations, refused, "")
	if v, _ := promtest.Sample(t, text, attestations, refused); v != 1 {
		t.Errorf("after one refusal, %s%v = %v, want 1:\n%s", attestations, refused, v, grepLines(text, attestations))
	}
	if v, _ := promtest.Sample(t, text, attestations, accepted); v != 1 {
		t.Errorf("after the refusal, %s%v = %v, want still 1", attestations, accepted, v)
	}
	var shown []string
	for _, l := range strings.Split(grepLines(text, metrics.SPIREServerPrefix+"tpm_"), "\n") {
		if !strings.HasSuffix(l, "} 0") {
			shown = append(shown, l)
		}
	}
	t.Logf("SPIRE server's endpoint (samples at zero left out):\n%s", strings.Join(shown, "\n"))
}

// waitMetric scrapes an endpoint until it shows name with labels at a value other than
// zero (the text given, when it does already), and returns the text it read.
func waitMetric(t *testing.T, scrape func(testing.TB) string, name string, labels map[string]string, text string) string {
	t.Helper()
	promtest.Wait(t, 30*time.Second, name+" on the endpoint", func() bool {
		if text == "" {
			text = scrape(t)
		}
		if v, ok := promtest.Sample(t, text, name, labels); ok && v != 0 {
			return true
		}
		text = ""
		return false
	})
	return text
}

// grepLines returns the lines of text that hold substr.
func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAgentTPMErrorsCounted: an agent whose TPM is gone counts the TPM error on its own
// SPIRE endpoint, while it retries its first attestation.
func TestAgentTPMErrorsCounted(t *testing.T) {
	requireEngines(t)
	auth := startSimHost(t, "auth")
	srv := spiretest.StartServer(t, spiretest.ServerConfig{NodeAttestors: tpmServerAttestors(t, auth.bundle(), "")})
	gone := filepath.Join(t.TempDir(), "gone.sock")
	agent := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{Name: "no-tpm", NodeAttestor: tpmAgentAttestor(t, gone), Metrics: true})
	tpmErrors := metrics.SPIREAgentPrefix + metrics.TPMErrors
	var text string
	promtest.Wait(t, 60*time.Second, tpmErrors+` on the agent's endpoint`, func() bool {
		resp, err := http.Get(agent.MetricsURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		text = string(b)
		v, _ := promtest.Sample(t, text, tpmErrors, map[string]string{"stage": "begin"})
		return v >= 1
	})
	if v, _ := promtest.Sample(t, text, metrics.SPIREAgentPrefix+metrics.AgentAttestation, map[string]string{"result": "error"}); v < 1 {
		t.Errorf("%s{result=error} = %v, want at least 1", metrics.AgentAttestation, v)
	}
	t.Logf("agent's endpoint:\n%s", grepLines(text, metrics.SPIREAgentPrefix+"tpm_"))
}
