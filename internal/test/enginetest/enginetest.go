// Package enginetest holds the one rule for tests that need something outside Go (the
// engines SPIRE and step-ca, swtpm, tpm2-tools, the real-world data): without it a
// developer's quick `go test ./...` skips, and CI (CI=true, as .ci/run sets) fails.
package enginetest

import (
	"omens.dev/omens/internal/netport"
	"os"
	"testing"

	"omens.dev/omens/internal/engines"
)

// Missing ends the test because what it needs is missing: t.Fatal when CI is "true",
// t.Skip otherwise.
func Missing(t testing.TB, why any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Path returns the executable of engine name (engines.Path), or ends the test (Missing).
func Path(t testing.TB, name string) string {
	t.Helper()
	p, err := engines.Path(name)
	if err != nil {
		Missing(t, err)
	}
	return p
}

// Require ends the test (Missing) unless every engine in names is built.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		Path(t, name)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago
// (netport.Free), failing the test when there is none.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := netport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
