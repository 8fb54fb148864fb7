// Package haproxytest runs Debian's haproxy for tests: one TCP frontend on a free
// loopback port in front of the given backends, round robin, each backend health-checked
// every 500ms, with its configuration and log in a temporary directory; stopped when the
// test ends. It stands where an operator's load balancer stands: several SPIRE servers,
// or RA replicas, behind one address.
package haproxytest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/test/enginetest"
)

// Bin is Debian's haproxy; OMENS_HAPROXY overrides it.
const Bin = "/usr/sbin/haproxy"

// Proxy is a running haproxy.
type Proxy struct {
	Address string // 127.0.0.1:port, the frontend
	Port    int
	Dir     string // haproxy.cfg, haproxy.log
	Config  string // the configuration it runs
}

// Config renders the configuration: a TCP frontend on port, round robin over backends
// (host:port), each health-checked; a connection to a backend that fails is retried on
// another (option redispatch), so a dead backend costs a client at most a reconnect.
func Config(port int, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4096

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    retries 3
    option redispatch

frontend omens
    bind 127.0.0.1:%d
    default_backend servers

backend servers
    balance roundrobin
    default-server inter 500ms fall 2 rise 2
`, port)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server s%d %s check\n", i, be)
	}
	return b.String()
}

// Start runs haproxy in front of backends, or ends the test (enginetest.Missing) when
// haproxy is not installed.
func Start(t testing.TB, backends ...string) *Proxy {
	t.Helper()
	bin := Bin
	if b := os.Getenv("OMENS_HAPROXY"); b != "" {
		bin = b
	}
	if _, err := os.Stat(bin); err != nil {
		enginetest.Missing(t, fmt.Sprintf("haproxytest: haproxy is missing (apt-get install haproxy, or set OMENS_HAPROXY): %v", err))
	}
	p := &Proxy{Dir: t.TempDir(), Port: freePort(t)}
	p.Address = fmt.Sprintf("127.0.0.1:%d", p.Port)
	p.Config = Config(p.Port, backends)
	cfg := filepath.Join(p.Dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(p.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxytest: haproxy -c: %v\n%s", err, out)
	}
	// -db: stay in the foreground, log to standard error.
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Dir = p.Dir
	logPath := filepath.Join(p.Dir, "haproxy.log")
	pr, err := proc.Start("haproxy", cmd, logPath)
	if err != nil {
		t.Fatalf("haproxytest: %v", err)
	}
	t.Cleanup(func() {
		if err := pr.Stop(10 * time.Second); err != nil {
			t.Errorf("haproxytest: %v", err)
		}
		if t.Failed() {
			t.Log(proc.Tail(logPath))
		}
	})
	err = pr.WaitReady(30*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Address)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("haproxytest: %v", err)
	}
	return p
}

func freePort(t testing.TB) int { return enginetest.FreePort(t) }
