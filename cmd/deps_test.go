// Package cmd_test checks what the shipped binaries link.
package cmd_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestNoTestKitInBinaries lists the dependencies of every binary under cmd/ with `go list
// -deps`: none may link the standard library's testing package or a test kit of
// internal/test/.
func TestNoTestKitInBinaries(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("the go command: %v", err)
		}
	}
	out, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	cmds := strings.Fields(string(out))
	if len(cmds) < 4 {
		t.Fatalf("go list ./... found %d binaries under cmd/: %v", len(cmds), cmds)
	}
	for _, c := range cmds {
		deps, err := exec.Command(goBin, "list", "-deps", c).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", c, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			if d == "testing" || strings.HasPrefix(d, "omens.dev/omens/internal/test/") {
				t.Errorf("%s links %s", c, d)
			}
		}
	}
}

// TestAgentSideHasNoSoftwareTPM checks that the agent side (the agent plugin, the prover,
// the TPM layer, the device side of enrollment) links nothing of bench/: its software TPM
// is for load generation only, never a TPM an agent could attest with.
func TestAgentSideHasNoSoftwareTPM(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("the go command: %v", err)
		}
	}
	for _, pkg := range []string{"omens.dev/omens/cmd/omens-attestor-agent", "omens.dev/omens/spireplugin/agent", "omens.dev/omens/prover", "omens.dev/omens/tpm", "omens.dev/omens/enroll"} {
		deps, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			if d == "omens.dev/omens/bench" || strings.HasPrefix(d, "omens.dev/omens/bench/") {
				t.Errorf("%s links %s", pkg, d)
			}
		}
	}
}
