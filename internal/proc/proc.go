// Package proc runs the engines omens starts (step-ca, SPIRE, swtpm, the lab's simulated
// TPMs and workloads): a process started with its standard output and error appended to a
// log file, polled until it is ready, and stopped with SIGTERM, then SIGKILL after a grace
// period.
//
// A process is either owned (the default: it ends with the program, as a test's engines
// do) or detached and tracked by a pid file (WithPIDFile: it outlives the program, as the
// lab's processes do between `omens lab up` and `omens lab down`, and Lookup finds it
// again).
//
// On Linux every owned child gets a process group of its own, so that what it starts (a SPIRE
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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// attemptTimeout bounds each call of the check that WaitReady polls.
const attemptTimeout = 10 * time.Second

// tailLines is how many lines of a log Tail keeps.
const tailLines = 60

// Process is a process started by Start, or found again from its pid file by Lookup.
type Process struct {
	name    string
	logPath string
	pidFile string // where its pid is recorded; empty for an owned child
	pid     int
	// group is true when the process leads a process group of its own, which Stop ends
	// with it.
	group bool
	cmd   *exec.Cmd     // nil for a process found by Lookup
	done  chan struct{} // closed when cmd has exited and err is set; nil without cmd
	err   error         // what cmd.Wait returned
}

// Option changes how Start runs a process.
type Option func(*options)

type options struct {
	pidFile string
	cred    *syscall.Credential
}

// WithPIDFile detaches the process instead of owning it: it still gets a process group
// of its own, but it does not die with its parent, and its pid is recorded in the file
// at path (its directory created if missing), so that a later run of the program finds
// it with Lookup. Stop removes the file.
func WithPIDFile(path string) Option { return func(o *options) { o.pidFile = path } }

// WithCredential runs the process as another user.
func WithCredential(cred *syscall.Credential) Option { return func(o *options) { o.cred = cred } }

// Start starts cmd with its standard output and error appended to the file at logPath
// (created if missing, with its directory), owned as Own describes unless WithPIDFile
// detaches it. name labels the process in errors.
func Start(name string, cmd *exec.Cmd, logPath string, opts ...Option) (*Process, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	for _, f := range []string{logPath, o.pidFile} {
		if f == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return nil, err
		}
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout = log
	cmd.Stderr = log
	if o.pidFile == "" {
		Own(cmd)
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if o.cred != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = o.cred
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, logPath: logPath, pidFile: o.pidFile, pid: cmd.Process.Pid,
		group: cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid, cmd: cmd, done: make(chan struct{})}
	// Reap the child when it exits, so that it does not linger as a zombie.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
			_ = p.Stop(0)
			return nil, err
		}
	}
	return p, nil
}

// Lookup finds the process whose pid the file at pidFile records (see WithPIDFile and
// WritePIDFile), or returns nil when the file is missing or that process no longer runs.
// logPath is its log, for Tail and errors; name labels it.
func Lookup(name, pidFile, logPath string) *Process {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return nil
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 0 || !alive(pid) {
		return nil
	}
	p := &Process{name: name, logPath: logPath, pidFile: pidFile, pid: pid}
	if len(fields) == 1 || fields[1] != alone {
		pgid, err := syscall.Getpgid(pid)
		p.group = err == nil && pgid == pid
	}
	return p
}

// alone marks, in a pid file, a process that Stop signals alone, never its process group.
const alone = "alone"

// WritePIDFile records the calling process in the file at path, for Lookup: a process
// the program did not start, such as itself in the foreground. Stop signals it alone,
// not the process group it may share with its shell's pipeline.
func WritePIDFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+" "+alone+"\n"), 0o644)
}

// PID is the process's pid.
func (p *Process) PID() int { return p.pid }

// Done returns a channel that is closed when the process has exited. For a process found
// by Lookup, which is not a child, the channel is nil: poll Exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and, if so, how: for a child, the error
// is what exec.Cmd.Wait returned (an *exec.ExitError for a non-zero status or a signal);
// for a process found by Lookup it is nil.
func (p *Process) Exited() (bool, error) {
	if p.cmd == nil {
		return !alive(p.pid), nil
	}
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// wait waits up to limit for the process to exit and reports whether it did.
func (p *Process) wait(limit time.Duration) bool {
	if p.cmd != nil {
		select {
		case <-p.done:
			return true
		case <-time.After(limit):
			return false
		}
	}
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if !alive(p.pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Stop sends SIGTERM and waits for the process to exit. If it has not exited after grace,
// Stop kills its process group and the process with SIGKILL, waits for it, and returns an
// error that says so. Either way it then kills what is left of the process group, such as
// plugins the process started, and removes its pid file. Once the process has exited,
// Stop returns nil.
func (p *Process) Stop(grace time.Duration) error {
	defer func() {
		if p.group {
			killGroup(p.pid)
		}
		if p.pidFile != "" {
			_ = os.Remove(p.pidFile)
		}
	}()
	if done, _ := p.Exited(); done {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	if p.wait(grace) {
		return nil
	}
	if p.group {
		killGroup(p.pid)
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	if !p.wait(5 * time.Second) {
		return fmt.Errorf("%s (pid %d) does not exit after SIGKILL", p.name, p.pid)
	}
	return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
}

// alive reports whether pid runs; a zombie (exited, not yet reaped by its parent) counts
// as gone.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

// WaitReady calls ready every interval until it returns nil, giving each call a context
// that ends after 10 seconds. It fails, with the last lines of the log, when the process
// exits first or ready still fails after timeout; it leaves the process running.
func (p *Process) WaitReady(timeout, interval time.Duration, ready func(context.Context) error) error {
	return p.WaitReadyContext(context.Background(), timeout, interval, ready)
}

// WaitReadyContext is WaitReady that also stops waiting, with ctx's error, when ctx ends.
func (p *Process) WaitReadyContext(ctx context.Context, timeout, interval time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited before it was ready (%v)\n%s", p.name, err, Tail(p.logPath))
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := ready(actx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w\n%s", p.name, timeout, err, Tail(p.logPath))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
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
