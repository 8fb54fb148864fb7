// Command omens-attestor-server is the SPIRE server plugin NodeAttestor "tpm" (an external
// plugin: plugin_cmd in server.conf). It verifies an agent's TPM and boot state.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"omens.dev/omens/spireplugin/server"
)

func main() {
	p := server.New()
	pluginmain.Serve(nodeattestorv1.NodeAttestorPluginServer(p), configv1.ConfigServiceServer(p))
}
