// Package haproxyproc runs Debian's haproxy as a TCP load balancer: one frontend on a free
// loopback port in front of the given backends, round robin, each backend health-checked
// every 500ms, with its configuration and log in a new temporary directory that Stop
// removes. It stands where an operator's load balancer stands: several SPIRE servers, or
// RA replicas, behind one address. `omens bench attest --ha` runs one, and the tests
// through internal/test/haproxytest.
package haproxyproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"omens.dev/omens/internal/netport"
	"omens.dev/omens/internal/proc"
)

// Bin is Debian's haproxy; OMENS_HAPROXY overrides it.
const Bin = "/usr/sbin/haproxy"

// ErrMissing is in the error of Start when haproxy is not installed.
var ErrMissing = errors.New("haproxy is not installed (apt-get install haproxy, or set OMENS_HAPROXY)")

// Proxy is a running haproxy.
type Proxy struct {
	Address string // 127.0.0.1:port, the frontend
	Port    int
	Dir     string // haproxy.cfg, haproxy.log
	Config  string // the configuration it runs

	proc *proc.Process
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

// Log is the path of haproxy's log.
func (p *Proxy) Log() string { return filepath.Join(p.Dir, "haproxy.log") }

// Installed returns the path of haproxy, or an error wrapping ErrMissing.
func Installed() (string, error) {
	bin := Bin
	if b := os.Getenv("OMENS_HAPROXY"); b != "" {
		bin = b
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("haproxyproc: %w: %v", ErrMissing, err)
	}
	return bin, nil
}

// Start checks the configuration (haproxy -c), runs haproxy in front of backends and
// waits until its frontend accepts a connection. Its error wraps ErrMissing when haproxy
// is not found.
func Start(ctx context.Context, backends ...string) (p *Proxy, err error) {
	bin, err := Installed()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "omens-haproxy-")
	if err != nil {
		return nil, err
	}
	p = &Proxy{Dir: dir}
	defer func() {
		if err != nil {
			_ = p.Stop()
		}
	}()
	if p.Port, err = netport.Free(); err != nil {
		return nil, fmt.Errorf("haproxyproc: a free port: %w", err)
	}
	p.Address = fmt.Sprintf("127.0.0.1:%d", p.Port)
	p.Config = Config(p.Port, backends)
	cfg := filepath.Join(p.Dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(p.Config), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxyproc: haproxy -c: %w\n%s", err, out)
	}
	// -db: stay in the foreground, log to standard error.
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Dir = p.Dir
	if p.proc, err = proc.Start("haproxy", cmd, p.Log()); err != nil {
		return nil, fmt.Errorf("haproxyproc: %w", err)
	}
	err = p.proc.WaitReadyContext(ctx, 30*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Address)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("haproxyproc: %w", err)
	}
	return p, nil
}

// Stop ends haproxy and removes its directory.
func (p *Proxy) Stop() error {
	var err error
	if p.proc != nil {
		if err = p.proc.Stop(10 * time.Second); err != nil {
			err = fmt.Errorf("haproxyproc: %w", err)
		}
		p.proc = nil
	}
	return errors.Join(err, os.RemoveAll(p.Dir))
}
