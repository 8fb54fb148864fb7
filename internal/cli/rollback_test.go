package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/registry"
)

const rollbackInventory = `# The Tower, for the rollback test.
trust_domain = "funlab.casa"

spire_server {
  host    = "spire"
  address = "127.0.0.1"
}

step_ca {
  host = "spire"
  url  = "https://ca.funlab.casa"
}

host "spire" {
  ek_hash       = "0000000000000000000000000000000000000000000000000000000000000001"
  devid_subject = "spire.funlab.casa"
  phase         = "devid"
}

# auth: the host rolled back
host "auth" {
  ek_hash       = "0000000000000000000000000000000000000000000000000000000000000002"
  devid_subject = "auth.funlab.casa"
  phase         = "devid"
}

workload "vault" {
  host      = "auth"
  spiffe_id = "spiffe://funlab.casa/vault"
  selectors = ["unix:uid:0"]
}
`

// TestMigrateRollback: auth goes from DevID mode back to EK mode, then to a join token,
// then forward to DevID mode again, against a real SPIRE server; every second run changes
// nothing, and each run prints how to undo it.
func TestMigrateRollback(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.ServerConfig{})
	plugins := t.TempDir()
	for _, name := range []string{"omens-attestor-server", "omens-attestor-agent"} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("stand-in"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	inv := filepath.Join(dir, "tower.hcl")
	if err := os.WriteFile(inv, []byte(rollbackInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	run := func(want int, args ...string) string {
		t.Helper()
		code, stdout, stderr := omens(t, args...)
		if code != want {
			t.Fatalf("omens %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, stdout, stderr)
		}
		return squeeze(stdout + stderr)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	run(0, "apply", "--file", inv, "--spire-socket", srv.SocketPath)
	common := []string{"--inventory", inv, "--host", "auth", "--out", root, "--server-out", root, "--plugin-dir", plugins, "--server-socket", srv.SocketPath}
	rollback := func(to string) []string { return append([]string{"migrate", "rollback", "--to", to}, common...) }

	// DevID -> EK.
	out := run(0, rollback("ek")...)
	for _, want := range []string{
		"host auth: phase devid -> ek\n",
		"changed - inventory " + inv,
		"updated - node-alias spiffe://funlab.casa/agent/auth",
		"selectors tpm:pub_hash:0000000000000000000000000000000000000000000000000000000000000002",
		"wrote auth spire-agent.conf " + root + "/etc/spire/agent.conf",
		"wrote spire ek-mode-hosts " + root + "/etc/omens/ek-mode-hosts",
		"then, on auth: systemctl restart spire-agent\n",
		"then, on spire: systemctl restart spire-server\n",
		"to undo: omens migrate forward --inventory " + inv + " --host auth --to devid --out " + root + " --server-out " + root + " --plugin-dir " + plugins + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback --to ek output lacks %q:\n%s", want, out)
		}
	}
	parsed, err := registry.LoadInventory(inv)
	if err != nil || parsed.Host("auth").Phase != registry.PhaseEK {
		t.Fatalf("inventory after rollback: %v", err)
	}
	if src, _ := os.ReadFile(inv); !strings.Contains(string(src), "# auth: the host rolled back\n") {
		t.Errorf("the inventory lost its comments:\n%s", src)
	}
	if agent := read("etc/spire/agent.conf"); strings.Contains(agent, "devid_cert_path") || !strings.Contains(agent, `NodeAttestor "tpm"`) {
		t.Errorf("auth's agent in EK mode:\n%s", agent)
	}
	if server := read("etc/spire/server.conf"); !strings.Contains(server, `devid_mode = "devid"`) || !strings.Contains(server, `ek_mode_hosts_path = "/etc/omens/ek-mode-hosts"`) {
		t.Errorf("server configuration:\n%s", server)
	}
	if ek := read("etc/omens/ek-mode-hosts"); !strings.HasSuffix(ek, "# auth\n0000000000000000000000000000000000000000000000000000000000000002\n") {
		t.Errorf("ek-mode-hosts:\n%s", ek)
	}
	entries := srv.Run(t, "entry", "show", "-spiffeID", "spiffe://funlab.casa/agent/auth")
	if !strings.Contains(entries, "tpm:pub_hash:0000000000000000000000000000000000000000000000000000000000000002") || strings.Contains(entries, "devid:subject") {
		t.Errorf("auth's alias after rollback to EK mode:\n%s", entries)
	}
	if out := run(0, rollback("ek")...); out != "nothing changed: host auth is in phase ek, its files and entries as they should be\n" {
		t.Errorf("second rollback --to ek:\n%s", out)
	}

	// EK -> join token.
	out = run(0, rollback("join_token")...)
	for _, want := range []string{
		"host auth: phase ek -> join_token\n",
		"generated auth join-token " + root + "/etc/spire/join-token",
		"alias spiffe://funlab.casa/agent/auth, valid 1h0m0s",
		"then, on auth: systemctl stop spire-agent; rm -r /var/lib/spire/agent (the SVID of its old agent ID: it attests afresh); systemctl start spire-agent\n",
		"then, on spire: systemctl restart spire-server\n",
		"to undo: omens migrate forward --inventory " + inv + " --host auth --to ek",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback --to join_token output lacks %q:\n%s", want, out)
		}
	}
	st, err := os.Stat(filepath.Join(root, "etc/spire/join-token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("join token file: %v %v", st, err)
	}
	token := strings.TrimSpace(read("etc/spire/join-token"))
	if agent := read("etc/spire/agent.conf"); !strings.Contains(agent, `join_token_file = "/etc/spire/join-token"`) {
		t.Errorf("auth's agent on a join token:\n%s", agent)
	}
	if server := read("etc/spire/server.conf"); !strings.Contains(server, `NodeAttestor "join_token"`) {
		t.Errorf("server configuration without join_token:\n%s", server)
	}
	if entries := srv.Run(t, "entry", "show", "-parentID", "spiffe://funlab.casa/spire/agent/join_token/"+token); !strings.Contains(entries, "spiffe://funlab.casa/agent/auth") {
		t.Errorf("the token's agent is not aliased to auth:\n%s", entries)
	}
	if out := run(0, rollback("join_token")...); out != "nothing changed: host auth is in phase join_token, its files and entries as they should be\n" {
		t.Errorf("second rollback --to join_token:\n%s", out)
	}
	if got := strings.TrimSpace(read("etc/spire/join-token")); got != token {
		t.Errorf("a second run replaced the token %s with %s", token, got)
	}

	// Forward to DevID mode: refused until the DevID is enrolled again.
	forward := append([]string{"migrate", "forward", "--to", "devid"}, common...)
	code, stdout, stderr := omens(t, forward...)
	if code != 1 || !strings.Contains(stderr, `migrate: host "auth" has no DevID certificate (stat `+root+`/var/lib/omens/devid/devid.crt: no such file or directory): enroll it again (omens devid enroll), then run again`) {
		t.Errorf("forward without a DevID: exit %d\n%s%s", code, stdout, stderr)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/omens/devid"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/omens/devid/devid.crt"), []byte("enrolled"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = run(0, forward...)
	for _, want := range []string{"host auth: phase join_token -> devid\n", "to undo: omens migrate rollback --inventory " + inv + " --host auth --to join_token"} {
		if !strings.Contains(out, want) {
			t.Errorf("forward output lacks %q:\n%s", want, out)
		}
	}
	if server := read("etc/spire/server.conf"); strings.Contains(server, `NodeAttestor "join_token"`) || strings.Contains(server, "ek_mode_hosts_path") {
		t.Errorf("server configuration with every host in DevID mode:\n%s", server)
	}

	// Without --server-out, the server host's files are left to render there.
	out = run(0, "migrate", "rollback", "--to", "ek", "--inventory", inv, "--host", "auth", "--out", root, "--plugin-dir", plugins, "--spire-socket", srv.SocketPath)
	for _, want := range []string{
		"pending spire spire-server.conf /etc/spire/server.conf on spire: omens config render --inventory " + inv + " --host spire --out /\n",
		"pending spire ek-mode-hosts /etc/omens/ek-mode-hosts on spire: omens config render --inventory " + inv + " --host spire --out /\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback without --server-out lacks %q:\n%s", want, out)
		}
	}

	// Refusals.
	code, _, stderr = omens(t, append([]string{"migrate", "rollback", "--to", "devid"}, common...)...)
	if code == 0 || !strings.Contains(stderr, `--to "devid": want join_token or ek`) {
		t.Errorf("rollback --to devid: exit %d %s", code, stderr)
	}
}

// squeeze makes every run of spaces one space, so that the tests do not depend on the
// widths of table columns.
func squeeze(s string) string {
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}
