package stepcatest

import (
	"os"
	"testing"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/enginetest"
	"omens.dev/omens/internal/proc"
)

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
	c, err := Init(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.proc != nil {
			if err := c.proc.Stop(stopTimeout); err != nil {
				t.Errorf("stepcatest: %v", err)
			}
		}
		if t.Failed() {
			t.Log(proc.Tail(c.LogPath))
		}
	})
	c.Start(t)
	return c
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
	if c.proc == nil {
		return
	}
	if err := c.proc.Stop(stopTimeout); err != nil {
		t.Fatalf("stepcatest: %v", err)
	}
}
