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
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
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
	p, err := engines.Path(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
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

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hclString quotes s as an HCL string.
func hclString(s string) string { return fmt.Sprintf("%q", s) }

// process is a running engine whose output goes to a log file.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and err is set
	err  error
}

// startProcess runs bin with args in dir, appending its standard output and error to
// logPath.
func startProcess(name, dir, logPath, bin string, args ...string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	ownProcess(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spiretest: start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits for the process to end, then kills what is left of its
// process group (plugin processes), sending SIGKILL first if it did not end in time.
func (p *process) stop() error {
	pid := p.cmd.Process.Pid
	defer killGroup(pid)
	if done, _ := p.exited(); done {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("spiretest: stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	killGroup(pid)
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("spiretest: %s did not stop within %v of SIGTERM; killed", p.name, stopTimeout)
}

// noCGO is what a spire-server built with CGO_ENABLED=0 logs when it is given a sqlite3
// datastore: its sqlite driver needs cgo.
const noCGO = "sqlite3 is not a supported dialect when CGO is not enabled"

// waitReady polls check until it succeeds, failing the test when timeout passes or the
// process exits first. logPath is shown on failure. An engine built without the sqlite
// driver counts as a missing engine: the test skips, or fails when CI is "true".
func waitReady(t testing.TB, p *process, logPath string, timeout time.Duration, check func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if done, err := p.exited(); done {
			if strings.Contains(readLog(logPath), noCGO) {
				msg := fmt.Sprintf("spiretest: %s %s was built without cgo and cannot open its sqlite datastore: build it with CGO_ENABLED=1", p.name, p.cmd.Path)
				if os.Getenv("CI") == "true" {
					t.Fatal(msg)
				}
				t.Skip(msg)
			}
			t.Fatalf("spiretest: %s exited before it was healthy (%v)\n%s", p.name, err, logTail(logPath))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last = check(ctx)
		cancel()
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spiretest: %s not healthy after %v: %v\n%s", p.name, timeout, last, logTail(logPath))
		}
		time.Sleep(4 * pollInterval)
	}
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

// logTail returns the last lines of a log file, for failure messages.
func logTail(path string) string {
	const keep = 60
	lines := strings.Split(strings.TrimRight(readLog(path), "\n"), "\n")
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return "--- last lines of " + path + " ---\n" + strings.Join(lines, "\n")
}

// waitLog polls the log file at path until it contains substr.
func waitLog(t testing.TB, path, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(readLog(path), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("spiretest: %q not logged within %v\n%s", substr, timeout, logTail(path))
		}
		time.Sleep(pollInterval)
	}
}
