package ra

import (
	"context"
	"fmt"
	"math/big"
	"time"
)

// Revoker revokes a certificate by serial: step-ca, through ra/stepca.
type Revoker interface {
	Revoke(ctx context.Context, serial *big.Int, reasonCode int, reason string) error
}

// reasonCessationOfOperation is RFC 5280's reason for a decommissioned device.
const reasonCessationOfOperation = 5

// Decommission revokes the DevID certificate last issued to host (reason
// cessationOfOperation: step-ca then lists it in its CRL, which the SPIRE server plugin
// reads) and marks the binding revoked, so the RA refuses the host until an operator
// unbinds it and approves it again. It returns the binding, whose EK hash names the
// host's SPIRE agent.
func (s *Store) Decommission(ctx context.Context, ca Revoker, host string, now time.Time) (*Binding, error) {
	var out Binding
	err := s.Update(func(b *Bindings) error {
		bd := b.Hosts[host]
		if bd == nil {
			return fmt.Errorf("ra: %s is not bound: nothing to revoke", host)
		}
		if bd.Serial == "" {
			return fmt.Errorf("ra: %s has no DevID certificate on record", host)
		}
		if !bd.Revoked {
			serial, ok := new(big.Int).SetString(bd.Serial, 16)
			if !ok {
				return fmt.Errorf("ra: %s: serial %q on record is not hexadecimal", host, bd.Serial)
			}
			if err := ca.Revoke(ctx, serial, reasonCessationOfOperation, "host "+host+" decommissioned"); err != nil {
				return fmt.Errorf("ra: revoking %s's DevID certificate (serial %s): %w", host, bd.Serial, err)
			}
			bd.Revoked = true
		}
		out = *bd
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
