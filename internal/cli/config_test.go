package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/internal/cli"
)

// omens config render writes a host's files under --out, then --diff shows nothing to do;
// after an edit of the inventory (a phase), --diff shows what changes and exits 1.
func TestConfigRender(t *testing.T) {
	plugins := t.TempDir()
	for _, name := range []string{"omens-attestor-server", "omens-attestor-agent"} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("stand-in"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "tower.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	inv := filepath.Join(dir, "tower.hcl")
	if err := os.WriteFile(inv, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "root")
	args := []string{"config", "render", "--inventory", inv, "--host", "auth", "--out", out, "--plugin-dir", plugins}
	code, stdout, stderr := omens(t, args...)
	if code != 0 {
		t.Fatalf("render: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"STATE  FILE", "wrote  " + out + "/etc/spire/agent.conf ", "spire-agent.conf\n",
		"wrote  " + out + "/lib/systemd/system/omens-devid-renew.timer ", "5 of 5 files written for host auth\nthen: systemctl daemon-reload; systemctl enable --now spire-agent omens-devid-renew.timer\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("render output lacks %q:\n%s", want, stdout)
		}
	}
	agent, err := os.ReadFile(filepath.Join(out, "etc", "spire", "agent.conf"))
	if err != nil || !strings.Contains(string(agent), `devid_priv_path = "0x81010002"`) {
		t.Errorf("agent.conf: %v\n%s", err, agent)
	}

	code, stdout, _ = omens(t, append(args, "--diff")...)
	if code != 0 || strings.Count(stdout, "unchanged ") != 5 {
		t.Errorf("--diff after render: exit %d\n%s", code, stdout)
	}

	// auth goes back to EK mode: only its agent's configuration changes.
	edited := strings.Replace(string(src), "devid_subject = \"auth.funlab.casa\"\n  pcr_policy    = \"tower\"\n  phase         = \"devid\"",
		"devid_subject = \"auth.funlab.casa\"\n  pcr_policy    = \"tower\"\n  phase         = \"ek\"", 1)
	if edited == string(src) {
		t.Fatal("the example's host auth is not as this test expects")
	}
	if err := os.WriteFile(inv, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = omens(t, append(args, "--diff")...)
	if code != 1 || stderr != "omens: 1 of 5 files differ from those under "+out+"\n" {
		t.Errorf("--diff after the edit: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"--- " + out + "/etc/spire/agent.conf\n+++ " + out + "/etc/spire/agent.conf (rendered)\n",
		"-# The SPIRE agent of host auth, in phase devid.\n+# The SPIRE agent of host auth, in phase ek.\n",
		"-            devid_cert_path = \"/var/lib/omens/devid/devid.crt\"\n-            devid_priv_path = \"0x81010002\"\n",
		"unchanged " + out + "/lib/systemd/system/spire-agent.service (spire-agent.service)\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--diff output lacks %q:\n%s", want, stdout)
		}
	}
	var list []cli.ConfigFile
	omensJSON(t, 1, &list, append(args, "--diff", "--json")...)
	if len(list) != 5 || list[0].Role != "spire-agent.conf" || list[0].State != "changed" || list[0].Diff == "" || list[1].State != "unchanged" {
		t.Errorf("--diff --json: %+v", list)
	}
	// Nothing was written by --diff.
	if b, _ := os.ReadFile(filepath.Join(out, "etc", "spire", "agent.conf")); string(b) != string(agent) {
		t.Error("--diff wrote agent.conf")
	}

	// Written, it asks for the agent's restart only.
	code, stdout, _ = omens(t, args...)
	if code != 0 || !strings.HasSuffix(stdout, "1 of 5 files written for host auth\nthen: systemctl restart spire-agent\n") {
		t.Errorf("render after the edit: exit %d\n%s", code, stdout)
	}

	code, _, stderr = omens(t, "config", "render", "--inventory", inv, "--host", "db", "--out", out, "--plugin-dir", plugins)
	if code != 1 || stderr != "omens: hostconf: tower.hcl: host \"db\" is not in the inventory (its hosts: spire, auth, ca)\n" {
		t.Errorf("unknown host: exit %d, %q", code, stderr)
	}
}
