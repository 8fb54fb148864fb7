package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/deploy/prometheus"
	"omens.dev/omens/internal/test/enginetest"
)

// promtool is Debian's promtool, or ends the test (fails under CI=true).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		enginetest.Missing(t, "promtool not found: install Debian's prometheus package (scripts/install-deps.sh)")
	}
	return p
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRules: promtool accepts the rules and their unit tests pass, each alert firing and
// clearing (omens-alerts_test.yml).
func TestRules(t *testing.T) {
	out := run(t, ".", "check", "rules", "omens-alerts.yml")
	if !strings.Contains(out, "SUCCESS: 6 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}
	out = run(t, ".", "test", "rules", "omens-alerts_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// TestLabRules: the lab's copy keeps every rule, with short windows and for: durations.
func TestLabRules(t *testing.T) {
	dir := t.TempDir()
	lab := prometheus.LabRules()
	if err := os.WriteFile(filepath.Join(dir, "omens-alerts.yml"), lab, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(t, dir, "check", "rules", "omens-alerts.yml"); !strings.Contains(out, "SUCCESS: 6 rules found") {
		t.Errorf("promtool check rules on the lab's rules:\n%s", out)
	}
	s := string(lab)
	for _, gone := range []string{"[15m]", "for: 1m", "for: 1h", "for: 10m", "for: 2m"} {
		if strings.Contains(s, gone) {
			t.Errorf("the lab's rules still hold %q", gone)
		}
	}
	if n := strings.Count(s, "        for: 5s\n"); n != 6 {
		t.Errorf("the lab's rules have %d for: 5s, want 6", n)
	}
	if n := strings.Count(s, "[1m]"); n != 2 {
		t.Errorf("the lab's rules have %d [1m] windows, want 2", n)
	}
}
