// Command omens-attestor-server is the SPIRE server plugin NodeAttestor "tpm" (an external
// plugin: plugin_cmd in server.conf). It verifies an agent's TPM and boot state.
package main

import (
	"os"
	"runtime/debug"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"omens.dev/omens/spireplugin/server"
)

// The plugin's live heap is small (a few MB: the bundle, the lists, the TPMs it
// remembers) and an attestation leaves about 30 KB of garbage, so Go's default of a
// collection at twice the live heap spends several percent of the plugin's CPU collecting
// (README, "Scale"). It collects at five times the live heap instead, with a soft limit that
// brings collections back before the heap reaches it. GOGC and GOMEMLIMIT in SPIRE's
// environment, which the plugin inherits, take precedence.
const (
	gcPercent   = 400
	memoryLimit = 256 << 20
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	p := server.New()
	pluginmain.Serve(nodeattestorv1.NodeAttestorPluginServer(p), configv1.ConfigServiceServer(p))
}
