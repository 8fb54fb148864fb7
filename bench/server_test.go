package bench_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"omens.dev/omens/bench"
	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/tpm/tpmsim/mfgca"
)

// TestServerWithoutAttestationRateLimit starts a benchmark server as servers behind a load
// balancer need it (SPIRE's per-address attestation limit off): SPIRE accepts the
// configuration, and its usage names the server and the plugin process.
func TestServerWithoutAttestationRateLimit(t *testing.T) {
	enginetest.Require(t, engines.SPIREServer)
	plugin := buildPlugin(t)
	ca, err := mfgca.NewEphemeral("omens bench test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := bench.StartServer(context.Background(), bench.ServerConfig{PluginPath: plugin, EKCA: ca.BundlePEM(), NoAttestationRateLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	conf, err := os.ReadFile(s.Dir + "/server.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "ratelimit {") || !strings.Contains(string(conf), "attestation = false") {
		t.Errorf("server.conf has no ratelimit block turning attestation off:\n%s", conf)
	}
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Server.PeakRSS == 0 || u.Plugin.PeakRSS == 0 {
		t.Errorf("usage %+v: want the peak RSS of the server and of the plugin", u)
	}
}
