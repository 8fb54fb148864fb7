package spiretest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/spireconf"
)

// AgentConfig shapes the agent.conf that StartAgent writes.
type AgentConfig struct {
	// NodeAttestor is the agent's node attestor plugin, such as NodeAttestor "tpm" with
	// its plugin_cmd and plugin_data. Nil means join_token, with JoinToken.
	NodeAttestor *spireconf.Plugin
	// JoinToken is the agent's join_token setting (see Server.JoinToken).
	JoinToken string
	// ServerAddress is the server's address, host:port, when the agent reaches the server
	// through something else (a load balancer in front of several servers); empty means
	// the server's own address.
	ServerAddress string
	// Name labels the agent in its directory name and in failure messages.
	Name string
	// FailFast sets retry_bootstrap = false (deprecated in SPIRE 1.13, which logs a
	// warning): the agent exits at the first rejected attestation instead of retrying with
	// backoff for about a minute.
	FailFast bool
	// Extra holds extra settings for the agent block, which already has an experimental
	// block (sync_interval = "1s").
	Extra []spireconf.Setting
	// Metrics turns on SPIRE's Prometheus endpoint on a free loopback port
	// (Agent.MetricsURL).
	Metrics bool
}

// Agent is a spire-agent process with its own directory.
type Agent struct {
	Dir            string // holds agent.conf, agent.log and the agent's data
	WorkloadSocket string // the Workload API socket
	AdminSocket    string // the admin API socket
	// MetricsURL is SPIRE's Prometheus endpoint with AgentConfig.Metrics; empty without.
	MetricsURL string

	engine
}

// Agent socket names, relative to Agent.Dir. SPIRE refuses an admin socket in the
// directory of the Workload API socket.
const (
	workloadSocketName = "public/api.sock"
	adminSocketName    = "private/admin.sock"
)

// StartAgent starts a SPIRE agent of srv and waits until `spire-agent healthcheck` passes,
// which it does once the agent has attested. The agent stops, and its directory is
// removed, when the test ends.
func StartAgent(t testing.TB, srv *Server, cfg AgentConfig) *Agent {
	t.Helper()
	a := LaunchAgent(t, srv, cfg)
	a.waitHealthy(t)
	return a
}

// LaunchAgent is StartAgent without the wait, for tests in which attestation is meant to
// fail: see WaitExit.
func LaunchAgent(t testing.TB, srv *Server, cfg AgentConfig) *Agent {
	t.Helper()
	a := &Agent{engine: engine{name: "spire-agent", bin: enginePath(t, engines.SPIREAgent)}}
	if cfg.Name != "" {
		a.name += " " + cfg.Name
	}
	prefix := "spire-agent-"
	if cfg.Name != "" {
		prefix += cfg.Name + "-"
	}
	a.Dir = tempDir(t, prefix, len(adminSocketName))
	a.WorkloadSocket = filepath.Join(a.Dir, workloadSocketName)
	a.AdminSocket = filepath.Join(a.Dir, adminSocketName)
	a.logPath = filepath.Join(a.Dir, "agent.log")
	for _, d := range []string{"data", filepath.Dir(a.WorkloadSocket), filepath.Dir(a.AdminSocket)} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := a.config(t, srv, cfg, srv.BundlePath(t))
	if err != nil {
		t.Fatal(err)
	}
	a.conf = filepath.Join(a.Dir, "agent.conf")
	if err := os.WriteFile(a.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	a.stopAtCleanup(t)
	a.launch(t)
	return a
}

// config renders agent.conf with spireconf.
func (a *Agent) config(t testing.TB, srv *Server, cfg AgentConfig, bundlePath string) (string, error) {
	host, port := "127.0.0.1", srv.port
	if cfg.ServerAddress != "" {
		h, p, err := net.SplitHostPort(cfg.ServerAddress)
		if err != nil {
			return "", fmt.Errorf("spiretest: ServerAddress %q: %w", cfg.ServerAddress, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return "", fmt.Errorf("spiretest: ServerAddress %q: %w", cfg.ServerAddress, err)
		}
		host = h
	}
	conf := spireconf.Agent{
		TrustDomain: srv.TrustDomain, ServerAddress: host, ServerPort: port,
		DataDir: filepath.Join(a.Dir, "data"), LogLevel: "DEBUG",
		SocketPath: a.WorkloadSocket, AdminSocketPath: a.AdminSocket, TrustBundlePath: bundlePath,
		JoinToken: cfg.JoinToken, NoRetryBootstrap: cfg.FailFast,
		// Entries reach the agent at each sync; the default interval is 5s.
		SyncInterval: time.Second,
		Extra:        cfg.Extra,
	}
	switch {
	case cfg.NodeAttestor != nil:
		conf.Plugins = append(conf.Plugins, *cfg.NodeAttestor)
	case cfg.JoinToken != "":
		conf.Plugins = append(conf.Plugins, spireconf.JoinToken())
	default:
		return "", fmt.Errorf("spiretest: agent config has neither a NodeAttestor nor a JoinToken")
	}
	conf.Plugins = append(conf.Plugins, spireconf.AgentDiskKeyManager(filepath.Join(a.Dir, "data")), spireconf.UnixWorkloadAttestor())
	if cfg.Metrics {
		port := freePort(t)
		conf.Telemetry = &spireconf.Telemetry{PrometheusHost: "127.0.0.1", PrometheusPort: port}
		a.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	}
	b, err := conf.Render()
	return string(b), err
}

// Metrics returns what SPIRE's Prometheus endpoint serves now (AgentConfig.Metrics).
func (a *Agent) Metrics(t testing.TB) string {
	t.Helper()
	if a.MetricsURL == "" {
		t.Fatal("spiretest: the agent runs without AgentConfig.Metrics")
	}
	return scrape(t, a.MetricsURL)
}

// WaitHealthy waits until `spire-agent healthcheck` passes, for an agent started with
// LaunchAgent that is meant to attest.
func (a *Agent) WaitHealthy(t testing.TB) {
	t.Helper()
	a.waitHealthy(t)
}

func (a *Agent) waitHealthy(t testing.TB) {
	t.Helper()
	waitReady(t, a.proc, a.bin, a.logPath, func(ctx context.Context) error {
		_, err := runTool(ctx, a.bin, "healthcheck", "-socketPath", a.WorkloadSocket)
		return err
	})
}

// Start starts a stopped agent again from its directory, where it finds its SVID, and
// waits until it is healthy.
func (a *Agent) Start(t testing.TB) {
	t.Helper()
	a.launch(t)
	a.waitHealthy(t)
}

// Launch starts a stopped agent again from its directory without waiting, for a restart
// in which attestation is meant to fail: see WaitExit.
func (a *Agent) Launch(t testing.TB) {
	t.Helper()
	a.launch(t)
}

// Stop stops the agent (SIGTERM, then waits) and leaves its directory in place for Start.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
}

// WaitExit waits for the agent process to exit by itself, as it does when the server
// rejects its attestation, and returns how it exited (an *exec.ExitError for a non-zero
// status). It fails the test if the agent is still running after timeout.
func (a *Agent) WaitExit(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-a.proc.Done():
		_, err := a.proc.Exited()
		return err
	case <-time.After(timeout):
		t.Fatalf("spiretest: %s still running after %v\n%s", a.name, timeout, proc.Tail(a.logPath))
		return nil
	}
}

// Log returns the agent's log so far.
func (a *Agent) Log() string { return readLog(a.logPath) }

// WaitLog polls the agent's log until it contains substr, failing the test after timeout.
func (a *Agent) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	waitLog(t, a.logPath, substr, timeout)
}

// svidLine matches the agent log lines that name the agent's own SPIFFE ID: after node
// attestation, re-attestation, and loading a stored SVID at start.
var svidLine = regexp.MustCompile(`msg="(?:Node attestation was successful|Successfully reattested node|SVID loaded)".*\bspiffe_id="?(spiffe://[^"\s]+)`)

// SPIFFEID returns the agent's own SPIFFE ID, as its log last reported it.
func (a *Agent) SPIFFEID(t testing.TB) string {
	t.Helper()
	m := svidLine.FindAllStringSubmatch(a.Log(), -1)
	if m == nil {
		t.Fatalf("spiretest: %s has not logged its SPIFFE ID\n%s", a.name, proc.Tail(a.logPath))
	}
	return m[len(m)-1][1]
}
