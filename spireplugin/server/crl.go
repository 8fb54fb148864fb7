package server

// This file gives the verifier the current CRL of the DevID CA, from a file the operator
// (or `omens devid revoke`) replaces, or fetched from step-ca over HTTPS. The verifier
// checks that the CRL is the issuer's, signed by it and not past its nextUpdate; here it
// is only read, kept and refreshed. Any configured source that never yielded a CRL makes
// every DevID attestation fail (fail closed).

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"omens.dev/omens/internal/limits"
)

const (
	// crlRefresh is how long a fetched CRL is used before it is fetched again, unless its
	// nextUpdate comes first (devid_crl_refresh_interval replaces it).
	crlRefresh = 5 * time.Minute
	// crlRetry spaces the fetches after a failure, so that attestations during an outage
	// of the CA do not each wait for it.
	crlRetry = 30 * time.Second
	// crlFetchTimeout bounds one fetch; limits.CRL bounds one CRL, fetched or read.
	crlFetchTimeout = 10 * time.Second
)

// parseCRL reads a CRL in DER or in PEM ("X509 CRL").
func parseCRL(b []byte) (*x509.RevocationList, error) {
	if t := bytes.TrimSpace(b); bytes.HasPrefix(t, []byte("-----BEGIN")) {
		block, _ := pem.Decode(t)
		if block == nil || block.Type != "X509 CRL" {
			return nil, errors.New("not a PEM X509 CRL")
		}
		b = block.Bytes
	}
	return x509.ParseRevocationList(b)
}

func loadCRL(path string) (*x509.RevocationList, error) {
	b, err := limits.ReadFile(path, limits.CRL)
	if err != nil {
		return nil, err
	}
	crl, err := parseCRL(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return crl, nil
}

// newerCRL reports whether a is a later CRL than b (RFC 5280, 5.2.3: a higher CRL number;
// else a later thisUpdate).
func newerCRL(a, b *x509.RevocationList) bool {
	if b == nil {
		return true
	}
	if a.Number != nil && b.Number != nil && a.Number.Cmp(b.Number) != 0 {
		return a.Number.Cmp(b.Number) > 0
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

// crlFetcher fetches the CRL at url and keeps it until its nextUpdate or crlRefresh,
// whichever comes first.
type crlFetcher struct {
	url     string
	refresh time.Duration
	now     func() time.Time
	// client, when set, replaces the one built to trust the DevID CA's roots (tests).
	client *http.Client

	mu      sync.Mutex
	crl     *x509.RevocationList
	fetched time.Time
	lastErr error
	lastTry time.Time
}

// current returns the CRL to use now, fetching it when due, over TLS that trusts roots.
// When a fetch fails, the last CRL fetched is used (the verifier refuses it once past its
// nextUpdate); when none ever was, the error is returned.
func (f *crlFetcher) current(roots []*x509.Certificate) (*x509.RevocationList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	due := f.crl == nil || !now.Before(f.fetched.Add(f.refresh)) || (!f.crl.NextUpdate.IsZero() && !now.Before(f.crl.NextUpdate))
	if !due {
		return f.crl, nil
	}
	if f.lastErr != nil && now.Sub(f.lastTry) < min(crlRetry, f.refresh) && !now.Before(f.lastTry) {
		return f.fallback()
	}
	f.lastTry = now
	crl, err := f.fetch(roots)
	if err != nil {
		f.lastErr = fmt.Errorf("devid_crl_url %s: %w", f.url, err)
		return f.fallback()
	}
	f.lastErr = nil
	// A CRL older than the one kept (a stale cache on the way) does not replace it.
	if f.crl == nil || !newerCRL(f.crl, crl) {
		f.crl = crl
	}
	f.fetched = now
	return f.crl, nil
}

// held returns the CRL last fetched, or nil, without fetching: for the metrics, which
// must not change when or whether the CRL is fetched.
func (f *crlFetcher) held() *x509.RevocationList {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crl
}

func (f *crlFetcher) fallback() (*x509.RevocationList, error) {
	if f.crl != nil {
		return f.crl, nil
	}
	return nil, fmt.Errorf("no CRL could be fetched yet: %w", f.lastErr)
}

func (f *crlFetcher) fetch(roots []*x509.Certificate) (*x509.RevocationList, error) {
	client := f.client
	if client == nil {
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		client = &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			Proxy:           http.ProxyFromEnvironment,
		}}
		defer client.CloseIdleConnections()
	}
	ctx, cancel := context.WithTimeout(context.Background(), crlFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limits.CRL.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limits.CRL.MaxBytes {
		return nil, fmt.Errorf("CRL is over the %d-byte limit for a CRL", limits.CRL.MaxBytes)
	}
	return parseCRL(b)
}
