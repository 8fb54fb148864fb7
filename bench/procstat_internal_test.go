package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestReadProcUsage reads this process's usage after some work, and finds a child by
// its command name as the server's plugin is found.
func TestReadProcUsage(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	u, err := readProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.CPU <= 0 || u.PeakRSS < 1<<20 {
		t.Errorf("usage %+v: want CPU time and a peak RSS of at least 1 MiB", u)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pids, err := childrenNamed(os.Getpid(), "sleep")
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("children named sleep: %v %v, want [%d]", pids, err, cmd.Process.Pid)
	}
	if pids, _ := childrenNamed(os.Getpid(), "omens-attestor-server"); len(pids) != 0 {
		t.Errorf("children named omens-attestor-server: %v, want none", pids)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    int
		want float64
	}{{50, 100}, {95, 190}, {99, 198}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%d of 1..200 ms: %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing: %v", got)
	}
}
