package enroll

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Backoff bounds the retries of a renewal through an outage of the RA (or of step-ca
// behind it): at most Attempts tries, the first retry after First, each next delay
// doubled, up to Max.
type Backoff struct {
	Attempts   int
	First, Max time.Duration
}

// DefaultBackoff tries 5 times over about two and a half minutes (10s, 20s, 40s, 80s
// between tries): long enough for an RA restart, short enough for a oneshot service whose
// timer tries again later (deploy/systemd).
var DefaultBackoff = Backoff{Attempts: 5, First: 10 * time.Second, Max: 5 * time.Minute}

// delay is the wait after failed attempt n (from 1).
func (b Backoff) delay(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Unreachable reports whether err is the RA not answering: no connection, or an answer
// 5xx (its own, or a proxy's, or the RA's when step-ca is down). A refusal by the RA
// (4xx, RAError) is not: trying again would be refused again.
func Unreachable(err error) bool {
	var ue *url.Error
	var re *RAError
	var se *StatusError
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce):
		return false // the RA's certificate: another try would fail the same
	case errors.As(err, &re):
		return re.Status >= 500
	case errors.As(err, &se):
		return se.Status >= 500
	default:
		return errors.As(err, &ue)
	}
}

// RenewRetrying is Renew, tried again with backoff while the RA is unreachable. Each
// failed attempt is reported to retry with its number and the delay before the next; a
// refusal, a TPM error or the last attempt ends it with the error. The current DevID (its
// files and the key at its handle) stays in place throughout: Renew replaces it only once
// the RA has issued the new certificate.
func RenewRetrying(ctx context.Context, cfg Config, force bool, b Backoff, retry func(attempt int, err error, next time.Duration)) (*Meta, error) {
	b.Attempts = max(b.Attempts, 1)
	for n := 1; ; n++ {
		m, err := Renew(ctx, cfg, force, time.Now())
		if err == nil || !Unreachable(err) {
			return m, err
		}
		if n == b.Attempts {
			return nil, fmt.Errorf("%w (attempt %d of %d, the last)", err, n, b.Attempts)
		}
		next := b.delay(n)
		if retry != nil {
			retry(n, err, next)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (attempt %d of %d; stopped: %v)", err, n, b.Attempts, ctx.Err())
		case <-time.After(next):
		}
	}
}
