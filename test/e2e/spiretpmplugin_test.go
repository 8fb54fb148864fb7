package e2e_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/spireconf"
)

// TestSpireTPMPluginSwitchWithRealSPIRE: a SPIRE v1.13.3 server configured as
// spire-tpm-plugin's README has it (ca_path and hash_path, directories), with only
// plugin_cmd pointing at omens, attests the seed-0 simulated TPM under the agent ID and
// tpm:pub_hash selector that plugin gives it (its own golden hash), from an agent whose
// plugin_data is that plugin's (empty) plus the simulator's socket.
func TestSpireTPMPluginSwitchWithRealSPIRE(t *testing.T) {
	requireEngines(t)
	host := startSimHostSeed(t, "legacy", testtpm.Seed0)
	hash := testtpm.SpireTPMPluginSeed0PubHash
	data := t.TempDir()
	certs, hashes := filepath.Join(data, "certs"), filepath.Join(data, "hashes")
	for _, d := range []string{certs, hashes} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(host.bundle())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "manufacturer.pem"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hashes, hash), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		NodeAttestors: []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm", Cmd: build(t).server, Data: []spireconf.Setting{
			{Key: "ca_path", Value: certs},
			{Key: "hash_path", Value: hashes},
		}}},
	})
	spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "legacy", NodeAttestor: &spireconf.Plugin{
		Type: "NodeAttestor", Name: "tpm", Cmd: build(t).agent, Data: []spireconf.Setting{{Key: "tpm_path", Value: host.socket}},
	}})
	info := srv.Agent(t, "spiffe://funlab.casa/spire/agent/tpm/"+hash)
	if !slices.Contains(info.Selectors, "tpm:pub_hash:"+hash) {
		t.Errorf("selector tpm:pub_hash:%s missing from %v", hash, info.Selectors)
	}
}
