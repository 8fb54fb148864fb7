package spireconf_test

import (
	"fmt"
	"time"

	"omens.dev/omens/spireconf"
)

// An agent that attests with omens' NodeAttestor "tpm" in DevID mode, its plugin pinned
// by checksum (spireconf.Checksum computes it from the binary).
func ExampleAgent_Render() {
	conf, err := spireconf.Agent{
		TrustDomain: "funlab.casa", ServerAddress: "spire.funlab.casa", ServerPort: 8081,
		DataDir: "/var/lib/spire/agent", SocketPath: "/run/spire/agent/public/api.sock",
		TrustBundlePath: "/etc/spire/bundle.pem", SyncInterval: 5 * time.Second,
		Plugins: []spireconf.Plugin{
			{Type: "NodeAttestor", Name: "tpm", Cmd: "/usr/lib/omens/omens-attestor-agent",
				Checksum: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
				Data: []spireconf.Setting{
					{Key: "devid_cert_path", Value: "/var/lib/omens/devid/devid.crt"},
					{Key: "devid_priv_path", Value: "0x81010002"},
					{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
				}},
			spireconf.AgentDiskKeyManager("/var/lib/spire/agent"),
			spireconf.UnixWorkloadAttestor(),
		},
	}.Render()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(conf))
	// Output:
	// agent {
	//     data_dir = "/var/lib/spire/agent"
	//     server_address = "spire.funlab.casa"
	//     server_port = "8081"
	//     socket_path = "/run/spire/agent/public/api.sock"
	//     trust_bundle_path = "/etc/spire/bundle.pem"
	//     trust_domain = "funlab.casa"
	//     experimental {
	//         sync_interval = "5s"
	//     }
	// }
	// plugins {
	//     NodeAttestor "tpm" {
	//         plugin_cmd = "/usr/lib/omens/omens-attestor-agent"
	//         plugin_checksum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	//         plugin_data {
	//             devid_cert_path = "/var/lib/omens/devid/devid.crt"
	//             devid_priv_path = "0x81010002"
	//             pcr_selection = [0, 2, 4, 7]
	//         }
	//     }
	//     KeyManager "disk" {
	//         plugin_data {
	//             directory = "/var/lib/spire/agent"
	//         }
	//     }
	//     WorkloadAttestor "unix" {
	//         plugin_data {}
	//     }
	// }
}
