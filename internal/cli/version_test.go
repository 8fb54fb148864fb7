package cli_test

import (
	"testing"

	"omens.dev/omens/internal/version"
)

// TestVersionFlag: --version and -v print the build (internal/version) and exit 0; the
// values set with -ldflags -X are checked on the installed binary by
// scripts/package-test.sh.
func TestVersionFlag(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		code, out, errOut := omens(t, flag)
		if code != 0 || errOut != "" {
			t.Errorf("omens %s: exit %d, stderr %q", flag, code, errOut)
		}
		if want := version.Get().String(); out != want {
			t.Errorf("omens %s printed %q, want %q", flag, out, want)
		}
	}
}
