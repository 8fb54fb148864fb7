package bench

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"omens.dev/omens/bench/softtpm"
	"omens.dev/omens/internal/haproxyproc"
	"omens.dev/omens/internal/pgproc"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpmrules"
)

// HA is two SPIRE servers behind one address, SPIRE's layout past one machine: a
// throwaway PostgreSQL cluster (internal/pgproc) holds SPIRE's datastore (DataStore
// "sql", database_type "postgres") and the plugin's boot-state state
// (pcr_state_database), both servers share them, each keeps its own CA key, and haproxy
// (internal/haproxyproc) is the address the agents dial. The plugin runs with a
// boot-state policy that admits the software TPMs' boot state for every host, so each
// attestation reads and writes the shared state. It implements Target and Killer.
type HA struct {
	Servers [2]*Server
	PG      *pgproc.Cluster
	LB      *haproxyproc.Proxy

	dir    string
	bundle []*x509.Certificate
	mu     sync.Mutex
	killed int // the index of the killed server, or -1
}

// Killer is a Target of which one server can be killed under load.
type Killer interface {
	// Kill ends one server with SIGKILL; the target keeps serving through the others.
	Kill() error
	// Survivor is the bundle a surviving server serves now.
	Survivor(ctx context.Context) ([]*x509.Certificate, error)
}

// HAServers is the NewTarget of HA: two servers with the plugin at pluginPath.
func HAServers(pluginPath string, progress io.Writer) NewTarget {
	return func(ctx context.Context, ekCA []byte) (Target, func() error, error) {
		h, err := StartHA(ctx, pluginPath, ekCA, progress)
		if err != nil {
			return nil, nil, err
		}
		return h, h.Stop, nil
	}
}

// StartHA starts the cluster, the two servers and haproxy, and waits until the trust
// bundle holds both servers' CAs. On an error it stops what it started.
func StartHA(ctx context.Context, pluginPath string, ekCA []byte, progress io.Writer) (*HA, error) {
	h := &HA{killed: -1}
	var err error
	fail := func(err error) (*HA, error) { return nil, errors.Join(err, h.Stop()) }
	if h.dir, err = os.MkdirTemp("", "omens-bench-ha-"); err != nil {
		return fail(err)
	}
	progressf(progress, "ha: starting PostgreSQL")
	if h.PG, err = pgproc.Start(ctx); err != nil {
		return fail(fmt.Errorf("bench: %w", err))
	}
	spireDB, err := h.PG.CreateDB(ctx, "spire")
	if err != nil {
		return fail(err)
	}
	pcrDB, err := h.PG.CreateDB(ctx, "pcr")
	if err != nil {
		return fail(err)
	}
	policyPath := filepath.Join(h.dir, "pcr-policy.hcl")
	if err := os.WriteFile(policyPath, []byte(benchPolicy()), 0o600); err != nil {
		return fail(err)
	}
	ds := spireconf.Postgres(spireDB)
	for i := range h.Servers {
		progressf(progress, "ha: starting spire-server %d of 2 (PostgreSQL datastore)", i+1)
		h.Servers[i], err = StartServer(ctx, ServerConfig{
			Dir:        filepath.Join(h.dir, fmt.Sprintf("server-%d", i)),
			PluginPath: pluginPath, EKCA: ekCA, DataStore: &ds,
			NoAttestationRateLimit: true,
			PCRPolicyPath:          policyPath, PCRStateDatabase: pcrDB,
		})
		if err != nil {
			return fail(err)
		}
	}
	progressf(progress, "ha: starting haproxy in front of %s and %s", h.Servers[0].Addr, h.Servers[1].Addr)
	if h.LB, err = haproxyproc.Start(ctx, h.Servers[0].Addr, h.Servers[1].Addr); err != nil {
		return fail(fmt.Errorf("bench: %w", err))
	}
	// Each server publishes its CA in the shared bundle; the agents must trust both.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h.bundle, err = h.Servers[1].readBundle(ctx); err != nil {
			return fail(err)
		}
		if len(h.bundle) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("bench: the trust bundle holds %d CA certificates after 30s, want both servers'", len(h.bundle)))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return h, nil
}

// benchPolicy admits the software TPMs' boot state (softtpm.BootPCRs) for every host, as
// group "bench".
func benchPolicy() string {
	var b strings.Builder
	b.WriteString("unknown_hosts = \"bench\"\n\ngroup \"bench\" {\n  set \"softtpm\" {\n    bank = \"sha256\"\n    pcrs = {\n")
	pcrs := softtpm.BootPCRs()
	for _, i := range tpmrules.DefaultPCRs() {
		fmt.Fprintf(&b, "      \"%d\" = %q\n", i, hex.EncodeToString(pcrs[i]))
	}
	b.WriteString("    }\n  }\n}\n")
	return b.String()
}

// Address implements Target: haproxy's.
func (h *HA) Address() string { return h.LB.Address }

// TrustDomain implements Target.
func (h *HA) TrustDomain() spiffeid.TrustDomain { return h.Servers[0].TD }

// Bundle implements Target: both servers' CAs.
func (h *HA) Bundle() []*x509.Certificate { return h.bundle }

// Restart implements Target: it restarts every server still running, one after the other.
func (h *HA) Restart(ctx context.Context) error {
	for i, s := range h.Servers {
		if i == h.killedIndex() {
			continue
		}
		if err := s.Restart(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (h *HA) killedIndex() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.killed
}

// Kill implements Killer: it kills the first server.
func (h *HA) Kill() error {
	h.mu.Lock()
	h.killed = 0
	h.mu.Unlock()
	return h.Servers[0].Kill()
}

// Survivor implements Killer: the bundle the second server serves.
func (h *HA) Survivor(ctx context.Context) ([]*x509.Certificate, error) {
	return h.Servers[1].readBundle(ctx)
}

// Usage implements Target: both servers' processes, CPU summed, peak memory the highest.
func (h *HA) Usage() (Usage, error) {
	var u Usage
	for _, s := range h.Servers {
		su, err := s.Usage()
		if err != nil {
			return Usage{}, err
		}
		u.add(su)
	}
	return u, nil
}

// Stop stops haproxy, the servers and the cluster, and removes their directories.
func (h *HA) Stop() error {
	var errs []error
	if h.LB != nil {
		errs = append(errs, h.LB.Stop())
	}
	for _, s := range h.Servers {
		if s != nil {
			errs = append(errs, s.Stop())
		}
	}
	if h.PG != nil {
		errs = append(errs, h.PG.Stop())
	}
	if h.dir != "" {
		errs = append(errs, os.RemoveAll(h.dir))
	}
	return errors.Join(errs...)
}
