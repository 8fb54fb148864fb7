// Command omens-attestor-agent is the SPIRE agent plugin NodeAttestor "tpm" (an external
// plugin: plugin_cmd in agent.conf). It proves the host's TPM and boot state to the server.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"omens.dev/omens/spireplugin/agent"
)

func main() {
	p := agent.New()
	pluginmain.Serve(nodeattestorv1.NodeAttestorPluginServer(p), configv1.ConfigServiceServer(p))
}
