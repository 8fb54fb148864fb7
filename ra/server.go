// Package ra is the registration authority for DevID certificates: it runs beside step-ca,
// holds the only copy of the JWK provisioner key, and asks step-ca for a certificate only
// after a device has proven, in one exchange (protocol.EnrollBegin / EnrollFinish), that
// its EK chains to its manufacturer, that its AK and its DevID key are in that same TPM,
// that it holds the DevID key, and that the operator bound this host name to this TPM.
package ra

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

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
	// Verifier holds the EK policy (manufacturer bundle, lists); its PCR fields are unused.
	Verifier *verify.Verifier
	Store    *Store
	Signer   Signer
	// Lifetime of DevID certificates (default 2160h, 90 days).
	Lifetime time.Duration
	// SessionTTL bounds the time between begin and finish (default 2 minutes).
	SessionTTL time.Duration
	// RatePerMinute is how many requests one client address may make per minute
	// (default 30).
	RatePerMinute int
	Log           *slog.Logger
	Now           func() time.Time
}

// Server serves enrollment.
type Server struct {
	cfg Config

	mu       sync.Mutex
	sessions map[string]*session
	rate     map[string]*window
}

type session struct {
	e       *verify.Enrollment
	expires time.Time
}

type window struct {
	start time.Time
	n     int
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Lifetime == 0 {
		cfg.Lifetime = 2160 * time.Hour
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 2 * time.Minute
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = 30
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, sessions: map[string]*session{}, rate: map[string]*window{}}
}

// Handler serves POST /v1/enroll/begin, POST /v1/enroll/finish and GET /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/enroll/begin", s.post(s.begin))
	mux.HandleFunc("/v1/enroll/finish", s.post(s.finish))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}

// refusal is an error with its HTTP status and check.
type refusal struct {
	status int
	check  string
	err    error
	host   string
	ekHash string
}

func (r *refusal) Error() string { return r.err.Error() }

func refuse(status int, check string, format string, args ...any) *refusal {
	return &refusal{status: status, check: check, err: fmt.Errorf(format, args...)}
}

// post wraps a handler with the method check, the rate limit, the size limit, JSON errors
// and the audit line.
func (s *Server) post(h func(ctx context.Context, body []byte) (any, *audit, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := &audit{path: r.URL.Path}
		var resp any
		err := func() error {
			if r.Method != http.MethodPost {
				return refuse(http.StatusMethodNotAllowed, CheckMethod, "ra: %s wants POST", r.URL.Path)
			}
			if !s.allow(clientAddr(r)) {
				return refuse(http.StatusTooManyRequests, CheckRate, "ra: more than %d requests a minute from %s; wait and retry", s.cfg.RatePerMinute, clientAddr(r))
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxEnrollMessageSize+1))
			if err != nil {
				return refuse(http.StatusBadRequest, verify.CheckProtocol, "ra: reading request: %v", err)
			}
			if len(body) > protocol.MaxEnrollMessageSize {
				return refuse(http.StatusRequestEntityTooLarge, CheckSize, "ra: request is over %d bytes", protocol.MaxEnrollMessageSize)
			}
			var ha *audit
			resp, ha, err = h(r.Context(), body)
			if ha != nil {
				ha.path = a.path
				a = ha
			}
			return err
		}()
		if err != nil {
			s.writeError(w, err, a)
			return
		}
		s.cfg.Log.Info("ra decision", "path", a.path, "result", "accepted", "host", a.host, "ek_hash", a.ekHash, "serial", a.serial)
		w.Header().Set("Content-Type", "application/json")
		b, _ := json.Marshal(resp)
		w.Write(b)
	}
}

type audit struct {
	path, host, ekHash, serial string
}

func (s *Server) writeError(w http.ResponseWriter, err error, a *audit) {
	status, check := http.StatusForbidden, verify.FailedCheck(err)
	var rf *refusal
	var ce *verify.CheckError
	switch {
	case errors.As(err, &rf):
		status, check = rf.status, rf.check
		if rf.host != "" {
			a.host = rf.host
		}
		if rf.ekHash != "" {
			a.ekHash = rf.ekHash
		}
	case errors.As(err, &ce):
		if ce.Check == verify.CheckProtocol {
			status = http.StatusBadRequest
		}
		if ce.EKHash != "" {
			a.ekHash = ce.EKHash
		}
	default:
		status, check = http.StatusInternalServerError, "internal"
	}
	s.cfg.Log.Warn("ra decision", "path", a.path, "result", "refused", "check", check, "host", a.host, "ek_hash", a.ekHash, "reason", err.Error())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(protocol.EnrollError{Check: check, Error: err.Error()})
	w.Write(b)
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allow counts a request of addr in a fixed one-minute window.
func (s *Server) allow(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	w := s.rate[addr]
	if w == nil || now.Sub(w.start) >= time.Minute {
		if len(s.rate) > 10000 {
			s.rate = map[string]*window{} // bound memory under a flood of addresses
		}
		w = &window{start: now}
		s.rate[addr] = w
	}
	w.n++
	return w.n <= s.cfg.RatePerMinute
}

func (s *Server) begin(_ context.Context, body []byte) (any, *audit, error) {
	m, err := protocol.DecodeEnrollBegin(body)
	if err != nil {
		return nil, nil, &verify.CheckError{Check: verify.CheckProtocol, Err: err}
	}
	a := &audit{host: m.Host}
	v := *s.cfg.Verifier
	v.Now = s.cfg.Now
	e, ch, err := v.BeginEnrollment(m)
	if err != nil {
		return nil, a, err
	}
	a.ekHash = e.Identity.EKHash
	// Refuse early a host bound to another TPM: no need to make that device work.
	if err := s.checkBinding(m.Host, a.ekHash, false); err != nil {
		return nil, a, err
	}
	id := make([]byte, 16)
	rand.Read(id)
	ch.Session = hex.EncodeToString(id)
	s.mu.Lock()
	now := s.cfg.Now()
	for k, v := range s.sessions {
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
	if len(s.sessions) > 1000 {
		s.mu.Unlock()
		return nil, a, refuse(http.StatusServiceUnavailable, CheckRate, "ra: too many enrollments in progress; retry in a minute")
	}
	s.sessions[ch.Session] = &session{e: e, expires: now.Add(s.cfg.SessionTTL)}
	s.mu.Unlock()
	ch.Version, ch.Type = protocol.Version, protocol.TypeEnrollChallenge
	return ch, a, nil
}

func (s *Server) finish(ctx context.Context, body []byte) (any, *audit, error) {
	m, err := protocol.DecodeEnrollFinish(body)
	if err != nil {
		return nil, nil, &verify.CheckError{Check: verify.CheckProtocol, Err: err}
	}
	s.mu.Lock()
	sess := s.sessions[m.Session]
	delete(s.sessions, m.Session) // one use, whatever happens next
	s.mu.Unlock()
	if sess == nil || s.cfg.Now().After(sess.expires) {
		return nil, nil, refuse(http.StatusForbidden, CheckSession, "ra: session %q is unknown, used or expired (a replayed enrollment?): start again", m.Session)
	}
	e := sess.e
	a := &audit{host: e.Host, ekHash: e.Identity.EKHash}
	csr, err := e.Finish(m)
	if err != nil {
		return nil, a, err
	}
	// Before the binding check, which queues an unknown host: a request for more than a
	// DevID certificate is not queued.
	if err := stepca.CheckDevIDCSR(csr, e.Host); err != nil {
		return nil, a, refuse(http.StatusForbidden, stepca.CheckDevIDCSRProfile, "ra: %v", err)
	}
	if err := s.checkBinding(e.Host, a.ekHash, true); err != nil {
		return nil, a, err
	}
	leaf, chain, err := s.cfg.Signer.SignDevID(ctx, csr, e.Host, s.cfg.Lifetime)
	if err != nil {
		return nil, a, refuse(http.StatusBadGateway, CheckIssue, "ra: step-ca did not issue the certificate: %v", err)
	}
	a.serial = leaf.SerialNumber.Text(16)
	if err := s.cfg.Store.Update(func(b *Bindings) error {
		if h := b.Hosts[e.Host]; h != nil {
			h.Serial, h.NotAfter, h.Revoked = a.serial, leaf.NotAfter.UTC(), false
		}
		return nil
	}); err != nil {
		return nil, a, err
	}
	res := &protocol.EnrollResult{Version: protocol.Version, Type: protocol.TypeEnrollResult, Chain: [][]byte{leaf.Raw}}
	for _, c := range chain {
		res.Chain = append(res.Chain, c.Raw)
	}
	return res, a, nil
}

// checkBinding applies the enrollment policy. With queue, a host without a binding is
// put in the pending queue (the device has proven its TPM by then).
func (s *Server) checkBinding(host, ekHash string, queue bool) error {
	var out error
	update := func(b *Bindings) error {
		if bd := b.Hosts[host]; bd != nil {
			if bd.Revoked {
				out = &refusal{status: http.StatusForbidden, check: CheckBinding, host: host, ekHash: ekHash,
					err: fmt.Errorf("ra: host %s was decommissioned (DevID serial %s revoked): to enroll it again, `omens ra unbind %s` then approve it", host, bd.Serial, host)}
				return errNoChange
			}
			if bd.EKHash != ekHash {
				out = &refusal{status: http.StatusForbidden, check: CheckBinding, host: host, ekHash: ekHash,
					err: fmt.Errorf("ra: host %s is bound to EK %s, not to this TPM's EK %s", host, bd.EKHash, ekHash)}
			}
			return errNoChange
		}
		for _, bd := range b.Hosts {
			if bd.EKHash == ekHash {
				out = &refusal{status: http.StatusForbidden, check: CheckBinding, host: host, ekHash: ekHash,
					err: fmt.Errorf("ra: this TPM (EK %s) is bound to host %s, not %s", ekHash, bd.Host, host)}
				return errNoChange
			}
		}
		out = &refusal{status: http.StatusForbidden, check: CheckPending, host: host, ekHash: ekHash,
			err: fmt.Errorf("ra: host %s is not bound to EK %s yet: an operator approves it on the RA host with `omens ra approve %s`", host, ekHash, host)}
		if !queue {
			out = nil // decided at finish, once the TPM has proven itself
			return errNoChange
		}
		now := s.cfg.Now().UTC()
		p := b.Pending[host]
		if p == nil || p.EKHash != ekHash {
			p = &Pending{Host: host, EKHash: ekHash, FirstSeen: now}
			b.Pending[host] = p
		}
		p.LastSeen = now
		p.Requests++
		return nil
	}
	if err := s.cfg.Store.Update(update); err != nil && !errors.Is(err, errNoChange) {
		return err
	}
	return out
}

var errNoChange = errors.New("no change")
