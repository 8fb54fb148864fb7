package ra

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Revoker revokes a certificate by serial: step-ca, through ra/stepca.
type Revoker interface {
	Revoke(ctx context.Context, serial *big.Int, reasonCode int, reason string) error
}

// RFC 5280, section 5.3.1, reason codes.
const (
	reasonSuperseded           = 4
	reasonCessationOfOperation = 5
)

// DefaultSupersedeGrace is how long a DevID certificate stays valid after the RA issued
// its host a newer one (see Config.SupersedeGrace).
const DefaultSupersedeGrace = time.Hour

// Decommission revokes every DevID certificate issued to host that is neither revoked nor
// expired (reason cessationOfOperation: step-ca then lists each in its CRL, which the
// SPIRE server plugin reads) and marks the binding decommissioned, so the RA refuses the
// host until an operator unbinds it and approves it again. A certificate step-ca did not
// revoke stays live on record and the error names it; running Decommission again retries
// only those. It returns the binding (its EK hash names the host's SPIRE agent) and the
// serials revoked by this call.
func (s *Store) Decommission(ctx context.Context, ca Revoker, host string, now time.Time) (*Binding, []string, error) {
	var out Binding
	var revoked []string
	var failed error
	err := s.Update(func(b *Bindings) error {
		bd := b.Hosts[host]
		if bd == nil {
			return fmt.Errorf("ra: %s is not bound: nothing to revoke", host)
		}
		if len(bd.Certificates) == 0 {
			return fmt.Errorf("ra: %s has no DevID certificate on record", host)
		}
		bd.Decommissioned = true
		revoked, failed = revokeLive(ctx, ca, bd, now, func(*Issued) bool { return true },
			reasonCessationOfOperation, "host "+host+" decommissioned")
		out = *bd
		return nil // save what was revoked, even when step-ca refused some
	})
	if err != nil {
		return nil, nil, err
	}
	return &out, revoked, failed
}

// RevokeSuperseded revokes (reason superseded) every certificate whose host was issued a
// newer one more than grace before now, and returns the hosts and serials it revoked.
// The RA runs it every minute while it serves.
func (s *Store) RevokeSuperseded(ctx context.Context, ca Revoker, grace time.Duration, now time.Time) (map[string][]string, error) {
	out := map[string][]string{}
	var errs []error
	err := s.Update(func(b *Bindings) error {
		for host, bd := range b.Hosts {
			due := func(c *Issued) bool { return !c.Superseded.IsZero() && !now.Before(c.Superseded.Add(grace)) }
			revoked, err := revokeLive(ctx, ca, bd, now, due, reasonSuperseded, "superseded by a renewal of "+host)
			if len(revoked) > 0 {
				out[host] = revoked
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(out) == 0 {
			return errNoChange
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return out, err
	}
	return out, errors.Join(errs...)
}

// revokeLive asks ca to revoke bd's live certificates that pick selects, and records
// each one it revoked.
func revokeLive(ctx context.Context, ca Revoker, bd *Binding, now time.Time, pick func(*Issued) bool, code int, reason string) ([]string, error) {
	var revoked, failed []string
	var first error
	for _, c := range bd.Live(now) {
		if !pick(c) {
			continue
		}
		serial, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			failed = append(failed, c.Serial)
			first = cmpErr(first, fmt.Errorf("serial %q on record is not hexadecimal", c.Serial))
			continue
		}
		if err := ca.Revoke(ctx, serial, code, reason); err != nil {
			failed = append(failed, c.Serial)
			first = cmpErr(first, err)
			continue
		}
		c.Revoked = now.UTC()
		revoked = append(revoked, c.Serial)
	}
	if len(failed) > 0 {
		return revoked, fmt.Errorf("ra: %s: step-ca did not revoke DevID serials %s (run the revocation again): %w", bd.Host, strings.Join(failed, ", "), first)
	}
	return revoked, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
