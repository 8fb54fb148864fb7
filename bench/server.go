package bench

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"omens.dev/omens/internal/netport"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/protocol"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
)

// ServerConfig says how StartServer runs a SPIRE server for a benchmark.
type ServerConfig struct {
	// Dir holds server.conf, server.log, the datastore and the keys; a new temporary
	// directory, removed by Stop, when empty.
	Dir string
	// TrustDomain defaults to "bench.omens".
	TrustDomain string
	// PluginPath is the omens-attestor-server binary (its SHA-256 becomes plugin_checksum).
	PluginPath string
	// EKCA is the manufacturer CA (PEM) the identities' EK certificates chain to, written
	// to Dir as NodeAttestor "tpm"'s ca_path.
	EKCA []byte
	// DataStore replaces the default DataStore "sql" on sqlite3 in Dir (a shared
	// PostgreSQL for servers behind one address, say).
	DataStore *spireconf.Plugin
	// KeysPath replaces Dir's keys.json for KeyManager "disk" (servers of one trust
	// domain behind one address may share it).
	KeysPath string
	// LogLevel is SPIRE's log_level; INFO when empty.
	LogLevel string
	// NoAttestationRateLimit writes ratelimit { attestation = false }. SPIRE limits node
	// attestation to one a second per client address; behind a TCP load balancer every
	// agent has the balancer's address, so servers behind one need it off to be measured.
	NoAttestationRateLimit bool
	// PCRPolicyPath and PCRStateDatabase are NodeAttestor "tpm"'s pcr_policy_path and
	// pcr_state_database (the boot-state policy, its state in PostgreSQL); unset when empty.
	PCRPolicyPath, PCRStateDatabase string
}

// Server is one spire-server process with NodeAttestor "tpm", run for a benchmark. It
// implements Target.
type Server struct {
	Dir        string
	Addr       string // 127.0.0.1:port, where agents connect
	SocketPath string // the server API socket
	TD         spiffeid.TrustDomain

	bin, conf, logPath string
	removeDir          bool

	mu      sync.Mutex
	proc    *proc.Process
	past    Usage // of the server processes that ran before this one
	bundle  []*x509.Certificate
	restart int
}

// DefaultTrustDomain is the trust domain of a benchmark server.
const DefaultTrustDomain = "bench.omens"

// StartServer renders a server configuration with spireconf (SPIRE's sqlite3 datastore
// and disk key manager in Dir, NodeAttestor "tpm" in EK mode with hostconf's PCR selection),
// starts spire-server and waits until `spire-server healthcheck` passes.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	bin, err := engines.Path(engines.SPIREServer)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = DefaultTrustDomain
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("bench: trust domain: %w", err)
	}
	s := &Server{Dir: cfg.Dir, TD: td, bin: bin}
	if s.Dir == "" {
		// Short: the API socket's path must fit a sockaddr_un.
		if s.Dir, err = os.MkdirTemp("", "omens-bench-"); err != nil {
			return nil, err
		}
		s.removeDir = true
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.SocketPath = filepath.Join(s.Dir, "api.sock")
	s.conf = filepath.Join(s.Dir, "server.conf")
	s.logPath = filepath.Join(s.Dir, "server.log")
	conf, err := s.render(cfg, port)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	if err := os.WriteFile(s.conf, conf, 0o600); err != nil {
		s.cleanup()
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		s.cleanup()
		return nil, err
	}
	if s.bundle, err = s.readBundle(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) render(cfg ServerConfig, port int) ([]byte, error) {
	if cfg.PluginPath == "" {
		return nil, errors.New("bench: the path of " + hostconf.ServerPlugin + " is missing")
	}
	sum, err := spireconf.Checksum(cfg.PluginPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w (build it beside omens: make build, or give --plugin)", err)
	}
	if len(cfg.EKCA) == 0 {
		return nil, errors.New("bench: the EK CA is missing")
	}
	caPath := filepath.Join(s.Dir, "ek-ca.pem")
	if err := os.WriteFile(caPath, cfg.EKCA, 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(s.Dir, "data")
	store := spireconf.SQLite(filepath.Join(data, "datastore.sqlite3"))
	if cfg.DataStore != nil {
		store = *cfg.DataStore
	}
	keys := cfg.KeysPath
	if keys == "" {
		keys = filepath.Join(data, "keys.json")
	}
	level := cfg.LogLevel
	if level == "" {
		level = "INFO"
	}
	conf := spireconf.Server{
		Header:      "A SPIRE server for omens bench attest.",
		TrustDomain: s.TD.Name(), BindAddress: "127.0.0.1", BindPort: port,
		SocketPath: s.SocketPath, DataDir: data, LogLevel: level,
		Plugins: []spireconf.Plugin{
			store,
			spireconf.ServerDiskKeyManager(keys),
			{Type: "NodeAttestor", Name: "tpm", Cmd: cfg.PluginPath, Checksum: sum, Data: []spireconf.Setting{
				{Key: "devid_mode", Value: protocol.ModeEKCert},
				{Key: "ca_path", Value: caPath},
				{Key: "pcr_bank", Value: tpmrules.DefaultPCRBank},
				{Key: "pcr_selection", Value: tpmrules.DefaultPCRs()},
			}},
		},
	}
	tpm := &conf.Plugins[len(conf.Plugins)-1]
	if cfg.PCRPolicyPath != "" {
		tpm.Data = append(tpm.Data, spireconf.Setting{Key: "pcr_policy_path", Value: cfg.PCRPolicyPath})
	}
	if cfg.PCRStateDatabase != "" {
		tpm.Data = append(tpm.Data, spireconf.Setting{Key: "pcr_state_database", Value: cfg.PCRStateDatabase})
	}
	if cfg.NoAttestationRateLimit {
		conf.Extra = append(conf.Extra, spireconf.Setting{Key: "ratelimit", Value: []spireconf.Setting{{Key: "attestation", Value: false}}})
	}
	b, err := conf.Render()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return b, nil
}

func freePort() (int, error) {
	port, err := netport.Free()
	if err != nil {
		return 0, fmt.Errorf("bench: a free port: %w", err)
	}
	return port, nil
}

func (s *Server) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(s.Dir, "data"), 0o700); err != nil {
		return err
	}
	p, err := proc.Start("spire-server", exec.Command(s.bin, "run", "-config", s.conf), s.logPath)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	err = p.WaitReadyContext(ctx, 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		return exec.CommandContext(ctx, s.bin, "healthcheck", "-socketPath", s.SocketPath).Run()
	})
	if err != nil {
		_ = p.Stop(10 * time.Second)
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// readBundle is the server's X.509 trust bundle (`spire-server bundle show`), with which
// agents authenticate it.
func (s *Server) readBundle(ctx context.Context) ([]*x509.Certificate, error) {
	out, err := exec.CommandContext(ctx, s.bin, "bundle", "show", "-format", "pem", "-socketPath", s.SocketPath).Output()
	if err != nil {
		return nil, fmt.Errorf("bench: spire-server bundle show: %w", err)
	}
	var certs []*x509.Certificate
	for rest := out; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bench: spire-server bundle show: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("bench: spire-server bundle show printed no certificate")
	}
	return certs, nil
}

// Address implements Target.
func (s *Server) Address() string { return s.Addr }

// TrustDomain implements Target.
func (s *Server) TrustDomain() spiffeid.TrustDomain { return s.TD }

// Bundle implements Target.
func (s *Server) Bundle() []*x509.Certificate { return s.bundle }

// Restart implements Target: it stops the server (SIGTERM, as systemd would), counting what
// the processes used, and starts it again with the same configuration, datastore and keys.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.stopProcess(); err != nil {
		return err
	}
	s.mu.Lock()
	s.restart++
	s.mu.Unlock()
	return s.start(ctx)
}

// Restarts is the number of restarts so far.
func (s *Server) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restart
}

func (s *Server) stopProcess() error { return s.end(0, 30*time.Second) }

// end stops the running server process, counting what it and its plugin used first:
// with kill not 0, after sending it that signal (SIGKILL: a crash); Stop then reaps it and
// kills what is left of its process group (the plugin).
func (s *Server) end(kill syscall.Signal, wait time.Duration) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if u, err := s.current(p); err == nil {
		s.mu.Lock()
		s.past.add(u)
		s.mu.Unlock()
	}
	if kill != 0 {
		if err := syscall.Kill(p.PID(), kill); err != nil {
			return fmt.Errorf("bench: kill spire-server: %w", err)
		}
	}
	err := p.Stop(wait)
	s.mu.Lock()
	s.proc = nil
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// current is the usage of the running server process p and of its plugin.
func (s *Server) current(p *proc.Process) (Usage, error) {
	var u Usage
	var err error
	if u.Server, err = readProcUsage(p.PID()); err != nil {
		return Usage{}, fmt.Errorf("bench: spire-server: %w", err)
	}
	pids, err := childrenNamed(p.PID(), hostconf.ServerPlugin)
	if err != nil {
		return Usage{}, err
	}
	if len(pids) != 1 {
		return Usage{}, fmt.Errorf("bench: spire-server (pid %d) runs %d %s processes, want 1", p.PID(), len(pids), hostconf.ServerPlugin)
	}
	if u.Plugin, err = readProcUsage(pids[0]); err != nil {
		return Usage{}, fmt.Errorf("bench: %s: %w", hostconf.ServerPlugin, err)
	}
	return u, nil
}

// Kill ends the server with SIGKILL, as a crash or a lost machine would, counting what
// its processes used; it stays down.
func (s *Server) Kill() error { return s.end(syscall.SIGKILL, 5*time.Second) }

// Usage implements Target: the server and plugin processes that ran so far, the running
// ones included.
func (s *Server) Usage() (Usage, error) {
	s.mu.Lock()
	p, u := s.proc, s.past
	s.mu.Unlock()
	if p == nil {
		return u, nil
	}
	now, err := s.current(p)
	if err != nil {
		return Usage{}, err
	}
	u.add(now)
	return u, nil
}

// Log is the path of the server's log.
func (s *Server) Log() string { return s.logPath }

// Stop stops the server and removes its directory if StartServer made it.
func (s *Server) Stop() error {
	err := s.stopProcess()
	s.cleanup()
	return err
}

func (s *Server) cleanup() {
	if s.removeDir {
		_ = os.RemoveAll(s.Dir)
	}
}

// NewTarget starts what a run attests against, trusting the manufacturer CA ekCA (PEM);
// stop ends it.
type NewTarget func(ctx context.Context, ekCA []byte) (t Target, stop func() error, err error)

// SingleServer is one SPIRE server (StartServer) with the plugin at pluginPath.
func SingleServer(pluginPath string) NewTarget {
	return func(ctx context.Context, ekCA []byte) (Target, func() error, error) {
		s, err := StartServer(ctx, ServerConfig{PluginPath: pluginPath, EKCA: ekCA})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Stop, nil
	}
}

// Run makes opt.Agents identities from a new manufacturer CA (with opt.EKCA keys), starts
// the target trusting it, runs Attest and stops the target.
func Run(ctx context.Context, newTarget NewTarget, opt Options) (*Report, error) {
	if opt.EKCA == "" {
		opt.EKCA = mfgca.RSA2048
	}
	ca, err := mfgca.NewEphemeral("omens bench manufacturer", mfgca.WithKeyAlgorithm(opt.EKCA))
	if err != nil {
		return nil, err
	}
	ids, err := Identities(ctx, ca, opt.Agents, opt.Progress)
	if err != nil {
		return nil, err
	}
	t, stop, err := newTarget(ctx, ca.BundlePEM())
	if err != nil {
		return nil, err
	}
	rep, err := Attest(ctx, t, ids, opt)
	return rep, errors.Join(err, stop())
}
