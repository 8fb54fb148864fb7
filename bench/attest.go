// Package bench measures omens under load through the real engines. Its first benchmark,
// Attest (`omens bench attest`), drives many distinct TPM identities through a SPIRE
// server's agent API: the AttestAgent stream a SPIRE agent opens (spire-api-sdk agent/v1),
// carrying NodeAttestor "tpm"'s messages (package protocol) to the real server plugin.
// Each identity is a software TPM (bench/softtpm) with its own EK, EK certificate and AK.
//
// A Target is what the agents reach: one SPIRE server (Server), or several behind one
// address; it says where to connect, how to restart, and what its processes used.
package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"omens.dev/omens/bench/softtpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

// Target is what the load reaches: the agents' server address, the trust domain and
// bundle that authenticate the server, a restart, and the usage of the server and plugin
// processes.
type Target interface {
	Address() string
	TrustDomain() spiffeid.TrustDomain
	Bundle() []*x509.Certificate
	Restart(ctx context.Context) error
	Usage() (Usage, error)
}

// Options shape a run of Attest.
type Options struct {
	// Agents is the number of distinct identities; Concurrency how many attest at once.
	Agents, Concurrency int
	// RestartAt, when positive, restarts the target once that many agents have attested;
	// the attempts the restart loses are retried until every agent is attested.
	RestartAt int
	// KillAt, when positive, kills one server of a Killer target (SIGKILL) once that many
	// agents have attested; the run goes on through the others.
	KillAt int
	// ReattestFor, when positive, has every attested agent re-attest again and again for
	// that long, as a SPIRE agent does for a node attestor that can re-attest: a new
	// connection, a new key and CSR, the full AttestAgent exchange with the same identity.
	ReattestFor time.Duration
	// AttemptTimeout bounds one attestation (default 2 minutes); an attempt past it is
	// lost and retried.
	AttemptTimeout time.Duration
	// EKCA is the key type of the manufacturer CA made for the run (mfgca.RSA2048 when
	// empty): the one signature of each new EK certificate the plugin verifies.
	EKCA mfgca.KeyAlgorithm
	// Progress receives a line every second or so of a run; nil for none.
	Progress io.Writer
}

// Phase is what one phase of a run measured: attestations that ended with an SVID, refused
// by the server, or lost (no answer: the server was away or the attempt timed out; each
// lost attempt is retried), their rate and latency (from the dial to the SVID, over
// attested attempts), and the CPU the server and plugin processes used in the phase.
type Phase struct {
	Attested  int     `json:"attested"`
	Refused   int     `json:"refused"`
	Lost      int     `json:"lost"`
	Seconds   float64 `json:"seconds"`
	RatePerS  float64 `json:"rate_per_s"`
	P50ms     float64 `json:"p50_ms"`
	P95ms     float64 `json:"p95_ms"`
	P99ms     float64 `json:"p99_ms"`
	ServerCPU float64 `json:"server_cpu_s"`
	PluginCPU float64 `json:"plugin_cpu_s"`
	// MinPerAgent is the fewest re-attestations of any agent (re-attestation only).
	MinPerAgent *int `json:"min_per_agent,omitempty"`
	// FirstRefusal is the first refusal's message, for the operator.
	FirstRefusal string `json:"first_refusal,omitempty"`
	// LastLoss is the last lost attempt's error, for the operator.
	LastLoss string `json:"last_loss,omitempty"`
}

// Report is the outcome of Attest: the first attestation of every agent (the top-level
// fields), peak memory of the server and plugin processes over the whole run, and the
// re-attestation phase when asked.
type Report struct {
	Agents      int `json:"agents"`
	Concurrency int `json:"concurrency"`
	// EKCA is the manufacturer CA's key type (Options.EKCA).
	EKCA mfgca.KeyAlgorithm `json:"ek_ca"`
	Phase
	ServerRSSMB float64 `json:"server_rss_mb"`
	PluginRSSMB float64 `json:"plugin_rss_mb"`
	Restarts    int     `json:"restarts"`
	Reattest    *Phase  `json:"reattest,omitempty"`
	// With a server killed (Options.KillAt): the attestation count at the kill, the
	// attempts beyond the expected ones (one per agent, then one per re-attestation
	// turn: the retries of the attempts the kill cut), and how many agents' SVIDs, the
	// ones they held at the end, the surviving server's bundle still verifies (an agent
	// whose SVID verifies has no need to re-attest).
	KilledAt            int  `json:"killed_at,omitempty"`
	ExtraAttestations   *int `json:"extra_attestations,omitempty"`
	SVIDsValidAfterKill *int `json:"svids_valid_after_kill,omitempty"`
}

// Identities makes n software TPMs with EK certificates from ca, on every core.
func Identities(ctx context.Context, ca *mfgca.CA, n int, progress io.Writer) ([]*softtpm.TPM, error) {
	ids := make([]*softtpm.TPM, n)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	stop := startProgress(progress, func() string {
		return fmt.Sprintf("identities: %d/%d (RSA-2048 EK, P-256 AK, EK certificate)", done.Load(), n)
	})
	defer stop()
	for range max(1, runtimeCPUs()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t, err := softtpm.New(ca)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				ids[i] = t
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return ids, nil
}

// outcome of one attempt.
type outcome int

const (
	attested outcome = iota
	refused
	lost
)

// agent is one identity with its own loopback source address: SPIRE limits node
// attestation to one a second per client IP address, as it would a fleet's hosts.
type agent struct {
	tpm   *softtpm.TPM
	local *net.TCPAddr
	id    spiffeid.ID
	svid  atomic.Pointer[x509.Certificate] // the last SVID issued to it
}

// phaseStats collects the attempts of a phase.
type phaseStats struct {
	mu           sync.Mutex
	latencies    []time.Duration
	refused      int
	lost         int
	firstRefusal string
	lastLoss     string
	attested     atomic.Int64
}

func (p *phaseStats) record(o outcome, d time.Duration, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch o {
	case attested:
		p.latencies = append(p.latencies, d)
		p.attested.Add(1)
	case refused:
		p.refused++
		if p.firstRefusal == "" {
			p.firstRefusal = err.Error()
		}
	case lost:
		p.lost++
		if err != nil {
			p.lastLoss = err.Error()
		}
	}
}

func (p *phaseStats) phase(elapsed time.Duration, before, after Usage) Phase {
	p.mu.Lock()
	defer p.mu.Unlock()
	ph := Phase{
		Attested: len(p.latencies), Refused: p.refused, Lost: p.lost,
		Seconds:      round(elapsed.Seconds(), 2),
		ServerCPU:    round((after.Server.CPU - before.Server.CPU).Seconds(), 2),
		PluginCPU:    round((after.Plugin.CPU - before.Plugin.CPU).Seconds(), 2),
		FirstRefusal: p.firstRefusal, LastLoss: p.lastLoss,
	}
	if elapsed > 0 {
		ph.RatePerS = round(float64(ph.Attested)/elapsed.Seconds(), 1)
	}
	l := slices.Clone(p.latencies)
	slices.Sort(l)
	ph.P50ms, ph.P95ms, ph.P99ms = percentile(l, 50), percentile(l, 95), percentile(l, 99)
	return ph
}

// percentile is the nearest-rank percentile of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted)+99)/100 - 1
	return round(float64(sorted[max(0, i)])/float64(time.Millisecond), 1)
}

func round(v float64, digits int) float64 {
	m := 1.0
	for range digits {
		m *= 10
	}
	return float64(int64(v*m+0.5)) / m
}

// Attest runs the benchmark: every identity attests once through target with
// opt.Concurrency at a time (lost attempts retried until each is attested or refused),
// the target restarted once opt.RestartAt have, then re-attestation for opt.ReattestFor.
func Attest(ctx context.Context, target Target, ids []*softtpm.TPM, opt Options) (*Report, error) {
	if opt.Agents != len(ids) || opt.Agents <= 0 {
		return nil, fmt.Errorf("bench: %d agents for %d identities", opt.Agents, len(ids))
	}
	if opt.Concurrency <= 0 {
		return nil, fmt.Errorf("bench: concurrency %d: want at least 1", opt.Concurrency)
	}
	if opt.RestartAt < 0 || opt.RestartAt > len(ids) {
		return nil, fmt.Errorf("bench: restart after %d attestations: want between 0 and the %d agents", opt.RestartAt, len(ids))
	}
	killer, canKill := target.(Killer)
	if opt.KillAt < 0 || opt.KillAt > len(ids) {
		return nil, fmt.Errorf("bench: kill a server after %d attestations: want between 0 and the %d agents", opt.KillAt, len(ids))
	}
	if opt.KillAt > 0 && !canKill {
		return nil, errors.New("bench: this target has no server to kill (one server: restart it instead)")
	}
	if opt.KillAt > 0 && opt.RestartAt > 0 {
		return nil, errors.New("bench: a restart and a kill in one run: choose one")
	}
	if opt.AttemptTimeout == 0 {
		opt.AttemptTimeout = 2 * time.Minute
	}
	if len(ids) > 250*254 {
		return nil, fmt.Errorf("bench: %d agents: at most %d (one loopback address each)", len(ids), 250*254)
	}
	td := target.TrustDomain()
	bundle := x509bundle.FromX509Authorities(td, target.Bundle())
	serverID, err := spiffeid.FromSegments(td, "spire", "server")
	if err != nil {
		return nil, err
	}
	tlsConf := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(serverID))
	agents := make([]*agent, len(ids))
	for i, t := range ids {
		h, err := verify.EKHash(t.EKPublicKey())
		if err != nil {
			return nil, err
		}
		id, err := spiffeid.FromSegments(td, "spire", "agent", "tpm", h)
		if err != nil {
			return nil, err
		}
		agents[i] = &agent{tpm: t, id: id, local: &net.TCPAddr{IP: net.IPv4(127, 1, byte(i/254), byte(i%254+1))}}
	}
	r := &run{target: target, creds: credentials.NewTLS(tlsConf), opt: opt}

	rep := &Report{Agents: opt.Agents, Concurrency: opt.Concurrency, EKCA: opt.EKCA}
	before, err := target.Usage()
	if err != nil {
		return nil, err
	}
	first := &phaseStats{}
	start := time.Now()
	stop := startProgress(opt.Progress, func() string {
		return fmt.Sprintf("attest: %.0fs attested %d/%d, refused %d, lost %d (retried)", time.Since(start).Seconds(), first.attested.Load(), len(agents), first.refusedCount(), first.lostCount())
	})
	restartErr := make(chan error, 1)
	var restartOnce sync.Once
	var restarted atomic.Bool
	var killOnce sync.Once
	onAttested := func() {
		if opt.KillAt > 0 && int(first.attested.Load()) == opt.KillAt {
			killOnce.Do(func() {
				// Attempts in flight when the server dies are lost, not refused.
				r.epoch.Add(1)
				progressf(opt.Progress, "attest: %d attested: killing a server (SIGKILL)", opt.KillAt)
				if err := killer.Kill(); err != nil {
					restartErr <- err
					return
				}
				rep.KilledAt = opt.KillAt
				progressf(opt.Progress, "attest: server killed; going on through the other")
			})
		}
		if opt.RestartAt > 0 && int(first.attested.Load()) == opt.RestartAt {
			restartOnce.Do(func() {
				restarted.Store(true)
				go func() {
					r.restarting.Store(true)
					r.epoch.Add(1)
					progressf(opt.Progress, "attest: %d attested: restarting the server", opt.RestartAt)
					err := target.Restart(ctx)
					r.restarting.Store(false)
					r.epoch.Add(1)
					progressf(opt.Progress, "attest: server restarted")
					restartErr <- err
				}()
			})
		}
	}
	r.each(ctx, agents, func(ctx context.Context, a *agent) {
		for ctx.Err() == nil {
			o, d, err := r.attempt(ctx, a)
			first.record(o, d, err)
			switch o {
			case attested:
				onAttested()
				return
			case refused:
				return
			}
			// Lost: try again after a pause, as an agent does.
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	elapsed := time.Since(start)
	stop()
	if opt.KillAt > 0 {
		select {
		case err := <-restartErr:
			return nil, fmt.Errorf("bench: kill: %w", err)
		default:
		}
	}
	if restarted.Load() {
		// Refusals may keep the count below RestartAt: then there was no restart.
		if err := <-restartErr; err != nil {
			return nil, fmt.Errorf("bench: restart: %w", err)
		}
		rep.Restarts = 1
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	after, err := target.Usage()
	if err != nil {
		return nil, err
	}
	rep.Phase = first.phase(elapsed, before, after)

	if opt.ReattestFor > 0 {
		again := &phaseStats{}
		counts := make([]atomic.Int64, len(agents))
		index := make(map[*agent]int, len(agents))
		for i, a := range agents {
			index[a] = i
		}
		deadline := time.Now().Add(opt.ReattestFor)
		start := time.Now()
		stop := startProgress(opt.Progress, func() string {
			return fmt.Sprintf("reattest: %.0fs/%.0fs re-attested %d, refused %d, lost %d", time.Since(start).Seconds(), opt.ReattestFor.Seconds(), again.attested.Load(), again.refusedCount(), again.lostCount())
		})
		r.loop(ctx, agents, deadline, func(ctx context.Context, a *agent) {
			o, d, err := r.attempt(ctx, a)
			again.record(o, d, err)
			if o == attested {
				counts[index[a]].Add(1)
			}
		})
		elapsed := time.Since(start)
		stop()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		final, err := target.Usage()
		if err != nil {
			return nil, err
		}
		ph := again.phase(elapsed, after, final)
		least := int(counts[0].Load())
		for i := range counts {
			least = min(least, int(counts[i].Load()))
		}
		ph.MinPerAgent = &least
		rep.Reattest = &ph
		after = final
	}
	if rep.KilledAt > 0 {
		extra := rep.Lost
		if rep.Reattest != nil {
			extra += rep.Reattest.Lost
		}
		rep.ExtraAttestations = &extra
		roots, err := killer.Survivor(ctx)
		if err != nil {
			return nil, err
		}
		valid := validSVIDs(agents, roots)
		rep.SVIDsValidAfterKill = &valid
	}
	rep.ServerRSSMB = round(float64(after.Server.PeakRSS)/(1<<20), 1)
	rep.PluginRSSMB = round(float64(after.Plugin.PeakRSS)/(1<<20), 1)
	return rep, nil
}

func (p *phaseStats) refusedCount() int { p.mu.Lock(); defer p.mu.Unlock(); return p.refused }
func (p *phaseStats) lostCount() int    { p.mu.Lock(); defer p.mu.Unlock(); return p.lost }

// run is the shared state of one Attest.
type run struct {
	target Target
	creds  credentials.TransportCredentials
	opt    Options
	// epoch changes when a restart begins and when it ends; restarting is true between.
	epoch      atomic.Int64
	restarting atomic.Bool
}

// each runs f for every agent, opt.Concurrency at a time.
func (r *run) each(ctx context.Context, agents []*agent, f func(context.Context, *agent)) {
	sem := make(chan struct{}, r.opt.Concurrency)
	var wg sync.WaitGroup
	for _, a := range agents {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(ctx, a)
		}()
	}
	wg.Wait()
}

// loop runs f again and again for every agent until deadline, opt.Concurrency at a time,
// each agent's turns one after another; a turn begun before the deadline runs to its end.
func (r *run) loop(ctx context.Context, agents []*agent, deadline time.Time, f func(context.Context, *agent)) {
	work := make(chan *agent, len(agents))
	for _, a := range agents {
		work <- a
	}
	var wg sync.WaitGroup
	for range min(r.opt.Concurrency, len(agents)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				a := <-work
				f(ctx, a)
				work <- a
			}
		}()
	}
	wg.Wait()
}

// attempt is one attestation of a, as a SPIRE agent makes it (pkg/agent/attestor/node and,
// to re-attest, the SVID rotator): a new connection that authenticates the server by the
// bundle, a new P-256 key and a CSR without a URI SAN, the AttestAgent stream with the
// Hello, the Evidence as the challenge response, and the SVID of the agent's ID.
func (r *run) attempt(ctx context.Context, a *agent) (outcome, time.Duration, error) {
	epoch := r.epoch.Load()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.opt.AttemptTimeout)
	defer cancel()
	err := r.exchange(ctx, a)
	d := time.Since(start)
	if err == nil {
		return attested, d, nil
	}
	if r.isLost(err, epoch) {
		return lost, d, err
	}
	return refused, d, err
}

// isLost tells an attempt that got no answer (the server unreachable or going away, or the
// attempt timed out, or a restart under way while it ran) from a refusal.
func (r *run) isLost(err error, epoch int64) bool {
	if r.restarting.Load() || r.epoch.Load() != epoch {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return true
	case codes.ResourceExhausted:
		// SPIRE's rate limit of attestations per client address: load shed, not a
		// verdict on the identity; the agent tries again.
		return true
	}
	return false
}

func (r *run) exchange(ctx context.Context, a *agent) error {
	dialer := &net.Dialer{LocalAddr: a.local}
	conn, err := grpc.NewClient("passthrough:///"+r.target.Address(),
		grpc.WithTransportCredentials(r.creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return err
	}
	hello, err := a.tpm.Hello()
	if err != nil {
		return err
	}
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return err
	}
	err = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "tpm", Payload: hello},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}})
	if err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	challenge := resp.GetChallenge()
	if challenge == nil {
		return fmt.Errorf("bench: the server answered the hello with %T, not a challenge", resp.GetStep())
	}
	evidence, err := a.tpm.Evidence(challenge)
	if err != nil {
		return err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: evidence}}); err != nil {
		return err
	}
	if resp, err = stream.Recv(); err != nil {
		return err
	}
	_ = stream.CloseSend()
	res := resp.GetResult()
	if res == nil || res.Svid == nil || res.Svid.Id == nil {
		return errors.New("bench: the server's last answer holds no SVID")
	}
	got := "spiffe://" + res.Svid.Id.TrustDomain + res.Svid.Id.Path
	if got != a.id.String() {
		return fmt.Errorf("bench: SVID for %s, want %s", got, a.id)
	}
	leaf, err := x509.ParseCertificate(firstCert(res.Svid.CertChain))
	if err != nil {
		return fmt.Errorf("bench: the SVID of %s: %w", got, err)
	}
	a.svid.Store(leaf)
	if !res.Reattestable {
		return fmt.Errorf("bench: %s: the server says NodeAttestor \"tpm\" cannot re-attest", got)
	}
	return nil
}

func firstCert(chain [][]byte) []byte {
	if len(chain) == 0 {
		return nil
	}
	return chain[0]
}

// validSVIDs counts the agents whose last SVID verifies against roots now.
func validSVIDs(agents []*agent, roots []*x509.Certificate) int {
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	n := 0
	for _, a := range agents {
		leaf := a.svid.Load()
		if leaf == nil {
			continue
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			n++
		}
	}
	return n
}
