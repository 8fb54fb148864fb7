package engines_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
)

// pinned reads the version tools/go.mod pins for module.
func pinned(t *testing.T, module string) string {
	t.Helper()
	root, err := engines.SourceRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(module) + `\s+v(\S+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("tools/go.mod pins no version of %s", module)
	}
	return m[1]
}

// TestEnginesArePinnedVersions runs each engine that `make tools` built and checks that it
// reports the version tools/go.mod pins. Without the engines the test skips, but fails when
// CI=true.
func TestEnginesArePinnedVersions(t *testing.T) {
	for _, tc := range []struct {
		name, module string
		args         []string
		prefix       string
	}{
		{engines.SPIREServer, "github.com/spiffe/spire", []string{"--version"}, ""},
		{engines.SPIREAgent, "github.com/spiffe/spire", []string{"--version"}, ""},
		{engines.StepCA, "github.com/smallstep/certificates", []string{"version"}, "Smallstep CA/"},
		{engines.Step, "github.com/smallstep/cli", []string{"version"}, "Smallstep CLI/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := enginetest.Path(t, tc.name)
			out, err := exec.Command(path, tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", path, tc.args, err, out)
			}
			want := tc.prefix + pinned(t, tc.module)
			if first := strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]; !strings.HasPrefix(first, want) {
				t.Errorf("%s reports %q, want %q", tc.name, first, want)
			}
		})
	}
}
