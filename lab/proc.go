package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"omens.dev/omens/internal/proc"
)

// A process the lab starts, detached and tracked by internal/proc: its pid is kept in
// DIR/run/NAME.pid and its output in DIR/logs/NAME.log, so that `omens lab down` (or a
// later `up`) finds it again.
type process struct {
	name string
	dir  string
	// cred, when set, is the user the process runs as.
	cred *syscall.Credential
}

func (p process) pidFile() string { return filepath.Join(p.dir, "run", p.name+".pid") }
func (p process) logFile() string { return filepath.Join(p.dir, "logs", p.name+".log") }

// find returns the running process, or nil.
func (p process) find() *proc.Process { return proc.Lookup(p.name, p.pidFile(), p.logFile()) }

// pid returns the pid of the running process, or 0 when it is not running.
func (p process) pid() int {
	if r := p.find(); r != nil {
		return r.PID()
	}
	return 0
}

// start runs argv detached, in its own process group, with output appended to the log
// file.
func (p process) start(argv []string) (*proc.Process, error) {
	opts := []proc.Option{proc.WithPIDFile(p.pidFile())}
	if p.cred != nil {
		opts = append(opts, proc.WithCredential(p.cred))
	}
	r, err := proc.Start(p.name, exec.Command(argv[0], argv[1:]...), p.logFile(), opts...)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return r, nil
}

// stop sends SIGTERM, waits up to grace, then SIGKILL; it removes the pid file.
func (p process) stop(grace time.Duration) error {
	r := p.find()
	if r == nil {
		os.Remove(p.pidFile())
		return nil
	}
	if err := r.Stop(grace); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
