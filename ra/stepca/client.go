// Package stepca is a client of step-ca's HTTP API for the RA: it signs and revokes
// certificates with one-time tokens of a JWK provisioner whose key the RA holds, and
// fetches the CRL.
//
// Every request is authorized by a token that the client makes for it alone: a sign token
// names the identity of the certificate (common name and SANs) and its profile, which
// step-ca's X.509 template for the provisioner (DevIDTemplate) turns into the certificate,
// so the request contributes only its key; a revoke token names one serial number.
// step-ca accepts each token once.
//
// Errors are prefixed "stepca: " and the operation; an answer of step-ca that is not a
// success is an *Error, which holds the HTTP status and step-ca's message.
package stepca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// Reason codes of a revocation (RFC 5280, section 5.3.1).
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
)

// Limits on what the client reads from step-ca.
const (
	maxJSONResponse = 1 << 20
	maxCRLResponse  = 32 << 20
	requestTimeout  = 30 * time.Second
)

// Client talks to one step-ca.
type Client struct {
	URL   string         // https://host:port of step-ca, without a trailing slash
	Roots *x509.CertPool // the CA's root(s): step-ca's TLS and every certificate it returns must chain to them
	Prov  *Provisioner   // signs the one-time tokens
	HTTP  *http.Client   // trusts Roots only
}

// New returns a client of the step-ca at url, whose roots are roots, making tokens with
// prov.
func New(url string, roots *x509.CertPool, prov *Provisioner) *Client {
	return &Client{
		URL:   strings.TrimRight(url, "/"),
		Roots: roots,
		Prov:  prov,
		HTTP: &http.Client{
			Timeout: requestTimeout,
			Transport: &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
				TLSHandshakeTimeout: 10 * time.Second,
				MaxIdleConnsPerHost: 4,
			},
		},
	}
}

// Error is an answer of step-ca other than a success.
type Error struct {
	Op         string // sign, revoke, crl, ...
	StatusCode int    // HTTP status code
	Message    string // step-ca's "message", or the start of the body when it is not JSON
}

func (e *Error) Error() string {
	return fmt.Sprintf("stepca: %s: %d %s: %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// SignAudience is the audience of the client's sign tokens.
func (c *Client) SignAudience() string { return c.URL + "/1.0/sign" }

// RevokeAudience is the audience of the client's revoke tokens.
func (c *Client) RevokeAudience() string { return c.URL + "/1.0/revoke" }

// SignDevID gets a DevID certificate for host from step-ca (profile ProfileDevID of
// DevIDTemplate), for csr's key. It first refuses a csr that asks for more than a DevID
// certificate of host (CheckDevIDCSR); the token then names what the RA decided, host as
// the subject and the one SAN, whatever csr holds. lifetime 0 takes the provisioner's
// default; step-ca refuses one beyond the provisioner's maximum. It returns the
// certificate and the chain above it (the intermediate(s)), having checked that the
// certificate is for the request's key and chains to Roots.
func (c *Client) SignDevID(ctx context.Context, csr *x509.CertificateRequest, host string, lifetime time.Duration) (leaf *x509.Certificate, chain []*x509.Certificate, err error) {
	if err := CheckDevIDCSR(csr, host); err != nil {
		return nil, nil, err
	}
	ott, err := c.Prov.ProfileToken(c.SignAudience(), host, []string{host}, ProfileDevID)
	if err != nil {
		return nil, nil, err
	}
	return c.SignWithToken(ctx, csr, ott, lifetime)
}

// SignServer gets a TLS server certificate (profile ProfileServer of DevIDTemplate) for
// csr, with a token pinned to the request's identity (Identity): the RA's own TLS
// certificate, whose request the RA makes itself.
func (c *Client) SignServer(ctx context.Context, csr *x509.CertificateRequest, lifetime time.Duration) (leaf *x509.Certificate, chain []*x509.Certificate, err error) {
	subject, sans := Identity(csr)
	if subject == "" {
		return nil, nil, errors.New("stepca: sign: certificate request has neither a common name nor a SAN")
	}
	ott, err := c.Prov.ProfileToken(c.SignAudience(), subject, sans, ProfileServer)
	if err != nil {
		return nil, nil, err
	}
	return c.SignWithToken(ctx, csr, ott, lifetime)
}

// Identity returns what a sign token for csr names: the subject (the common name, or the
// first SAN) and the SANs, as step-ca compares them.
func Identity(csr *x509.CertificateRequest) (subject string, sans []string) {
	sans = append(sans, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, csr.EmailAddresses...)
	for _, u := range csr.URIs {
		sans = append(sans, u.String())
	}
	subject = csr.Subject.CommonName
	if subject == "" && len(sans) > 0 {
		subject = sans[0]
	}
	return subject, sans
}

// SignWithToken is Sign with a token of the caller's (see Provisioner.Token).
func (c *Client) SignWithToken(ctx context.Context, csr *x509.CertificateRequest, ott string, lifetime time.Duration) (leaf *x509.Certificate, chain []*x509.Certificate, err error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("stepca: sign: certificate request: %w", err)
	}
	req := struct {
		CSR      string `json:"csr"`
		OTT      string `json:"ott"`
		NotAfter string `json:"notAfter,omitempty"`
	}{
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})),
		OTT: ott,
	}
	if lifetime > 0 {
		req.NotAfter = lifetime.String()
	}
	var resp struct {
		Crt       string   `json:"crt"`
		CA        string   `json:"ca"`
		CertChain []string `json:"certChain"`
	}
	if err := c.do(ctx, "sign", http.MethodPost, "/1.0/sign", req, &resp); err != nil {
		return nil, nil, err
	}
	pems := resp.CertChain
	if len(pems) == 0 {
		pems = []string{resp.Crt, resp.CA}
	}
	var certs []*x509.Certificate
	for _, p := range pems {
		cs, err := parsePEMCerts(p)
		if err != nil {
			return nil, nil, fmt.Errorf("stepca: sign: answer: %w", err)
		}
		certs = append(certs, cs...)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("stepca: sign: answer holds no certificate")
	}
	leaf, chain = certs[0], certs[1:]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(csr.PublicKey) {
		return nil, nil, fmt.Errorf("stepca: sign: certificate (serial %s) is not for the request's key", leaf.SerialNumber)
	}
	if err := c.verify(leaf, chain); err != nil {
		return nil, nil, fmt.Errorf("stepca: sign: certificate (serial %s): %w", leaf.SerialNumber, err)
	}
	return leaf, chain, nil
}

// verify checks that cert chains to Roots through intermediates.
func (c *Client) verify(cert *x509.Certificate, intermediates []*x509.Certificate) error {
	pool := x509.NewCertPool()
	for _, ic := range intermediates {
		pool.AddCert(ic)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         c.Roots,
		Intermediates: pool,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// Revoke revokes the certificate with serial number serial (passive revocation: step-ca
// records it and lists it in its CRL), with a token whose subject is that serial number.
// reasonCode is one of RFC 5280's (ReasonCessationOfOperation for a decommissioned
// host); reason is free text kept by step-ca.
func (c *Client) Revoke(ctx context.Context, serial *big.Int, reasonCode int, reason string) error {
	ott, err := c.Prov.Token(c.RevokeAudience(), serial.String(), nil)
	if err != nil {
		return err
	}
	req := struct {
		Serial     string `json:"serial"`
		OTT        string `json:"ott"`
		ReasonCode int    `json:"reasonCode"`
		Reason     string `json:"reason,omitempty"`
		Passive    bool   `json:"passive"`
	}{serial.String(), ott, reasonCode, reason, true}
	var resp struct {
		Status string `json:"status"`
	}
	if err := c.do(ctx, "revoke", http.MethodPost, "/1.0/revoke", req, &resp); err != nil {
		return err
	}
	if resp.Status != "ok" {
		return fmt.Errorf("stepca: revoke: serial %s: status %q, want \"ok\"", serial, resp.Status)
	}
	return nil
}

// CRL fetches step-ca's current CRL and checks that one of the CA's intermediates, which
// must chain to Roots, signed it, and that it has not expired.
func (c *Client) CRL(ctx context.Context) (*x509.RevocationList, error) {
	der, err := c.get(ctx, "crl", "/1.0/crl", maxCRLResponse)
	if err != nil {
		return nil, err
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("stepca: crl: %w", err)
	}
	intermediates, err := c.Intermediates(ctx)
	if err != nil {
		return nil, err
	}
	var sigErr error
	signed := false
	for _, ic := range intermediates {
		if sigErr = crl.CheckSignatureFrom(ic); sigErr == nil {
			signed = true
			break
		}
	}
	if !signed {
		return nil, fmt.Errorf("stepca: crl: number %s (issuer %s) is not signed by an intermediate of the CA: %v", crl.Number, crl.Issuer, sigErr)
	}
	if !crl.NextUpdate.IsZero() && time.Now().After(crl.NextUpdate) {
		return nil, fmt.Errorf("stepca: crl: number %s expired at %s", crl.Number, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

// Intermediates returns the CA's intermediate certificates, each checked against Roots.
func (c *Client) Intermediates(ctx context.Context) ([]*x509.Certificate, error) {
	certs, err := c.certList(ctx, "intermediates", "/1.0/intermediates")
	if err != nil {
		return nil, err
	}
	for _, ic := range certs {
		if err := c.verify(ic, nil); err != nil {
			return nil, fmt.Errorf("stepca: intermediates: %s: %w", ic.Subject, err)
		}
	}
	return certs, nil
}

// RootCertificates returns the CA's root certificates (GET /1.0/roots), over TLS that
// trusts Roots: after a root rotation, the new root next to the old.
func (c *Client) RootCertificates(ctx context.Context) ([]*x509.Certificate, error) {
	return c.certList(ctx, "roots", "/1.0/roots")
}

func (c *Client) certList(ctx context.Context, op, path string) ([]*x509.Certificate, error) {
	var resp struct {
		Crts []string `json:"crts"`
	}
	if err := c.do(ctx, op, http.MethodGet, path, nil, &resp); err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, p := range resp.Crts {
		cs, err := parsePEMCerts(p)
		if err != nil {
			return nil, fmt.Errorf("stepca: %s: %w", op, err)
		}
		certs = append(certs, cs...)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("stepca: %s: answer holds no certificate", op)
	}
	return certs, nil
}

// do sends a JSON request (body nil for none) and decodes a JSON answer into out.
func (c *Client) do(ctx context.Context, op, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("stepca: %s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return fmt.Errorf("stepca: %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	b, err := c.send(req, op, maxJSONResponse)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("stepca: %s: answer: %w", op, err)
	}
	return nil
}

// get returns the body of a GET.
func (c *Client) get(ctx context.Context, op, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return nil, fmt.Errorf("stepca: %s: %w", op, err)
	}
	return c.send(req, op, limit)
}

// send sends req and returns the body of a 2xx answer; any other answer is an *Error.
func (c *Client) send(req *http.Request, op string, limit int64) ([]byte, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("stepca: %s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("stepca: %s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		msg := ""
		if json.Unmarshal(b, &e) == nil {
			msg = e.Message
		}
		if msg == "" {
			msg = string(bytes.TrimSpace(b[:min(len(b), 200)]))
		}
		return nil, &Error{Op: op, StatusCode: resp.StatusCode, Message: msg}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("stepca: %s: answer larger than %d bytes", op, limit)
	}
	return b, nil
}

func parsePEMCerts(s string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}
