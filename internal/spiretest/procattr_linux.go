package spiretest

import (
	"os/exec"
	"syscall"
)

// ownProcess puts cmd in a process group of its own, so that plugin processes the engine
// starts can be ended with it, and makes the kernel kill it if the test binary dies without
// running its cleanups (a test timeout, for example).
func ownProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the process group that ownProcess gave pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
