// Package spiretest runs real SPIRE servers and agents for Go tests.
//
// StartServer and StartAgent launch the spire-server and spire-agent that `make tools`
// builds into tools/bin (found with engines.Path), each in a short temporary directory of
// its own with a sqlite datastore, disk key managers and a DEBUG log, and stop them when the
// test ends. The Server and Agent methods wrap the engines' own command lines
// (`spire-server entry create`, `agent list`, `token generate`, `healthcheck`), so a test
// drives SPIRE the way an operator does and can read the logs an operator would read.
//
// When the engines are missing the test is skipped, or fails if the environment variable
// CI is "true".
package spiretest

import (
	"context"
	"fmt"
	"io"

	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/test/enginetest"
)

// How long to wait for an engine to become healthy, and to stop after SIGTERM. Generous:
// the tests run on small machines, and a server's first start creates its CA keys.
const (
	readyTimeout = 90 * time.Second
	stopTimeout  = 20 * time.Second
	pollInterval = 100 * time.Millisecond
)

// maxSocketPath is the longest unix socket path the sockets here may have: sun_path holds
// 108 bytes on Linux (104 on the BSDs), with a terminating NUL.
const maxSocketPath = 103

// enginePath returns the path of engine name, skipping the test when it is missing (or
// failing it when CI is "true").
func enginePath(t testing.TB, name string) string {
	t.Helper()
	return enginetest.Path(t, name)
}

// tempDir makes a directory for one engine, short enough to hold its unix sockets, and
// removes it when the test ends. $TMPDIR is used unless it is too long for sockets.
func tempDir(t testing.TB, prefix string, longestName int) string {
	t.Helper()
	parent := ""
	if len(os.TempDir())+len("/"+prefix+"0123456789/")+longestName > maxSocketPath {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(dir)+1+longestName > maxSocketPath {
		t.Fatalf("spiretest: temporary directory %s is too long for unix sockets: set TMPDIR to a shorter directory", dir)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("spiretest: %v", err)
		}
	})
	return dir
}

func freePort(t testing.TB) int { return enginetest.FreePort(t) }

// parseTTL parses the duration of a config field (empty for none).
func parseTTL(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("spiretest: %s: %w", field, err)
	}
	return d, nil
}

// noCGO is what a spire-server built with CGO_ENABLED=0 logs when it is given a sqlite3
// datastore: its sqlite driver needs cgo.
const noCGO = "sqlite3 is not a supported dialect when CGO is not enabled"

// startProcess runs bin with args in dir, appending its standard output and error to
// logPath.
// engine is one SPIRE process of a test, server or agent: `BIN run -config CONF` in the
// directory of CONF, its output in logPath, and the process while it runs.
type engine struct {
	name, bin, conf, logPath string
	proc                     *proc.Process
}

// launch starts the engine; it must not be running.
func (e *engine) launch(t testing.TB) {
	t.Helper()
	if e.proc != nil {
		if done, _ := e.proc.Exited(); !done {
			t.Fatalf("spiretest: %s already running", e.name)
		}
	}
	cmd := exec.Command(e.bin, "run", "-config", e.conf)
	cmd.Dir = filepath.Dir(e.conf)
	p, err := proc.Start(e.name, cmd, e.logPath)
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	e.proc = p
}

// stop stops the engine (SIGTERM, then waits) if it runs.
func (e *engine) stop() error {
	if e.proc == nil {
		return nil
	}
	if err := e.proc.Stop(stopTimeout); err != nil {
		return fmt.Errorf("spiretest: %w", err)
	}
	return nil
}

// stopAtCleanup stops the engine when the test ends, and shows its log if the test failed.
func (e *engine) stopAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Log(proc.Tail(e.logPath))
		}
	})
}

// waitReady polls check until it succeeds, failing the test, with the end of the log at
// logPath, when readyTimeout passes or the process exits first. An engine bin built
// without the sqlite driver counts as a missing engine: the test skips, or fails when CI
// is "true".
func waitReady(t testing.TB, p *proc.Process, bin, logPath string, check func(context.Context) error) {
	t.Helper()
	err := p.WaitReady(readyTimeout, 4*pollInterval, check)
	if err == nil {
		return
	}
	if done, _ := p.Exited(); done && strings.Contains(readLog(logPath), noCGO) {
		enginetest.Missing(t, fmt.Sprintf("spiretest: %s was built without cgo and cannot open its sqlite datastore: build it with CGO_ENABLED=1", bin))
	}
	t.Fatalf("spiretest: %v", err)
}

// runTool runs bin args and returns its standard output; on failure the error holds the
// standard error too.
func runTool(ctx context.Context, bin string, args ...string) (string, error) {
	var stdout, stderr strings.Builder
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// readLog returns the contents of a log file, or "" if it cannot be read.
func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// waitLog polls the log file at path until it contains substr.
func waitLog(t testing.TB, path, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(readLog(path), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("spiretest: %q not logged within %v\n%s", substr, timeout, proc.Tail(path))
		}
		time.Sleep(pollInterval)
	}
}

// scrape GETs a Prometheus endpoint and returns its text, failing the test on an error.
func scrape(t testing.TB, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("spiretest: scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("spiretest: scraping %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}
