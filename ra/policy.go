package ra

// The binding policy at enrollment: a host bound to another TPM, a TPM bound to another
// host and a decommissioned host are refused (host_binding); an unbound host queues the
// TPM that asked as one contender among those that asked for it (pending_approval).

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// contender is who asks for a host.
type contender struct {
	host, ekHash, ekIssuer, source string
}

// checkBinding applies the enrollment policy. With queue, a host without a binding gets
// c in its pending queue (the device has proven its TPM by then).
func (s *Server) checkBinding(c contender, queue bool) error {
	var out error
	refuseBinding := func(format string, args ...any) {
		out = &refusal{status: http.StatusForbidden, check: CheckBinding, host: c.host, ekHash: c.ekHash, err: fmt.Errorf(format, args...)}
	}
	update := func(b *Bindings) error {
		if bd := b.Hosts[c.host]; bd != nil {
			switch live := len(bd.Live(s.cfg.Now())); {
			case bd.Decommissioned:
				refuseBinding("ra: host %s was decommissioned: to enroll it again, `omens ra unbind %s` then approve it", c.host, c.host)
			case bd.EKHash != c.ekHash:
				refuseBinding("ra: host %s is bound to EK %s, not to this TPM's EK %s", c.host, bd.EKHash, c.ekHash)
			case queue && live >= s.cfg.MaxLiveCertificates:
				out = &refusal{status: http.StatusTooManyRequests, check: CheckRate, host: c.host, ekHash: c.ekHash,
					err: fmt.Errorf("ra: host %s has %d valid DevID certificates, the most one host may have; superseded ones are revoked %s after their renewal", c.host, live, s.cfg.SupersedeGrace)}
			}
			return errNoChange
		}
		for _, bd := range b.Hosts {
			if bd.EKHash == c.ekHash {
				refuseBinding("ra: this TPM (EK %s) is bound to host %s, not %s", c.ekHash, bd.Host, c.host)
				return errNoChange
			}
		}
		if !queue {
			return errNoChange // decided at finish, once the TPM has proven itself
		}
		now := s.cfg.Now().UTC()
		var p *Pending
		for _, q := range b.Pending[c.host] {
			if q.EKHash == c.ekHash {
				p = q
			}
		}
		if p == nil {
			if n := b.pendingCount(); n >= MaxPending {
				out = &refusal{status: http.StatusTooManyRequests, check: CheckRate, host: c.host, ekHash: c.ekHash,
					err: fmt.Errorf("ra: the pending queue holds %d requests, its limit: approve or clear some (omens ra pending)", n)}
				return errNoChange
			}
			p = &Pending{Host: c.host, EKHash: c.ekHash, EKIssuer: c.ekIssuer, Source: c.source, FirstSeen: now}
			b.Pending[c.host] = append(b.Pending[c.host], p)
		}
		p.LastSeen, p.LastSource = now, c.source
		p.Requests++
		out = &refusal{status: http.StatusForbidden, check: CheckPending, host: c.host, ekHash: c.ekHash,
			err: fmt.Errorf("ra: host %s is not bound to EK %s yet (%d TPMs asked for it): an operator approves it on the RA host with `omens ra approve %s`", c.host, c.ekHash, len(b.Pending[c.host]), c.host)}
		return nil
	}
	if err := s.cfg.Store.Update(update); err != nil && !errors.Is(err, errNoChange) {
		return err
	}
	return out
}

var errNoChange = errors.New("no change")

// recordIssued adds leaf to host's certificates; the earlier live ones are superseded
// from now on.
func (s *Server) recordIssued(host string, leaf *x509.Certificate, now time.Time) error {
	return s.cfg.Store.Update(func(b *Bindings) error {
		bd := b.Hosts[host]
		switch {
		case bd == nil:
			return fmt.Errorf("ra: host %s was unbound while its certificate was issued", host)
		case bd.Decommissioned:
			return fmt.Errorf("ra: host %s was decommissioned while its certificate was issued", host)
		}
		// Expired certificates need no revocation: the record forgets them.
		bd.Certificates = slices.DeleteFunc(bd.Certificates, func(c *Issued) bool { return !now.Before(c.NotAfter) })
		for _, c := range bd.Live(now) {
			if c.Superseded.IsZero() {
				c.Superseded = now.UTC()
			}
		}
		bd.Certificates = append(bd.Certificates, &Issued{Serial: leaf.SerialNumber.Text(16), Issued: now.UTC(), NotAfter: leaf.NotAfter.UTC()})
		return nil
	})
}
