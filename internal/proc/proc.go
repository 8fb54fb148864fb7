// Package proc runs the child processes of the test helpers (spiretest, stepcatest,
// testtpm): an engine started with its standard output and error appended to a log file,
// polled until it is ready, and stopped with SIGTERM, then SIGKILL after a grace period.
//
// On Linux every child gets a process group of its own, so that what it starts (a SPIRE
// plugin, the swtpm that swtpm_setup runs) ends with it, and the kernel kills it when the
// test binary dies without running its cleanups (a test timeout, for example).
//
// Errors name the process (the name given to Start) rather than this package; the helper
// that reports them adds its own prefix. Errors about a process that failed hold the last
// lines of its log.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// attemptTimeout bounds each call of the check that WaitReady polls.
const attemptTimeout = 10 * time.Second

// tailLines is how many lines of a log Tail keeps.
const tailLines = 60

// Process is a child process started by Start.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited and err is set
	err     error         // what cmd.Wait returned
}

// Start starts cmd with its standard output and error appended to the file at logPath
// (created if missing), owned as Own describes. name labels the process in errors.
func Start(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout = log
	cmd.Stderr = log
	Own(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done returns a channel that is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and, if so, how: the error is what
// exec.Cmd.Wait returned (an *exec.ExitError for a non-zero status or a signal).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits for the process to exit. If it has not exited after grace,
// Stop kills its process group and the process with SIGKILL, waits for it, and returns an
// error that says so. Either way it then kills what is left of the process group, such as
// plugins the process started. Once the process has exited, Stop returns nil.
func (p *Process) Stop(grace time.Duration) error {
	pid := p.cmd.Process.Pid
	defer killGroup(pid)
	if done, _ := p.Exited(); done {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	killGroup(pid)
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
}

// WaitReady calls ready every interval until it returns nil, giving each call a context
// that ends after 10 seconds. It fails, with the last lines of the log, when the process
// exits first or ready still fails after timeout; it leaves the process running.
func (p *Process) WaitReady(timeout, interval time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited before it was ready (%v)\n%s", p.name, err, Tail(p.logPath))
		}
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w\n%s", p.name, timeout, err, Tail(p.logPath))
		}
		time.Sleep(interval)
	}
}

// Tail returns the last 60 lines of the log file at path under a line that names the
// file, for failure messages. A log that cannot be read shows as empty.
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return "--- last lines of " + path + " ---\n" + strings.Join(lines, "\n")
}
