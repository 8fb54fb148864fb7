//go:build !linux

package spiretest

import "os/exec"

func ownProcess(cmd *exec.Cmd) {}

func killGroup(pid int) {}
