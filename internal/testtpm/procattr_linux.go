package testtpm

import (
	"os/exec"
	"syscall"
)

// ownProcess makes the kernel kill cmd's process if the test binary dies without
// running its cleanups (for example on a test timeout). With group set, cmd also gets
// its own process group, and cancelling its context kills the whole group.
func ownProcess(cmd *exec.Cmd, group bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: group}
	if group {
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
}
