//go:build !linux

package proc

import "os/exec"

// Own does nothing outside Linux: there a child neither gets a process group of its own
// nor dies with the test binary.
func Own(cmd *exec.Cmd) {}

func killGroup(pid int) {}
