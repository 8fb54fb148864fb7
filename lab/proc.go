package lab

import (
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

// A process the lab started: its pid is kept in DIR/run/NAME.pid and its output in
// DIR/logs/NAME.log, so that `omens lab down` (or a later `up`) finds it again.
type process struct {
	name string
	dir  string
	// notLeader marks a process the lab did not start in a process group of its own (the
	// foreground `omens lab up`): it is signalled alone, not as a group.
	notLeader bool
	// cred, when set, is the user the process runs as.
	cred *syscall.Credential
}

func (p process) signal(pid int, sig syscall.Signal) {
	if p.notLeader {
		syscall.Kill(pid, sig)
		return
	}
	syscall.Kill(-pid, sig)
}

func (p process) pidFile() string { return filepath.Join(p.dir, "run", p.name+".pid") }
func (p process) logFile() string { return filepath.Join(p.dir, "logs", p.name+".log") }

// pid returns the pid of the running process, or 0 when it is not running.
func (p process) pid() int {
	b, err := os.ReadFile(p.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !alive(pid) {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie (exited, not yet reaped by its parent) counts as gone.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

// start runs argv in its own process group, detached from the lab's terminal, with output
// appended to the log file.
func (p process) start(argv []string) (int, error) {
	for _, d := range []string{filepath.Dir(p.pidFile()), filepath.Dir(p.logFile())} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	log, err := os.OpenFile(p.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("lab: start %s: %w", p.name, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(p.pidFile(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		cmd.Process.Kill()
		return 0, err
	}
	// Reap the child when it exits, so that it does not linger as a zombie while the
	// lab runs; the process is found again through its pid file.
	go cmd.Wait()
	return pid, nil
}

// stop sends SIGTERM to the process group, waits, then SIGKILL; it removes the pid file.
func (p process) stop(grace time.Duration) error {
	pid := p.pid()
	defer os.Remove(p.pidFile())
	if pid == 0 {
		return nil
	}
	p.signal(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.signal(pid, syscall.SIGKILL)
	for range 100 {
		if !alive(pid) {
			return fmt.Errorf("lab: %s (pid %d) ignored SIGTERM and was killed", p.name, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("lab: %s (pid %d) does not exit", p.name, pid)
}

// tail returns the last lines of the process's log, for error messages.
func (p process) tail(n int) string {
	b, _ := os.ReadFile(p.logFile())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
