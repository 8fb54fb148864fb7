package hostconf_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/registry"
)

// Putting host auth back on a join token: its phase is all that changes in the
// inventory (registry.SetPhase keeps the rest of the file); rendering again for auth and
// for the server host gives the files to install.
func ExampleRender() {
	src := []byte(`trust_domain = "funlab.casa"

spire_server {
  host    = "spire"
  address = "spire.funlab.casa"
}

step_ca {
  host = "spire"
  url  = "https://ca.funlab.casa"
}

host "spire" {
  devid_subject = "spire.funlab.casa"
  phase         = "devid"
}

host "auth" {
  devid_subject = "auth.funlab.casa"
  phase         = "devid"
}
`)
	src, _, err := registry.SetPhase("tower.hcl", src, "auth", registry.PhaseJoinToken)
	if err != nil {
		fmt.Println(err)
		return
	}
	inv, err := registry.ParseInventory("tower.hcl", src)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The plugins whose checksums are pinned: here stand-ins.
	dir, _ := os.MkdirTemp("", "plugins")
	defer os.RemoveAll(dir)
	for _, name := range []string{hostconf.ServerPlugin, hostconf.AgentPlugin} {
		os.WriteFile(filepath.Join(dir, name), []byte("stand-in"), 0o755)
	}
	for _, host := range []string{"auth", "spire"} {
		files, err := hostconf.Render(inv, host, hostconf.Options{PluginDir: dir})
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, f := range files {
			fmt.Println(host, f.Role, f.Path)
			if f.Role != hostconf.RoleAgentConf && f.Role != hostconf.RoleServerConf {
				continue
			}
			for _, l := range strings.Split(string(f.Data), "\n") {
				if strings.HasPrefix(l, "#") {
					continue
				}
				if strings.Contains(l, "NodeAttestor") || strings.Contains(l, "join_token_file") || strings.Contains(l, "devid_mode") {
					fmt.Println("   ", strings.TrimSpace(l))
				}
			}
		}
	}
	// Output:
	// auth spire-agent.conf /etc/spire/agent.conf
	//     join_token_file = "/etc/spire/join-token"
	//     NodeAttestor "join_token" {
	// auth spire-agent.service /lib/systemd/system/spire-agent.service
	// spire spire-server.conf /etc/spire/server.conf
	//     NodeAttestor "tpm" {
	//     devid_mode = "devid"
	//     NodeAttestor "join_token" {
	// spire spire-server.service /lib/systemd/system/spire-server.service
	// spire spire-agent.conf /etc/spire/agent.conf
	//     NodeAttestor "tpm" {
	// spire spire-agent.service /lib/systemd/system/spire-agent.service
}
