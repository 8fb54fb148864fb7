package enroll

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/limits"
)

// Current is the enrolled DevID in a directory.
type Current struct {
	Meta Meta
	Leaf *x509.Certificate
}

// Load reads the DevID enrolled in dir. Its files are capped by limits.DevIDMeta and
// limits.DevIDCert.
func Load(dir string) (*Current, error) {
	b, err := limits.ReadFile(filepath.Join(dir, MetaFile), limits.DevIDMeta)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("enroll: no DevID enrolled in %s (%v): run omens devid enroll", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	var c Current
	if err := json.Unmarshal(b, &c.Meta); err != nil {
		return nil, fmt.Errorf("enroll: %s: %w", MetaFile, err)
	}
	certPEM, err := limits.ReadFile(filepath.Join(dir, CertFile), limits.DevIDCert)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("enroll: %s holds no certificate", filepath.Join(dir, CertFile))
	}
	if c.Leaf, err = x509.ParseCertificate(blk.Bytes); err != nil {
		return nil, fmt.Errorf("enroll: %s: %w", CertFile, err)
	}
	return &c, nil
}

// RenewAt is when a certificate is due for renewal: two thirds into its life, which leaves
// a third (30 days of 90) to retry through RA or step-ca outages.
func RenewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// ErrNotDue is returned by Renew when the certificate is not due and force is off.
type ErrNotDue struct{ At time.Time }

func (e *ErrNotDue) Error() string {
	return fmt.Sprintf("enroll: not due for renewal until %s (use --force to renew now)", e.At.UTC().Format(time.RFC3339))
}

// Renew re-enrolls the DevID in cfg.Dir with a fresh attestation and a new key, when two
// thirds of the certificate's life have passed or force is set. It keeps the host name,
// key algorithm and handle of the current enrollment unless cfg sets them. The files are
// replaced atomically; a failed renewal leaves the current DevID in place.
func Renew(ctx context.Context, cfg Config, force bool, now time.Time) (*Meta, error) {
	cur, err := Load(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if at := RenewAt(cur.Leaf); !force && now.Before(at) {
		return nil, &ErrNotDue{At: at}
	}
	if cfg.Host == "" {
		cfg.Host = cur.Meta.Host
	}
	if cfg.KeyAlg == "" {
		cfg.KeyAlg = cur.Meta.KeyAlg
	}
	if cfg.Handle == 0 && cur.Meta.Handle != "" {
		var h uint32
		if _, err := fmt.Sscanf(cur.Meta.Handle, "0x%X", &h); err == nil {
			cfg.Handle = tpm2.TPMHandle(h)
		}
	}
	return Enroll(ctx, cfg)
}

// Watch renews whenever due, checking every interval, until ctx ends. Failures are
// reported to report and retried at the next check.
func Watch(ctx context.Context, cfg Config, interval time.Duration, report func(*Meta, error)) {
	for {
		m, err := Renew(ctx, cfg, false, time.Now())
		if _, notDue := err.(*ErrNotDue); !notDue {
			report(m, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
