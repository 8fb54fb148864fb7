package testtpm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"omens.dev/omens/tpm/tpmsim"
)

// ServeSim starts the in-process simulated TPM (tpmsim, with opts; StateDir defaults to a
// temporary directory) and serves it on a unix socket, as `omens tpm simulate` does,
// until the test ends; it returns once both the TPM socket and its control socket
// listen. The reference simulator is one per process: a second ServeSim waits for the
// first to be closed, so tests that call it must not run in parallel.
func ServeSim(t testing.TB, opts tpmsim.Options) (*tpmsim.Sim, string) {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	sim, err := tpmsim.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("testtpm: closing the simulator: %v", err)
		}
	})
	// t.TempDir can be too long for a unix socket address (108 bytes).
	dir, err := os.MkdirTemp("", "omens-tpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "tpm.sock")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sim.Serve(ctx, socket) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("testtpm: Serve(%s): %v", socket, err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err1 := os.Stat(socket)
		_, err2 := os.Stat(tpmsim.ControlPath(socket))
		if err1 == nil && err2 == nil {
			return sim, socket
		}
		select {
		case err := <-errc:
			t.Fatalf("testtpm: Serve(%s) returned: %v", socket, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("testtpm: the simulator does not listen on %s", socket)
		}
	}
}
