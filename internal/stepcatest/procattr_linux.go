package stepcatest

import (
	"os/exec"
	"syscall"
)

// ownProcess puts cmd in a process group of its own, so that it can be ended with all it
// started, and makes the kernel kill it if the process that started it dies without
// stopping it (a test timeout, for example).
func ownProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the process group that ownProcess gave pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
