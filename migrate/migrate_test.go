package migrate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/migrate"
	"omens.dev/omens/registry"
)

// TestMoveRefusals: each refusal names what is missing and what to do, before anything
// is written.
func TestMoveRefusals(t *testing.T) {
	plugins := t.TempDir()
	for _, name := range []string{hostconf.ServerPlugin, hostconf.AgentPlugin} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("stand-in"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	load := func(phase registry.Phase, ekHash string) *registry.Inventory {
		t.Helper()
		src := `trust_domain = "funlab.casa"
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
  ` + ekHash + `
  devid_subject = "auth.funlab.casa"
  phase         = "` + string(phase) + `"
}
`
		inv, err := registry.ParseInventory("tower.hcl", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	const hash = `ek_hash = "0000000000000000000000000000000000000000000000000000000000000002"`
	for _, tc := range []struct {
		name string
		inv  *registry.Inventory
		want string
	}{
		{"EK mode without an EK hash", load(registry.PhaseEK, ""),
			`migrate: tower.hcl: host "auth": ek_hash: missing: in EK mode its agent is known by its EK hash alone; set ek_hash (omens ek show --tpm /dev/tpmrm0 prints it) and run again`},
		{"EK mode without the SPIRE server", load(registry.PhaseEK, hash),
			`migrate: the host's node alias is updated through the SPIRE server API: give the server's socket`},
		{"a join token without the SPIRE server", load(registry.PhaseJoinToken, hash),
			`migrate: a join token is generated through the SPIRE server API: give the server's socket`},
		{"DevID mode without a DevID", load(registry.PhaseDevID, hash),
			`migrate: host "auth" has no DevID certificate (stat ROOT/var/lib/omens/devid/devid.crt: no such file or directory): enroll it again (omens devid enroll), then run again`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			_, err := migrate.Move(context.Background(), tc.inv, migrate.Options{Host: "auth", From: registry.PhaseDevID, Root: root, Render: hostconf.Options{PluginDir: plugins}})
			want := strings.ReplaceAll(tc.want, "ROOT", root)
			if err == nil || err.Error() != want {
				t.Fatalf("Move: %v\nwant %s", err, want)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("a refused move wrote %d entries under the root", len(entries))
			}
		})
	}
}
