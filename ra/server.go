// Package ra is the registration authority for DevID certificates: it runs beside step-ca,
// holds the only copy of the JWK provisioner key, and asks step-ca for a certificate only
// after a device has proven, in one exchange (protocol.EnrollBegin / EnrollFinish), that
// its EK chains to its manufacturer, that its AK and its DevID key are in that same TPM,
// that it holds the DevID key, and that the operator bound this host name to this TPM.
//
// The files by role: server.go the two endpoints, sessions.go the table of open
// enrollments, ratelimit.go the per-address request limit, policy.go the binding policy
// and the pending queue, bindings.go the state file, storage.go the state in PostgreSQL
// for several replicas (bindings and open enrollments), revoke.go revocation, answer.go
// what a refused client is told.
package ra

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"omens.dev/omens/metrics"
	"omens.dev/omens/protocol"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/verify"
)

// Checks the RA adds to the verifier's.
const (
	CheckSession = "session"
	CheckBinding = "host_binding"
	CheckPending = "pending_approval"
	CheckRate    = "rate_limit"
	CheckSize    = "request_size"
	CheckIssue   = "issue"
	CheckMethod  = "method"
)

// Signer issues a DevID certificate of host for a CSR's key: step-ca, through ra/stepca.
type Signer interface {
	SignDevID(ctx context.Context, csr *x509.CertificateRequest, host string, lifetime time.Duration) (*x509.Certificate, []*x509.Certificate, error)
}

// Config configures a Server.
type Config struct {
	// Enroller holds the EK policy (manufacturer bundle, lists).
	Enroller *verify.Enroller
	Store    *Store
	Signer   Signer
	// Revoker revokes superseded certificates (RevokeSuperseded) and a certificate the RA
	// issued but could not record; nil leaves them to the operator.
	Revoker Revoker
	// Lifetime of DevID certificates (default 2160h, 90 days).
	Lifetime time.Duration
	// SupersedeGrace is how long a host's DevID certificate stays valid once the RA issued
	// the host a newer one (default DefaultSupersedeGrace, 1 hour). The RA cannot see which
	// certificate a host presents: `omens devid renew` installs the new one at once and
	// the SPIRE agent presents it at its next attestation, so after the grace the old one
	// is revoked (reason superseded) by RevokeSuperseded, which `omens ra serve` runs
	// every minute. A grace shorter than the agents' re-attestation interval only matters
	// to a host whose renewal did not install the new certificate: it must enroll again.
	SupersedeGrace time.Duration
	// SessionTTL bounds the time between begin and finish (default 2 minutes).
	SessionTTL time.Duration
	// RatePerMinute is how many requests one client address may make per minute
	// (default 30).
	RatePerMinute int
	// MaxSessions bounds the open enrollments (default 1024); MaxSessionsPerAddress
	// bounds those of one client address (default 16). See sessions.go.
	MaxSessions           int
	MaxSessionsPerAddress int
	// MaxLiveCertificates bounds the valid (neither revoked nor expired) DevID
	// certificates of one host (default 8): a host needs its current one and, during the
	// supersede grace, the one before.
	MaxLiveCertificates int
	// Metrics, when set, counts requests, enrollments, renewals, revocations and the
	// calls to step-ca (metrics.go).
	Metrics *Metrics
	Log     *slog.Logger
	Now     func() time.Time
}

// Server serves enrollment.
type Server struct {
	cfg Config

	sessions sessionStore
	mu       sync.Mutex // guards rate
	rate     map[string]*window
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Lifetime == 0 {
		cfg.Lifetime = 2160 * time.Hour
	}
	if cfg.SupersedeGrace == 0 {
		cfg.SupersedeGrace = DefaultSupersedeGrace
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 2 * time.Minute
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = 30
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 1024
	}
	if cfg.MaxSessionsPerAddress == 0 {
		cfg.MaxSessionsPerAddress = 16
	}
	if cfg.MaxLiveCertificates == 0 {
		cfg.MaxLiveCertificates = 8
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics != nil {
		if cfg.Signer != nil {
			cfg.Signer = timedSigner{cfg.Signer, cfg.Metrics}
		}
		if cfg.Revoker != nil {
			cfg.Revoker = timedRevoker{cfg.Revoker, cfg.Metrics}
		}
	}
	var sessions sessionStore = &memSessions{t: newSessionTable()}
	if cfg.Store != nil && cfg.Store.sessions != nil {
		sessions = cfg.Store.sessions
	}
	return &Server{cfg: cfg, sessions: sessions, rate: map[string]*window{}}
}

// Handler serves POST /v1/enroll/begin, POST /v1/enroll/finish and GET /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/enroll/begin", s.post(s.begin))
	mux.HandleFunc("/v1/enroll/finish", s.post(s.finish))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}

// audit is the decision line of one request.
type audit struct {
	id, path, source, host, ekHash, serial string
	// kind is kindEnrollment or kindRenewal once finish knows the host, for the metrics.
	kind string
}

// post wraps a handler with the method check, the rate limit, the size limit, JSON errors
// and the audit line.
func (s *Server) post(h func(ctx context.Context, body []byte, a *audit) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := &audit{id: newRequestID(), path: r.URL.Path, source: clientAddr(r)}
		resp, err := func() (any, error) {
			if r.Method != http.MethodPost {
				return nil, refuse(http.StatusMethodNotAllowed, CheckMethod, "ra: %s wants POST, got %s", r.URL.Path, r.Method)
			}
			if !s.allow(rateKey(a.source)) {
				return nil, refuse(http.StatusTooManyRequests, CheckRate, "ra: more than %d requests a minute from %s", s.cfg.RatePerMinute, a.source)
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxEnrollMessageSize+1))
			if err != nil {
				return nil, refuse(http.StatusBadRequest, verify.CheckProtocol, "ra: reading request: %v", err)
			}
			if len(body) > protocol.MaxEnrollMessageSize {
				return nil, refuse(http.StatusRequestEntityTooLarge, CheckSize, "ra: request is over %d bytes", protocol.MaxEnrollMessageSize)
			}
			return h(r.Context(), body, a)
		}()
		if err != nil {
			s.writeError(w, err, a)
			return
		}
		s.cfg.Log.Info("ra decision", "request_id", a.id, "path", a.path, "source", a.source, "result", "accepted",
			"host", a.host, "ek_hash", a.ekHash, "serial", a.serial)
		s.cfg.Metrics.request(a, metrics.ResultAccepted, metrics.CheckNone)
		w.Header().Set("Content-Type", "application/json")
		b, _ := json.Marshal(resp)
		w.Write(b)
	}
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) begin(_ context.Context, body []byte, a *audit) (any, error) {
	m, err := protocol.DecodeEnrollBegin(body)
	if err != nil {
		return nil, &verify.CheckError{Check: verify.CheckProtocol, Err: err}
	}
	a.host = m.Host
	v := *s.cfg.Enroller
	v.Now = s.cfg.Now
	// The EK chain, the AK and the DevID key are checked before a session takes a place.
	e, ch, err := v.BeginEnrollment(m)
	if err != nil {
		return nil, err
	}
	a.ekHash = e.Identity.EKHash
	// Refuse early a host bound to another TPM: no need to make that device work.
	if err := s.checkBinding(contender{host: m.Host, ekHash: a.ekHash, source: a.source}, false); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	sess := &session{id: newSessionID(), e: e, begin: body, addr: rateKey(a.source), ekHash: a.ekHash, opened: now, expires: now.Add(s.cfg.SessionTTL)}
	if err := s.sessions.open(sess, now, s.cfg.MaxSessions, s.cfg.MaxSessionsPerAddress); err != nil {
		return nil, err
	}
	ch.Session = sess.id
	ch.Version, ch.Type = protocol.Version, protocol.TypeEnrollChallenge
	return ch, nil
}

func (s *Server) finish(ctx context.Context, body []byte, a *audit) (any, error) {
	m, err := protocol.DecodeEnrollFinish(body)
	if err != nil {
		return nil, &verify.CheckError{Check: verify.CheckProtocol, Err: err}
	}
	sess, err := s.sessions.take(m.Session, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, refuse(http.StatusForbidden, CheckSession, "ra: session %q is unknown, used, replaced by a newer begin for its EK, or expired (a replayed enrollment?)", m.Session)
	}
	e := sess.e
	if e == nil {
		// Begun on another replica: checked again here, with the challenge it sent.
		v := *s.cfg.Enroller
		v.Now = s.cfg.Now
		if e, err = v.ResumeEnrollment(sess.saved); err != nil {
			return nil, err
		}
	}
	a.host, a.ekHash = e.Host, e.Identity.EKHash
	if s.cfg.Metrics != nil {
		a.kind = s.kind(e.Host)
	}
	csr, err := e.Finish(m)
	if err != nil {
		return nil, err
	}
	// Before the binding check, which queues an unknown host: a request for more than a
	// DevID certificate is not queued.
	if err := stepca.CheckDevIDCSR(csr, e.Host); err != nil {
		return nil, refuse(http.StatusForbidden, stepca.CheckDevIDCSRProfile, "ra: %v", err)
	}
	c := contender{host: e.Host, ekHash: a.ekHash, source: a.source}
	if e.Identity.EKCert != nil {
		c.ekIssuer = e.Identity.EKCert.Cert.Issuer.String()
	}
	if err := s.checkBinding(c, true); err != nil {
		return nil, err
	}
	leaf, chain, err := s.cfg.Signer.SignDevID(ctx, csr, e.Host, s.cfg.Lifetime)
	if err != nil {
		return nil, refuse(http.StatusBadGateway, CheckIssue, "ra: step-ca did not issue the certificate: %v", err)
	}
	a.serial = leaf.SerialNumber.Text(16)
	if err := s.recordIssued(e.Host, leaf, s.cfg.Now()); err != nil {
		// A certificate the RA cannot record is one no decommission would find: revoke it.
		if s.cfg.Revoker != nil {
			rerr := s.cfg.Revoker.Revoke(ctx, leaf.SerialNumber, reasonCessationOfOperation, "the RA could not record it")
			s.cfg.Metrics.revocation("unrecorded", rerr)
			if rerr != nil {
				err = fmt.Errorf("%w; revoking it failed too, revoke serial %s by hand: %v", err, a.serial, rerr)
			} else {
				err = fmt.Errorf("%w; the certificate (serial %s) was revoked", err, a.serial)
			}
		}
		return nil, fmt.Errorf("ra: recording DevID serial %s of %s: %w", a.serial, e.Host, err)
	}
	res := &protocol.EnrollResult{Version: protocol.Version, Type: protocol.TypeEnrollResult, Chain: [][]byte{leaf.Raw}}
	for _, c := range chain {
		res.Chain = append(res.Chain, c.Raw)
	}
	return res, nil
}

// RevokeSuperseded revokes, through Config.Revoker, the certificates superseded for more
// than Config.SupersedeGrace, and logs each one.
func (s *Server) RevokeSuperseded(ctx context.Context) error {
	if s.cfg.Revoker == nil {
		return nil
	}
	done, err := s.cfg.Store.RevokeSuperseded(ctx, s.cfg.Revoker, s.cfg.SupersedeGrace, s.cfg.Now())
	for host, serials := range done {
		for _, serial := range serials {
			s.cfg.Metrics.revocation("superseded", nil)
			s.cfg.Log.Info("ra revocation", "host", host, "serial", serial, "reason", "superseded", "grace", s.cfg.SupersedeGrace.String())
		}
	}
	if err != nil {
		s.cfg.Metrics.revocation("superseded", err)
		s.cfg.Log.Error("ra revocation", "reason", "superseded", "error", err.Error())
	}
	return err
}
