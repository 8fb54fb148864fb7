package lab_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/lab"
)

// buildOmens builds the omens binary that the lab runs its parts with.
func buildOmens(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "omens")
	out, err := exec.Command("go", "build", "-o", bin, "omens.dev/omens/cmd/omens").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
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
	}

	// A second Up on the same directory resumes: same processes, same EKs.
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := l.Status()
	for i := range first {
		if first[i].TPM != second[i].TPM || first[i].EKHash != second[i].EKHash {
			t.Errorf("second up: %+v, want the running lab %+v", second[i], first[i])
		}
	}

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
	if len(socks) != 0 {
		t.Errorf("sockets left after down: %v", socks)
	}
	for _, h := range l.Status() {
		if h.TPM != "down" {
			t.Errorf("%s: TPM %q after down", h.Host, h.TPM)
		}
	}

	// Up after down brings back the same hosts with the same EKs.
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, h := range l.Status() {
		if h.EKHash != first[i].EKHash {
			t.Errorf("%s: EK hash after restart %s, want %s", h.Host, h.EKHash, first[i].EKHash)
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
