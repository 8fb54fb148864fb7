// Package stepcatest runs a real step-ca for Go tests: stepcaproc's CA in a temporary
// directory, stopped, leaving no process, when the test ends.
//
// When the engines (tools/bin/step and tools/bin/step-ca, see internal/engines) are
// missing the test is skipped, or fails if the environment variable CI is "true".
package stepcatest

import (
	"os"
	"testing"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/stepcaproc"
	"omens.dev/omens/internal/test/enginetest"
)

// Config shapes the CA that Start creates (stepcaproc.Config).
type Config = stepcaproc.Config

// CertDuration is the default and the longest lifetime of the TLS certificates that the
// provisioner signs (stepcaproc.CertDuration).
const CertDuration = stepcaproc.CertDuration

// CA is a step-ca a test started, with its directory and its settings (stepcaproc.CA).
type CA struct {
	*stepcaproc.CA
}

// Start creates a CA in a new temporary directory, starts it and waits until it is
// healthy. The CA stops, and its directory is removed, when the test ends; its log is
// shown if the test failed.
func Start(t testing.TB, cfg Config) *CA {
	t.Helper()
	enginetest.Require(t, engines.Step, engines.StepCA)
	dir, err := os.MkdirTemp("", "step-ca-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("stepcatest: %v", err)
		}
	})
	c, err := stepcaproc.Init(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stepcatest: %v", err)
		}
		if t.Failed() {
			t.Log(proc.Tail(c.LogPath))
		}
	})
	ca := &CA{c}
	ca.Start(t)
	return ca
}

// Start starts a stopped CA again from its directory and waits until it is healthy.
func (c *CA) Start(t testing.TB) {
	t.Helper()
	if _, err := c.Run(); err != nil {
		t.Fatal(err)
	}
}

// Stop stops the CA (SIGTERM, then waits) and leaves its directory in place for Start.
func (c *CA) Stop(t testing.TB) {
	t.Helper()
	if err := c.CA.Stop(); err != nil {
		t.Fatalf("stepcatest: %v", err)
	}
}
