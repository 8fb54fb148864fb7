package proc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"omens.dev/omens/internal/proc"
)

// start starts `sh -c script` with its log in a temporary directory, waits until the log
// holds a line, and returns the process, the log path and that first line.
func start(t *testing.T, script string) (*proc.Process, string, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "sh.log")
	p, err := proc.Start("sh", exec.Command("sh", "-c", script), logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	var first string
	err = p.WaitReady(10*time.Second, 10*time.Millisecond, func(context.Context) error {
		b, _ := os.ReadFile(logPath)
		line, _, ok := strings.Cut(string(b), "\n")
		if !ok {
			return errors.New("no line yet")
		}
		first = line
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, logPath, first
}

// TestStop stops a sleep that left another sleep running in its process group: SIGTERM
// ends the first, and Stop kills the second with the group.
func TestStop(t *testing.T) {
	p, _, line := start(t, "sleep 60 & echo $!; exec sleep 60")
	if done, _ := p.Exited(); done {
		t.Fatal("exited before Stop")
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	done, err := p.Exited()
	var exit *exec.ExitError
	if !done || !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("after Stop: exited %v (%v), want ended by SIGTERM", done, err)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if runtime.GOOS == "linux" {
		waitGone(t, line)
	}
}

// TestStopKills stops a process that ignores SIGTERM: it is killed after the grace.
func TestStopKills(t *testing.T) {
	p, _, _ := start(t, "trap '' TERM; echo ready; exec sleep 60")
	const grace = 300 * time.Millisecond
	begin := time.Now()
	err := p.Stop(grace)
	if want := "sh did not stop within 300ms of SIGTERM; killed"; err == nil || err.Error() != want {
		t.Fatalf("Stop: %v, want %q", err, want)
	}
	if took := time.Since(begin); took < grace {
		t.Errorf("Stop returned after %v, before the grace of %v", took, grace)
	}
	var exit *exec.ExitError
	if _, err := p.Exited(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exited with %v, want killed by SIGKILL", err)
	}
}

// TestWaitReadyExited checks that a process that exits before it is ready fails WaitReady
// with its exit status and the last 60 lines of its log.
func TestWaitReadyExited(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sh.log")
	p, err := proc.Start("sh", exec.Command("sh", "-c", "for i in $(seq 1 100); do echo line $i; done; exit 3"), logPath)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	err = p.WaitReady(time.Second, 10*time.Millisecond, func(context.Context) error { return errors.New("never") })
	if err == nil {
		t.Fatal("WaitReady succeeded")
	}
	var want strings.Builder
	fmt.Fprintf(&want, "sh exited before it was ready (exit status 3)\n--- last lines of %s ---", logPath)
	for i := 41; i <= 100; i++ {
		fmt.Fprintf(&want, "\nline %d", i)
	}
	if err.Error() != want.String() {
		t.Errorf("WaitReady:\n%v\nwant:\n%s", err, want.String())
	}
}

// TestDiesWithParent kills, with SIGKILL, a test binary that has started a child: the child
// dies with it. The test binary runs itself as that parent.
func TestDiesWithParent(t *testing.T) {
	if logPath := os.Getenv("PROC_TEST_PARENT_LOG"); logPath != "" {
		if _, err := proc.Start("sh", exec.Command("sh", "-c", "echo $$; exec sleep 60"), logPath); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("a child dies with its parent only on Linux")
	}
	logPath := filepath.Join(t.TempDir(), "sh.log")
	parent := exec.Command(os.Args[0], "-test.run=^TestDiesWithParent$")
	parent.Env = append(os.Environ(), "PROC_TEST_PARENT_LOG="+logPath)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	var line string
	for !strings.HasSuffix(line, "\n") {
		if time.Now().After(deadline) {
			t.Fatal("the child wrote no pid")
		}
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(logPath)
		line = string(b)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	waitGone(t, strings.TrimSpace(line))
}

// waitGone fails the test unless the process pid is gone, or a zombie, within 5 seconds.
func waitGone(t *testing.T, pid string) {
	t.Helper()
	n, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatalf("pid %q: %v", pid, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			return
		}
		// The state follows the command name, which is in parentheses.
		if _, rest, _ := strings.Cut(string(stat), ") "); strings.HasPrefix(rest, "Z") {
			return
		}
		if time.Now().After(deadline) {
			if p, err := os.FindProcess(n); err == nil {
				_ = p.Kill()
			}
			t.Fatalf("process %d still running", n)
		}
	}
}

// TestPIDFile starts a detached process tracked by a pid file, finds it again with Lookup
// as a later run of the program would, and stops it through what Lookup returned: its
// process group goes with it and the pid file is removed.
func TestPIDFile(t *testing.T) {
	dir := t.TempDir()
	pidFile, logPath := filepath.Join(dir, "run", "sh.pid"), filepath.Join(dir, "logs", "sh.log")
	if proc.Lookup("sh", pidFile, logPath) != nil {
		t.Fatal("Lookup found a process before Start")
	}
	p, err := proc.Start("sh", exec.Command("sh", "-c", "sleep 60 & echo $!; exec sleep 60"), logPath, proc.WithPIDFile(pidFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	b, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(p.PID()) {
		t.Fatalf("pid file holds %q (%v), want %d", b, err, p.PID())
	}
	var child string
	for deadline := time.Now().Add(10 * time.Second); child == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no line in the log")
		}
		b, _ := os.ReadFile(logPath)
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			child = line
		}
	}
	found := proc.Lookup("sh", pidFile, logPath)
	if found == nil || found.PID() != p.PID() || found.Done() != nil {
		t.Fatalf("Lookup = %v, want the process %d without a Done channel", found, p.PID())
	}
	if done, _ := found.Exited(); done {
		t.Fatal("Lookup's process exited before Stop")
	}
	if err := found.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if done, _ := found.Exited(); !done {
		t.Error("running after Stop")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left after Stop (stat: %v)", err)
	}
	if proc.Lookup("sh", pidFile, logPath) != nil {
		t.Error("Lookup found the stopped process")
	}
	if runtime.GOOS == "linux" {
		waitGone(t, child)
	}
}

// TestWritePIDFile records the calling process, as the lab's foreground `up` records
// itself: Lookup finds it; a pid file that holds no pid finds nothing.
func TestWritePIDFile(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "run", "self.pid")
	if err := proc.WritePIDFile(pidFile); err != nil {
		t.Fatal(err)
	}
	p := proc.Lookup("self", pidFile, filepath.Join(dir, "self.log"))
	if p == nil || p.PID() != os.Getpid() {
		t.Fatalf("Lookup = %v, want this process", p)
	}
	if done, _ := p.Exited(); done {
		t.Fatal("this process counts as exited")
	}
	if b, _ := os.ReadFile(pidFile); string(b) != strconv.Itoa(os.Getpid())+" alone\n" {
		t.Errorf("pid file holds %q, want the pid marked alone (not its process group)", b)
	}
	if err := os.WriteFile(pidFile, []byte("not a pid\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if proc.Lookup("self", pidFile, "") != nil {
		t.Error("Lookup accepted a pid file that holds no pid")
	}
}

// TestWaitReadyContext stops waiting when the context ends, and leaves the process
// running.
func TestWaitReadyContext(t *testing.T) {
	p, _, _ := start(t, "echo ready; exec sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := p.WaitReadyContext(ctx, time.Minute, 10*time.Millisecond, func(context.Context) error { return errors.New("never") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReadyContext: %v, want the context's deadline", err)
	}
	if done, _ := p.Exited(); done {
		t.Error("the process exited")
	}
}
