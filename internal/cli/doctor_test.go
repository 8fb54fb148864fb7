package cli_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"omens.dev/omens/doctor"
)

// TestDoctor runs `omens doctor` on a simulated TPM with an EK certificate and nothing
// else given, as the package's CI does: exit 0, and the only warnings are about what was
// not given. The table and --json say the same; a missing TPM exits 1, naming the check.
func TestDoctor(t *testing.T) {
	h := startSim(t, false)
	var r doctor.Report
	omensJSON(t, 0, &r, "doctor", "--tpm", h.socket, "--json")
	if len(r.Checks) != r.Pass+r.Warn+r.Fail || r.Fail != 0 || r.Pass == 0 {
		t.Fatalf("report counts %d pass, %d warn, %d fail of %d checks", r.Pass, r.Warn, r.Fail, len(r.Checks))
	}
	for _, c := range r.Checks {
		if c.Status != doctor.Warn {
			continue
		}
		notGiven := strings.HasPrefix(c.Detail, "not checked: ") || strings.HasSuffix(c.Detail, "; chain not checked") ||
			strings.HasPrefix(c.Detail, "no event log at /sys/kernel/security/tpm0/binary_bios_measurements: ") ||
			c.Detail == "not known: no event log (see event_log)"
		if !notGiven || c.Next == "" {
			t.Errorf("warning %s (%s, next %q) is not about what was not given", c.Name, c.Detail, c.Next)
		}
	}

	code, stdout, stderr := omens(t, "doctor", "--tpm", h.socket)
	if code != 0 || stderr != "" {
		t.Fatalf("omens doctor: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if want := 1 + len(r.Checks) + 2; len(lines) != want {
		t.Fatalf("%d lines, want %d (header, a line per check, a blank line, the summary):\n%s", len(lines), want, stdout)
	}
	if !regexp.MustCompile(`^STATUS +CHECK +DETAIL$`).MatchString(lines[0]) {
		t.Errorf("header %q", lines[0])
	}
	for i, c := range r.Checks {
		want := fmt.Sprintf("%s +%s +%s", c.Status, regexp.QuoteMeta(c.Name), regexp.QuoteMeta(c.Detail))
		if c.Next != "" {
			want += regexp.QuoteMeta(" — next: " + c.Next)
		}
		if !regexp.MustCompile("^" + want + "$").MatchString(lines[1+i]) {
			t.Errorf("line %d is %q, want the check %+v", i+1, lines[1+i], c)
		}
	}
	if want := fmt.Sprintf("%d checks: %d pass, %d warn, 0 fail", len(r.Checks), r.Pass, r.Warn); lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}
	if !strings.Contains(stdout, "pass    tpm  ") || !strings.Contains(stdout, h.socket+" (a unix socket)") {
		t.Errorf("no tpm line naming %s:\n%s", h.socket, stdout)
	}

	missing := filepath.Join(t.TempDir(), "tpm.sock")
	code, stdout, stderr = omens(t, "doctor", "--tpm", missing)
	if code != 1 || stderr != fmt.Sprintf("omens: doctor: 1 of %d checks failed (tpm)\n", len(r.Checks)) {
		t.Errorf("omens doctor --tpm %s: exit %d, stderr %q", missing, code, stderr)
	}
	if !strings.Contains(stdout, "fail    tpm ") {
		t.Errorf("no failed tpm line:\n%s", stdout)
	}
}
