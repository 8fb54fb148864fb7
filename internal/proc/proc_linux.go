package proc

import (
	"os/exec"
	"syscall"
)

// Own puts cmd, before it starts, in a process group of its own, so that what it starts
// can be ended with it, and makes the kernel kill it (SIGKILL, PR_SET_PDEATHSIG) when the
// thread that started it dies, as the test binary's threads do when it exits without
// running its cleanups. For a cmd made with exec.CommandContext, cancelling the context
// then kills the whole group.
func Own(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.Cancel != nil {
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
}

// killGroup sends SIGKILL to the process group that Own gave pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
