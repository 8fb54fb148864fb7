package spiretest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/spireconf"
)

// DefaultTrustDomain is the trust domain of a server whose config names none.
const DefaultTrustDomain = "funlab.casa"

// ServerConfig shapes the server.conf that StartServer writes. Empty fields keep SPIRE's
// defaults.
type ServerConfig struct {
	// TrustDomain defaults to DefaultTrustDomain.
	TrustDomain string
	// NodeAttestors are extra node attestor plugins, such as NodeAttestor "tpm" with its
	// plugin_cmd and plugin_data.
	NodeAttestors []spireconf.Plugin
	// Plugins are other plugins, such as CredentialComposer "uniqueid".
	Plugins []spireconf.Plugin
	// NoJoinToken leaves out the join_token node attestor, which is otherwise configured.
	NoJoinToken bool
	// AgentTTL is agent_ttl, the lifetime of agent SVIDs (SPIRE's default is
	// default_x509_svid_ttl). An agent renews its SVID, or re-attests when its node
	// attestor can, at about half of it.
	AgentTTL string
	// DefaultX509SVIDTTL is default_x509_svid_ttl, the lifetime of workload X.509-SVIDs
	// (SPIRE's default is 1h).
	DefaultX509SVIDTTL string
	// DataStore is the server's DataStore plugin, such as spireconf.Postgres for servers
	// that share one database; nil means sqlite3 in the server's directory.
	DataStore *spireconf.Plugin
	// Extra holds extra settings for the server block, such as audit_log_enabled = true.
	// The server block already has an experimental block (cache_reload_interval = "1s").
	Extra []spireconf.Setting
	// Metrics turns on SPIRE's Prometheus endpoint on a free loopback port
	// (Server.MetricsURL).
	Metrics bool
}

// Server is a spire-server process with its own directory, datastore and keys.
type Server struct {
	Dir         string // holds server.conf, server.log, the datastore and the keys
	Address     string // 127.0.0.1:port, where agents connect
	SocketPath  string // the server API socket, for the spire-server CLI
	TrustDomain string
	// MetricsURL is SPIRE's Prometheus endpoint, http://127.0.0.1:port/metrics, with
	// ServerConfig.Metrics; empty without.
	MetricsURL string

	port int
	engine
}

// StartServer starts a SPIRE server and waits until `spire-server healthcheck` passes. The
// server stops, and its directory is removed, when the test ends.
func StartServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	s := &Server{
		TrustDomain: cfg.TrustDomain,
		engine:      engine{name: "spire-server", bin: enginePath(t, engines.SPIREServer)},
	}
	if s.TrustDomain == "" {
		s.TrustDomain = DefaultTrustDomain
	}
	s.Dir = tempDir(t, "spire-server-", len("api.sock"))
	s.SocketPath = filepath.Join(s.Dir, "api.sock")
	s.logPath = filepath.Join(s.Dir, "server.log")
	s.port = freePort(t)
	s.Address = fmt.Sprintf("127.0.0.1:%d", s.port)
	s.conf = filepath.Join(s.Dir, "server.conf")
	conf, err := s.config(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.stopAtCleanup(t)
	s.Start(t)
	return s
}

// config renders server.conf with spireconf.
func (s *Server) config(t testing.TB, cfg ServerConfig) (string, error) {
	conf := spireconf.Server{
		TrustDomain: s.TrustDomain, BindAddress: "127.0.0.1", BindPort: s.port,
		SocketPath: s.SocketPath, DataDir: filepath.Join(s.Dir, "data"), LogLevel: "DEBUG",
		// New entries reach agents after the server's entry cache reloads; the default
		// interval is 5s.
		CacheReloadInterval: time.Second,
		Extra:               cfg.Extra,
		Plugins: []spireconf.Plugin{
			spireconf.SQLite(filepath.Join(s.Dir, "data", "datastore.sqlite3")),
			spireconf.ServerDiskKeyManager(filepath.Join(s.Dir, "data", "keys.json")),
		},
	}
	if cfg.DataStore != nil {
		conf.Plugins[0] = *cfg.DataStore
	}
	var err error
	if conf.AgentTTL, err = parseTTL("AgentTTL", cfg.AgentTTL); err != nil {
		return "", err
	}
	if conf.DefaultX509SVIDTTL, err = parseTTL("DefaultX509SVIDTTL", cfg.DefaultX509SVIDTTL); err != nil {
		return "", err
	}
	if !cfg.NoJoinToken {
		conf.Plugins = append(conf.Plugins, spireconf.JoinToken())
	}
	conf.Plugins = append(conf.Plugins, cfg.NodeAttestors...)
	conf.Plugins = append(conf.Plugins, cfg.Plugins...)
	if cfg.Metrics {
		port := freePort(t)
		conf.Telemetry = &spireconf.Telemetry{PrometheusHost: "127.0.0.1", PrometheusPort: port}
		s.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	}
	b, err := conf.Render()
	return string(b), err
}

// Start starts the server from its directory: a stopped server comes back with the same
// address, data and keys.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.launch(t)
	waitReady(t, s.proc, s.bin, s.logPath, func(ctx context.Context) error {
		_, err := runTool(ctx, s.bin, "healthcheck", "-socketPath", s.SocketPath)
		return err
	})
}

// Stop stops the server (SIGTERM, then waits) and leaves its directory in place for Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// Kill ends the server with SIGKILL, as a crash or a lost machine would, and leaves its
// directory in place for Start.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if s.proc == nil {
		return
	}
	// Stop with no grace: SIGTERM, then at once SIGKILL to the process and its plugins.
	_ = s.proc.Stop(0)
}

// Port is the server's port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// RunErr runs `spire-server <args> -socketPath <SocketPath>` and returns its standard
// output; the error holds the standard error too.
func (s *Server) RunErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return runTool(ctx, s.bin, append(args, "-socketPath", s.SocketPath)...)
}

// Run runs `spire-server <args> -socketPath <SocketPath>` and returns its standard output.
// It fails the test, showing the output, if the command fails.
func (s *Server) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.RunErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runJSON runs a spire-server command with `-output json` and decodes its output into v.
func (s *Server) runJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := s.Run(t, append(args, "-output", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("spiretest: spire-server %s: decode output: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// JoinToken generates a join token with `token generate`. A non-empty spiffeID also makes
// it a node alias: the agent that uses the token gets an entry with that SPIFFE ID.
func (s *Server) JoinToken(t testing.TB, spiffeID string) string {
	t.Helper()
	args := []string{"token", "generate"}
	if spiffeID != "" {
		args = append(args, "-spiffeID", spiffeID)
	}
	var out struct {
		Value string `json:"value"`
	}
	s.runJSON(t, &out, args...)
	if out.Value == "" {
		t.Fatal("spiretest: token generate printed no token")
	}
	return out.Value
}

// BundlePath writes the server's current trust bundle (`bundle show`, PEM) to a file in
// Dir and returns its path, for an agent's trust_bundle_path.
func (s *Server) BundlePath(t testing.TB) string {
	t.Helper()
	pem := s.Run(t, "bundle", "show", "-format", "pem")
	path := filepath.Join(s.Dir, "bundle.pem")
	if err := os.WriteFile(path, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Metrics returns what SPIRE's Prometheus endpoint serves now (ServerConfig.Metrics).
func (s *Server) Metrics(t testing.TB) string {
	t.Helper()
	if s.MetricsURL == "" {
		t.Fatal("spiretest: the server runs without ServerConfig.Metrics")
	}
	return scrape(t, s.MetricsURL)
}

// Log returns the server's log so far.
func (s *Server) Log() string { return readLog(s.logPath) }

// WaitLog polls the server's log until it contains substr, failing the test after
// timeout.
func (s *Server) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	waitLog(t, s.logPath, substr, timeout)
}

// AgentInfo describes an attested agent as `spire-server agent list` shows it.
type AgentInfo struct {
	ID              string   // spiffe://<trust domain>/spire/agent/...
	AttestationType string   // the node attestor, such as "join_token" or "tpm"
	Selectors       []string // "type:value", such as "tpm:pub_hash:ab12…"
	Banned          bool
	CanReattest     bool
	SerialNumber    string    // of the agent's current SVID
	ExpiresAt       time.Time // of the agent's current SVID
}

// Agents lists the attested agents with `agent list -output json`.
func (s *Server) Agents(t testing.TB) []AgentInfo {
	t.Helper()
	var out struct {
		Agents []struct {
			ID struct {
				TrustDomain string `json:"trust_domain"`
				Path        string `json:"path"`
			} `json:"id"`
			AttestationType string `json:"attestation_type"`
			Serial          string `json:"x509svid_serial_number"`
			ExpiresAt       int64  `json:"x509svid_expires_at,string"`
			Selectors       []struct {
				Type  string `json:"type"`
				Value string `json:"value"`
			} `json:"selectors"`
			Banned      bool `json:"banned"`
			CanReattest bool `json:"can_reattest"`
		} `json:"agents"`
	}
	s.runJSON(t, &out, "agent", "list")
	agents := make([]AgentInfo, 0, len(out.Agents))
	for _, a := range out.Agents {
		info := AgentInfo{
			ID:              "spiffe://" + a.ID.TrustDomain + a.ID.Path,
			AttestationType: a.AttestationType,
			Banned:          a.Banned,
			CanReattest:     a.CanReattest,
			SerialNumber:    a.Serial,
			ExpiresAt:       time.Unix(a.ExpiresAt, 0),
		}
		for _, sel := range a.Selectors {
			info.Selectors = append(info.Selectors, sel.Type+":"+sel.Value)
		}
		agents = append(agents, info)
	}
	return agents
}

// Agent returns the attested agent with SPIFFE ID id, failing the test if there is none.
func (s *Server) Agent(t testing.TB, id string) AgentInfo {
	t.Helper()
	var ids []string
	for _, a := range s.Agents(t) {
		if a.ID == id {
			return a
		}
		ids = append(ids, a.ID)
	}
	t.Fatalf("spiretest: agent %s not listed; agents: %v", id, ids)
	return AgentInfo{}
}

// CreateEntry creates a workload registration entry with `entry create` and returns its
// ID. Each selector is "type:value", such as "unix:uid:1000".
func (s *Server) CreateEntry(t testing.TB, parentID, spiffeID string, selectors ...string) string {
	t.Helper()
	return s.createEntry(t, append([]string{"-parentID", parentID, "-spiffeID", spiffeID}, selectorArgs(selectors)...))
}

// CreateNodeAlias creates a node entry (`entry create -node`) that gives spiffeID to every
// agent whose node selectors include all of selectors, and returns its ID. Workload
// entries may then name spiffeID as their parent.
func (s *Server) CreateNodeAlias(t testing.TB, spiffeID string, selectors ...string) string {
	t.Helper()
	return s.createEntry(t, append([]string{"-node", "-spiffeID", spiffeID}, selectorArgs(selectors)...))
}

func selectorArgs(selectors []string) []string {
	var args []string
	for _, sel := range selectors {
		args = append(args, "-selector", sel)
	}
	return args
}

func (s *Server) createEntry(t testing.TB, args []string) string {
	t.Helper()
	var out struct {
		Results []struct {
			Status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
			Entry struct {
				ID string `json:"id"`
			} `json:"entry"`
		} `json:"results"`
	}
	s.runJSON(t, &out, append([]string{"entry", "create"}, args...)...)
	if len(out.Results) != 1 {
		t.Fatalf("spiretest: entry create %v: %d results, want 1", args, len(out.Results))
	}
	r := out.Results[0]
	if r.Status.Code != 0 || r.Entry.ID == "" {
		t.Fatalf("spiretest: entry create %v: code %d: %s", args, r.Status.Code, r.Status.Message)
	}
	return r.Entry.ID
}
