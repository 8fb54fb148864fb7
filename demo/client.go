package demo

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// WrongServerError is the client's refusal of a server whose SPIFFE ID is not the
// expected one; the TLS handshake fails with it.
type WrongServerError struct {
	URL       string
	Got, Want spiffeid.ID
}

func (e *WrongServerError) Error() string {
	if e.URL == "" {
		return fmt.Sprintf("server is %s, not the expected %s", e.Got, e.Want)
	}
	return fmt.Sprintf("refused the server at %s: it is %s, not the expected %s", e.URL, e.Got, e.Want)
}

// RefusedError reports that the server ended the TLS handshake with an alert, as it
// does when it does not allow the client's SPIFFE ID.
type RefusedError struct {
	URL  string
	Self spiffeid.ID // the client's own SPIFFE ID
	Err  error       // the alert
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the server at %s refused this workload (%s) in the TLS handshake (%v): is this ID allowed there (serve --allow)?", e.URL, e.Self, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// expectOnly is tlsconfig.AuthorizeID with an error that names the server's ID.
func expectOnly(want spiffeid.ID) tlsconfig.Authorizer {
	authorize := tlsconfig.AuthorizeID(want)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if authorize(id, chains) != nil {
			return &WrongServerError{Got: id, Want: want}
		}
		return nil
	}
}

// CallConfig configures Call.
type CallConfig struct {
	Source Source      // the client's SVID and trust bundles
	URL    string      // https://host:port/hello
	Expect spiffeid.ID // the server's SPIFFE ID; any other server is refused
	// Timeout bounds the whole request, handshake included (DefaultTimeout when zero).
	Timeout time.Duration
}

// Result is the outcome of a successful Call.
type Result struct {
	Hello      Hello
	Body       []byte            // the answer as the server sent it
	ServerCert *x509.Certificate // the server's X.509-SVID, as presented
}

// Call sends GET to cfg.URL over mutual TLS, presenting the source's SVID and accepting
// only a server that proves cfg.Expect, and decodes the answer.
func Call(ctx context.Context, cfg CallConfig) (*Result, error) {
	if cfg.Source == nil {
		return nil, errors.New("demo: no SVID source")
	}
	if cfg.Expect.IsZero() {
		return nil, errors.New("demo: no expected server ID (--expect)")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	self, err := cfg.Source.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("own SVID: %w", err)
	}
	transport := &http.Transport{
		TLSClientConfig:     tlsconfig.MTLSClientConfig(cfg.Source, cfg.Source, expectOnly(cfg.Expect)),
		TLSHandshakeTimeout: timeout,
		DisableKeepAlives:   true,
		Proxy:               nil, // the lab talks on loopback, never through a proxy
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: timeout}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, callError(cfg.URL, self.ID, timeout, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, callError(cfg.URL, self.ID, timeout, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the server at %s answered %s: %s", cfg.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	res := &Result{Body: body}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		res.ServerCert = resp.TLS.PeerCertificates[0]
	}
	if err := json.Unmarshal(body, &res.Hello); err != nil {
		return nil, fmt.Errorf("the server at %s answered something other than a hello: %v", cfg.URL, err)
	}
	if res.Hello.Server != cfg.Expect.String() || res.Hello.Client != self.ID.String() {
		return nil, fmt.Errorf("the server at %s answered server %q, client %q; want %q, %q",
			cfg.URL, res.Hello.Server, res.Hello.Client, cfg.Expect, self.ID)
	}
	return res, nil
}

// callError explains why a request to target failed.
func callError(target string, self spiffeid.ID, timeout time.Duration, err error) error {
	var wrong *WrongServerError
	if errors.As(err, &wrong) {
		return &WrongServerError{URL: target, Got: wrong.Got, Want: wrong.Want}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return &RefusedError{URL: target, Self: self, Err: op}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("no answer from %s within %v", target, timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("call %s: %w", target, err)
}
