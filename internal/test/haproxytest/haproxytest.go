// Package haproxytest runs Debian's haproxy for tests (internal/haproxyproc): one TCP
// frontend on a free loopback port in front of the given backends, stopped when the test
// ends, or ends the test (enginetest.Missing) when haproxy is not installed.
package haproxytest

import (
	"context"
	"errors"
	"testing"

	"omens.dev/omens/internal/haproxyproc"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/test/enginetest"
)

// Bin is Debian's haproxy; OMENS_HAPROXY overrides it.
const Bin = haproxyproc.Bin

// Proxy is a running haproxy.
type Proxy = haproxyproc.Proxy

// Config renders haproxy's configuration for backends behind port (haproxyproc.Config).
func Config(port int, backends []string) string { return haproxyproc.Config(port, backends) }

// Start runs haproxy in front of backends for the test.
func Start(t testing.TB, backends ...string) *Proxy {
	t.Helper()
	p, err := haproxyproc.Start(context.Background(), backends...)
	if errors.Is(err, haproxyproc.ErrMissing) {
		enginetest.Missing(t, "haproxytest: "+err.Error())
	}
	if err != nil {
		t.Fatalf("haproxytest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(proc.Tail(p.Log()))
		}
		if err := p.Stop(); err != nil {
			t.Errorf("haproxytest: %v", err)
		}
	})
	return p
}
