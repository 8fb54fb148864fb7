package bench_test

import (
	"os/exec"
	"testing"
)

// buildPlugin builds omens-attestor-server into a temporary directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/", "omens.dev/omens/cmd/omens-attestor-server").CombinedOutput(); err != nil {
		t.Fatalf("go build omens-attestor-server: %v\n%s", err, out)
	}
	return dir + "/omens-attestor-server"
}
