package ra

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/verify"
)

// ServeConfig is what `omens ra serve` runs with.
type ServeConfig struct {
	// Listen is the address to serve HTTPS on (127.0.0.1:8443).
	Listen string
	// Name is the RA's DNS name in its TLS certificate (ra.funlab.casa); the listen IP is
	// added.
	Name string
	// StateDir holds the bindings file.
	StateDir string
	// Database, when set, keeps the bindings and the open enrollments in PostgreSQL (a
	// postgres:// URL or libpq key=value string) instead of StateDir, for several RA
	// replicas behind one address. It may hold a password; logs name only host and db.
	Database string
	// EKCAPath is the manufacturer CA bundle for EK certificates.
	EKCAPath string
	// StepCA issues the DevID certificates and the RA's own TLS certificate.
	StepCA   *stepca.Client
	Lifetime time.Duration
	// SupersedeGrace is Config.SupersedeGrace.
	SupersedeGrace time.Duration
	Log            *slog.Logger
	// MetricsListen, when set, is the address of a plain-HTTP listener serving
	// GET /metrics (Prometheus; 127.0.0.1:9465): the RA's counters and step-ca's latency,
	// nothing secret.
	MetricsListen string
	// Ready, when set, receives the bound address once the RA serves.
	Ready func(addr string)
}

// Serve runs the RA until ctx ends. Its TLS certificate comes from the same step-ca, by
// the provisioner; it is renewed when two thirds of its life have passed.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.StepCA == nil || (cfg.StateDir == "") == (cfg.Database == "") || cfg.EKCAPath == "" || cfg.Listen == "" {
		return errors.New("ra: the step-ca client, a state directory or a database (one of them), the EK CA bundle and a listen address are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	bundle, problems, err := verify.LoadBundle(cfg.EKCAPath)
	if err != nil {
		return fmt.Errorf("ra: EK CA bundle: %w", err)
	}
	for _, p := range problems {
		cfg.Log.Warn("EK CA bundle: certificate skipped", "file", p.File, "reason", p.Reason)
	}
	var store *Store
	if cfg.Database != "" {
		store, err = OpenDBStore(ctx, cfg.Database)
	} else {
		store, err = OpenStore(cfg.StateDir)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	if err := cfg.StepCA.CheckTemplate(ctx); err != nil {
		return fmt.Errorf("ra: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("ra: %w", err)
	}
	defer ln.Close()
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	certs := &tlsCert{client: cfg.StepCA, name: cfg.Name, ip: net.ParseIP(host), log: cfg.Log}
	if err := certs.renew(ctx); err != nil {
		return err
	}
	var m *Metrics
	if cfg.MetricsListen != "" {
		m = NewMetrics()
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("ra: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
		go ms.Serve(mln)
		defer ms.Close()
		cfg.Log.Info("RA serving metrics", "address", "http://"+mln.Addr().String()+"/metrics")
	}
	srv := New(Config{
		Metrics:        m,
		Enroller:       &verify.Enroller{EK: verify.EKPolicy{Bundle: bundle}},
		Store:          store,
		Signer:         cfg.StepCA,
		Revoker:        cfg.StepCA,
		Lifetime:       cfg.Lifetime,
		SupersedeGrace: cfg.SupersedeGrace,
		Log:            cfg.Log,
	})
	hs := &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	go certs.keepFresh(ctx)
	go func() {
		for {
			srv.RevokeSuperseded(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	cfg.Log.Info("RA serving", "address", ln.Addr().String(), "state", store.Path(), "ek_ca", cfg.EKCAPath)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ra: %w", err)
	}
	return nil
}

// tlsCert is the RA's own certificate, from step-ca.
type tlsCert struct {
	client *stepca.Client
	name   string
	ip     net.IP
	log    *slog.Logger

	mu   sync.Mutex
	cert *tls.Certificate
	leaf *x509.Certificate
}

func (c *tlsCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

func (c *tlsCert) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.name}, DNSNames: []string{c.name}}
	if c.ip != nil && !c.ip.IsUnspecified() {
		tmpl.IPAddresses = []net.IP{c.ip}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return err
	}
	leaf, chain, err := c.client.SignServer(ctx, csr, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("ra: TLS certificate from step-ca: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, ic := range chain {
		cert.Certificate = append(cert.Certificate, ic.Raw)
	}
	c.mu.Lock()
	c.cert, c.leaf = cert, leaf
	c.mu.Unlock()
	c.log.Info("RA TLS certificate", "name", c.name, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return nil
}

// keepFresh renews the certificate at two thirds of its life, retrying every minute.
func (c *tlsCert) keepFresh(ctx context.Context) {
	for {
		c.mu.Lock()
		leaf := c.leaf
		c.mu.Unlock()
		at := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		for c.renew(ctx) != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}
}
