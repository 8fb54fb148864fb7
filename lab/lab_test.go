package lab_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/lab"
)

// buildOmens builds the omens binary that the lab runs its parts with, and the SPIRE
// plugins beside it. Without the engines of `make tools` the test skips (fails when
// CI=true).
func buildOmens(t *testing.T) string {
	t.Helper()
	for _, name := range engines.All {
		if _, err := engines.Path(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "omens.dev/omens/cmd/omens",
		"omens.dev/omens/cmd/omens-attestor-server", "omens.dev/omens/cmd/omens-attestor-agent", "omens.dev/omens/cmd/omens-demo").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "omens")
}

func TestUpResumeDown(t *testing.T) {
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := &lab.Lab{Dir: dir, Omens: buildOmens(t)}
	t.Cleanup(func() { l.Down() })

	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := l.Status()
	for _, h := range first {
		if !strings.HasPrefix(h.TPM, "up (pid ") || h.Error != "" {
			t.Fatalf("%s: TPM %q error %q, want up", h.Host, h.TPM, h.Error)
		}
		if !strings.HasPrefix(h.EKCert, "verified (RSA-2048, Microsoft omens-sim)") {
			t.Errorf("%s: EK certificate %q, want verified", h.Host, h.EKCert)
		}
		if len(h.EKHash) != 64 || len(h.BootState) != 4 {
			t.Errorf("%s: EK hash %q, boot state %v", h.Host, h.EKHash, h.BootState)
		}
		// The Tower as it runs today: every host's agent on a join token, aliased to the
		// plan's node name.
		if h.Attestation != "join_token" || !strings.HasPrefix(h.AgentID, "spiffe://funlab.casa/spire/agent/join_token/") {
			t.Errorf("%s: attestation %q agent %q, want a join-token agent", h.Host, h.Attestation, h.AgentID)
		}
	}

	// A second Up on the same directory resumes: same processes, same EKs.
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := l.Status()
	for i := range first {
		if first[i].TPM != second[i].TPM || first[i].EKHash != second[i].EKHash || first[i].AgentID != second[i].AgentID {
			t.Errorf("second up: %+v, want the running lab %+v", second[i], first[i])
		}
	}

	// The plan's migration: every host's agent moves to its TPM, join_token goes.
	var steps []string
	if err := l.Migrate(context.Background(), func(step string, _ []lab.HostStatus) { steps = append(steps, step) }); err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 || steps[3] != "migration finished: join_token removed" {
		t.Errorf("migration steps %q", steps)
	}
	migrated := l.Status()
	for _, h := range migrated {
		if h.Attestation != "tpm-devid" || h.AgentID != "spiffe://funlab.casa/spire/agent/tpm/"+h.EKHash {
			t.Errorf("%s after the migration: attestation %q agent %q, want tpm-devid with the EK-hash ID", h.Host, h.Attestation, h.AgentID)
		}
	}
	first = migrated

	// The demo workloads: step-ca's stand-in calls OpenBao's over mTLS; a process without
	// a registration entry gets no SVID.
	call, refused, err := l.Demo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(call, "server  spiffe://funlab.casa/openbao") || !strings.Contains(call, "client  spiffe://funlab.casa/step-ca") {
		t.Errorf("demo call:\n%s", call)
	}
	if !strings.Contains(refused, "is there a registration entry for this process?") {
		t.Errorf("demo call without an entry:\n%s", refused)
	}

	// A BIOS update on auth is rejected, naming PCR 0, then accepted and pinned in a window.
	var sb strings.Builder
	if err := l.ScenarioBIOSUpdate(context.Background(), &sb); err != nil {
		t.Fatalf("bios-update: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "(auth) PCR 0 is ") || !strings.Contains(out, "accepted and pinned") {
		t.Errorf("bios-update scenario:\n%s", out)
	}
	for _, h := range l.Status() {
		if h.Host == "auth" && h.Attestation != "tpm-devid" {
			t.Errorf("auth after the BIOS update: %q", h.Attestation)
		}
	}

	// A join token is refused once the migration removed join_token.
	sb.Reset()
	if err := l.ScenarioJoinTokenAfterMigration(context.Background(), &sb); err != nil {
		t.Fatalf("join-token-after-migration: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "2. it is refused:") || strings.Contains(out, "refused:\n   refused") {
		t.Errorf("join-token-after-migration scenario:\n%s", out)
	}
	t.Log(sb.String())

	// The SPIRE server goes down: the workloads keep their SVIDs; it comes back.
	sb.Reset()
	if err := l.ScenarioServerDown(context.Background(), &sb); err != nil {
		t.Fatalf("server-down: %v\n%s", err, sb.String())
	}

	// Decommissioning ca: its DevID is revoked and its agent banned.
	sb.Reset()
	if err := l.ScenarioRevoke(context.Background(), &sb); err != nil {
		t.Fatalf("revoke: %v\n%s", err, sb.String())
	}
	for _, h := range l.Status() {
		if h.Host == "ca" && h.Attestation != "" {
			t.Errorf("ca after revoke still has a live agent: %q %q", h.Attestation, h.AgentID)
		}
	}
	revoked := l.Status()

	pids := pidsOf(t, dir)
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %s still runs after down", pid)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "hosts", "*", "*.sock*"))
	more, _ := filepath.Glob(filepath.Join(dir, "hosts", "*", "agent", "*", "*.sock"))
	socks = append(append(socks, more...), globOr(filepath.Join(dir, "spire", "api.sock"))...)
	if len(socks) != 0 {
		t.Errorf("sockets left after down: %v", socks)
	}
	for _, h := range l.Status() {
		if h.TPM != "down" {
			t.Errorf("%s: TPM %q after down", h.Host, h.TPM)
		}
	}

	first = revoked
	// Up after down brings back the same hosts with the same EKs.
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, h := range l.Status() {
		if h.EKHash != first[i].EKHash {
			t.Errorf("%s: EK hash after restart %s, want %s", h.Host, h.EKHash, first[i].EKHash)
		}
		// The agents come back with their SVIDs, not new join tokens.
		if h.AgentID != first[i].AgentID {
			t.Errorf("%s: agent after restart %q, want %q", h.Host, h.AgentID, first[i].AgentID)
		}
	}
}

// running reports whether pid is a live process: not gone, and not a zombie waiting for
// its parent (this test process) to collect its exit status.
func running(pid string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func globOr(path string) []string {
	if _, err := os.Stat(path); err == nil {
		return []string{path}
	}
	return nil
}

func pidsOf(t *testing.T, dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "run", "*.pid"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	if len(out) == 0 {
		t.Fatal("no pid files")
	}
	return out
}
