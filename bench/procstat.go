package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every
// Linux architecture Go runs on (the kernel fixes it for user space).
const clockTicks = 100

// ProcUsage is what the kernel counted for one process: CPU time in user and kernel mode
// (/proc/PID/stat utime + stime) and peak resident memory (/proc/PID/status VmHWM).
type ProcUsage struct {
	CPU     time.Duration
	PeakRSS uint64 // bytes
}

// readProcUsage reads the usage of process pid.
func readProcUsage(pid int) (ProcUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcUsage{}, err
	}
	// The command name, in parentheses, may hold spaces: the fields after it start with
	// the state (field 3); utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcUsage{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return ProcUsage{}, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ProcUsage{}, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	u := ProcUsage{CPU: time.Duration(utime+stime) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcUsage{}, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return ProcUsage{}, fmt.Errorf("/proc/%d/status: VmHWM %q", pid, v)
			}
			u.PeakRSS = kb << 10
		}
	}
	return u, nil
}

// childrenNamed returns the pids of the children of parent whose command name starts
// with prefix (the kernel keeps 15 bytes of it).
func childrenNamed(parent int, prefix string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	if len(prefix) > 15 {
		prefix = prefix[:15]
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(stat[end+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		if strings.HasPrefix(string(stat[open+1:end]), prefix) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Usage is the CPU time and peak memory of a target's SPIRE server processes and of their
// NodeAttestor "tpm" plugin processes: CPU summed over every process that ran (a restarted
// server counts twice), peak memory the highest of any.
type Usage struct {
	Server, Plugin ProcUsage
}

// add folds u into the usage of processes that ran before.
func (a *Usage) add(u Usage) {
	a.Server.CPU += u.Server.CPU
	a.Plugin.CPU += u.Plugin.CPU
	a.Server.PeakRSS = max(a.Server.PeakRSS, u.Server.PeakRSS)
	a.Plugin.PeakRSS = max(a.Plugin.PeakRSS, u.Plugin.PeakRSS)
}
