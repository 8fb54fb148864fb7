package demo

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// HelloPath is the one resource the server offers.
const HelloPath = "/hello"

// Hello is the server's answer to GET /hello.
type Hello struct {
	Server string `json:"server"` // the server's SPIFFE ID
	Client string `json:"client"` // the caller's SPIFFE ID, as its SVID proved it
	Time   string `json:"time"`   // RFC 3339, UTC
}

// NotAllowedError is the server's refusal of a peer whose SPIFFE ID is not allowed; the
// TLS handshake fails with it.
type NotAllowedError struct {
	ID      spiffeid.ID
	Allowed []spiffeid.ID
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("%s is not allowed (allowed: %s)", e.ID, joinIDs(e.Allowed))
}

func joinIDs(ids []spiffeid.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}

// allowOnly is tlsconfig.AuthorizeOneOf with an error that names the refused ID.
func allowOnly(allowed []spiffeid.ID) tlsconfig.Authorizer {
	authorize := tlsconfig.AuthorizeOneOf(allowed...)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if authorize(id, chains) != nil {
			return &NotAllowedError{ID: id, Allowed: allowed}
		}
		return nil
	}
}

// ServerConfig configures Serve.
type ServerConfig struct {
	Source Source        // the server's SVID and trust bundles
	Allow  []spiffeid.ID // the peers that may call; all others fail the TLS handshake
	// Log gets one line per request, per refused handshake and per SVID change. Nil
	// discards.
	Log *log.Logger
	// Timeout bounds the reading of a request and the writing of its answer
	// (DefaultTimeout when zero).
	Timeout time.Duration
	// SVIDFile, when not "", is the path of an SVID file (see SVIDStatus) that Serve writes
	// before it serves and rewrites on each renewal. Serve leaves it in place when it
	// returns.
	SVIDFile string
}

// Serve answers HTTPS requests on l with mutual TLS until ctx ends, then shuts down
// (waiting a few seconds for requests in flight) and returns nil. Each handshake uses the
// source's current SVID, so a renewed SVID takes effect without a restart.
func Serve(ctx context.Context, l net.Listener, cfg ServerConfig) error {
	if cfg.Source == nil {
		return errors.New("demo: no SVID source")
	}
	if len(cfg.Allow) == 0 {
		return errors.New("demo: no allowed peer ID (--allow)")
	}
	logger := cfg.Log
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	own, err := cfg.Source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("demo: own SVID: %w", err)
	}
	if cfg.SVIDFile != "" {
		if err := writeSVIDStatus(cfg.SVIDFile, own); err != nil {
			return err
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HelloPath, func(w http.ResponseWriter, r *http.Request) {
		svid, err := cfg.Source.GetX509SVID()
		if err != nil {
			http.Error(w, "no SVID", http.StatusServiceUnavailable)
			return
		}
		peer, _ := peerID(r)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Hello{
			Server: svid.ID.String(),
			Client: peer,
			Time:   time.Now().UTC().Format(time.RFC3339Nano),
		})
	})

	srv := &http.Server{
		Handler:           logRequests(logger, mux),
		TLSConfig:         tlsconfig.MTLSServerConfig(cfg.Source, cfg.Source, allowOnly(cfg.Allow)),
		ReadHeaderTimeout: timeout,
		ReadTimeout:       timeout,
		WriteTimeout:      timeout,
		IdleTimeout:       4 * timeout,
		ErrorLog:          log.New(handshakeLog{logger}, "", 0),
	}
	logger.Printf("serving %s on https://%s%s to %s; %s", own.ID, l.Addr(), HelloPath, joinIDs(cfg.Allow), describeSVID(own))

	defer watchRenewals(ctx, cfg.Source, own, logger, cfg.SVIDFile)()

	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	<-served
	logger.Printf("stopped")
	return err
}

// peerID returns the SPIFFE ID of the client certificate of r.
func peerID(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errors.New("no client certificate")
	}
	id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logRequests logs one line per request: method, path, the caller's SPIFFE ID and
// address, and the status.
func logRequests(logger *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		peer, err := peerID(r)
		if err != nil {
			peer = "(" + err.Error() + ")"
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		logger.Printf("%s %s from %s (%s): %d", r.Method, r.URL.Path, peer, r.RemoteAddr, sw.code)
	})
}

// handshakeLog turns net/http's "TLS handshake error" lines into one line per refused
// (or refusing) client, and passes other server errors through.
type handshakeLog struct{ logger *log.Logger }

const handshakePrefix = "http: TLS handshake error from "

func (h handshakeLog) Write(b []byte) (int, error) {
	line := strings.TrimRight(string(b), "\n")
	if rest, ok := strings.CutPrefix(line, handshakePrefix); ok {
		if addr, reason, ok := strings.Cut(rest, ": "); ok {
			if strings.HasPrefix(reason, "remote error: ") {
				// The client ended the handshake: it did not accept this server.
				h.logger.Printf("TLS handshake with %s failed: the client refused this server (%s)", addr, reason)
			} else {
				h.logger.Printf("refused %s in the TLS handshake: %s", addr, reason)
			}
			return len(b), nil
		}
	}
	h.logger.Print(line)
	return len(b), nil
}
