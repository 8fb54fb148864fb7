package cli_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/policy"
)

// policyCLI runs the CLI in-process and returns its exit code, stdout and stderr.
func policyCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := cli.Main(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// policyDigest is a stand-in PCR value.
func policyDigest(label string) []byte {
	d := sha256.Sum256([]byte(label))
	return d[:]
}

func policyHex(label string) string { return hex.EncodeToString(policyDigest(label)) }

func TestPolicyAllowNextAndShow(t *testing.T) {
	dir := t.TempDir()
	spire := policyHex("ek spire")
	path := filepath.Join(dir, "pcr-policy.hcl")
	src := `
group "tower" {
  set "firmware-1.0" {
    pcrs = { "0" = "` + policyHex("fw10-0") + `", "7" = "` + policyHex("sb-7") + `" }
  }
}
host "` + spire + `" {
  name  = "spire"
  group = "tower"
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}

	// Help text on each command.
	for _, args := range [][]string{{"pcr", "allow-next", "--help"}, {"pcr", "policy", "show", "--help"}} {
		code, stdout, _ := policyCLI(args...)
		if code != 0 || !strings.Contains(stdout, "--policy string") {
			t.Fatalf("omens %s: exit %d\n%s", strings.Join(args, " "), code, stdout)
		}
	}

	// Errors say what to give.
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"pcr", "allow-next", "--policy", path, "--host", "spire"}, "omens: --for is required: how long the window stays open, such as 2h or 30m\n"},
		{[]string{"pcr", "allow-next", "--policy", path, "--host", "auth", "--for", "2h"}, `omens: policy: no host is named "auth" in the policy file: give the EK hash (64 hex digits) or the name label of a host block` + "\n"},
		{[]string{"pcr", "allow-next", "--host", "spire", "--for", "2h"}, `omens: required flag(s) "policy" not set` + "\n"},
	} {
		code, _, stderr := policyCLI(tc.args...)
		if code != 1 || stderr != tc.stderr {
			t.Fatalf("omens %s: exit %d, stderr:\n got: %q\nwant: %q", strings.Join(tc.args, " "), code, stderr, tc.stderr)
		}
	}

	before := time.Now().Truncate(time.Second)
	code, stdout, stderr := policyCLI("pcr", "allow-next", "--policy", path, "--host", "spire", "--for", "2h")
	if code != 0 {
		t.Fatalf("allow-next: exit %d: %s", code, stderr)
	}
	prefix := "window open for host spire (" + spire + ") until "
	first, _, _ := strings.Cut(stdout, "\n")
	until, err := time.Parse(time.RFC3339, strings.TrimPrefix(first, prefix))
	if !strings.HasPrefix(first, prefix) || err != nil {
		t.Fatalf("allow-next printed:\n%s", stdout)
	}
	if d := until.Sub(before); d < 2*time.Hour || d > 2*time.Hour+time.Minute {
		t.Fatalf("window ends %s, %s after the command started", until, d)
	}

	// The SPIRE server plugin sees the host boot with new firmware.
	s, err := policy.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	newFW := map[int][]byte{0: policyDigest("fw11-0"), 7: policyDigest("sb-7")}
	dec, err := s.Evaluate(spire, "sha256", newFW, now)
	if err != nil || !dec.Pinned {
		t.Fatalf("Evaluate in the window: %+v, %v", dec, err)
	}

	var r policy.Report
	code, stdout, stderr = policyCLI("pcr", "policy", "show", "--policy", path, "--json")
	if code != 0 {
		t.Fatalf("show --json: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("show --json: %v\n%s", err, stdout)
	}
	if len(r.Hosts) != 1 || len(r.Hosts[0].Pins) != 1 || r.Hosts[0].Pins[0].Name != dec.Set ||
		r.Hosts[0].Pins[0].PCRs["0"] != policyHex("fw11-0") || r.Hosts[0].Window != nil ||
		r.Hosts[0].Last == nil || r.Hosts[0].Last.Result != "pinned" {
		t.Fatalf("show --json:\n%s", stdout)
	}

	code, stdout, stderr = policyCLI("pcr", "policy", "show", "--policy", path)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, stderr)
	}
	stamp := now.UTC().Format(time.RFC3339)
	squeezed := strings.Join(strings.Fields(stdout), " ") // column widths aside
	for _, row := range []string{
		"Unknown hosts reject",
		"tower/firmware-1.0 group tower sha256 0=" + policyHex("fw10-0")[:8] + "… 7=" + policyHex("sb-7")[:8] + "…",
		"pinned/" + stamp + " host spire sha256 0=" + policyHex("fw11-0")[:8] + "… 7=" + policyHex("sb-7")[:8] + "…",
		"spire " + spire[:8] + "… tower - " + stamp + " pinned pinned/" + stamp,
	} {
		if !strings.Contains(squeezed, row) {
			t.Errorf("show does not print %q:\n%s", row, stdout)
		}
	}
}
