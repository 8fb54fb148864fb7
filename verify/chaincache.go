package verify

// This file remembers the EK chains a Bundle verified, so that a TPM that attests again
// (every SVID renewal) does not pay for the signatures of its manufacturer's chain each
// time: they are most of what a verification costs (README, "Costs"). It also remembers,
// per intermediate CA of the bundle, the paths above it to a root that were verified, so
// that a new EK certificate from a known intermediate costs only its own signature.

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"sync"
	"time"
)

// maxVerifiedChains bounds the EK certificates a bundle remembers: a fleet of this many
// TPMs re-attests warm; beyond it the oldest are forgotten and verified in full again. An
// entry is the certificate's hash and pointers to the bundle's own CA certificates.
const maxVerifiedChains = 16384

// chainCache is what a Bundle remembers of the chains it verified. It is safe for
// concurrent use; a nil *chainCache remembers nothing.
type chainCache struct {
	max     int
	entries *boundedMap[[sha256.Size]byte, *chainEntry]
	// mu guards above.
	mu sync.Mutex
	// above holds, per CA certificate of the bundle that issued a verified EK
	// certificate, the verified paths from it (first) to a root. Its keys are the
	// bundle's own certificates, so it is bounded by the bundle.
	above map[*x509.Certificate][][]*x509.Certificate
}

// chainEntry is one EK certificate's verified chains, without the certificate itself:
// the CAs above it, up to a root of the bundle.
type chainEntry struct {
	raw       []byte // the certificate's DER, compared at each lookup
	ancestors [][]*x509.Certificate
}

func newChainCache(max int) *chainCache {
	return &chainCache{max: max, entries: newBoundedMap[[sha256.Size]byte, *chainEntry](max),
		above: map[*x509.Certificate][][]*x509.Certificate{}}
}

// lookup returns the remembered chains of leaf, leaf first, whose every certificate is
// within its validity at now, as crypto/x509 would check them; nil when there are none.
func (c *chainCache) lookup(leaf *x509.Certificate, now time.Time) [][]*x509.Certificate {
	if c == nil || !validAt(leaf, now) {
		return nil
	}
	key := sha256.Sum256(leaf.Raw)
	e, _ := c.entries.get(key)
	if e == nil || !bytes.Equal(e.raw, leaf.Raw) {
		return nil
	}
	var out [][]*x509.Certificate
next:
	for _, above := range e.ancestors {
		for _, ca := range above {
			if !validAt(ca, now) {
				continue next
			}
		}
		out = append(out, append([]*x509.Certificate{leaf}, above...))
	}
	return out
}

// store remembers the chains crypto/x509 verified for leaf (each leaf first).
func (c *chainCache) store(leaf *x509.Certificate, chains [][]*x509.Certificate) {
	if c == nil || c.max <= 0 || len(chains) == 0 {
		return
	}
	e := &chainEntry{raw: leaf.Raw}
	for _, chain := range chains {
		if len(chain) < 2 || chain[0] != leaf {
			return
		}
		e.ancestors = append(e.ancestors, append([]*x509.Certificate(nil), chain[1:]...))
	}
	key := sha256.Sum256(leaf.Raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, above := range e.ancestors {
		c.storeAbove(above)
	}
	c.entries.put(key, e)
}

// storeAbove remembers path (an issuer first, a root last) for its issuer, unless it is
// shorter than an intermediate and its root or a CA above the issuer constrains names:
// verifying a new certificate against the issuer alone checks only the issuer's
// constraints. c.mu is held.
func (c *chainCache) storeAbove(path []*x509.Certificate) {
	if len(path) < 2 {
		return
	}
	for _, ca := range path[1:] {
		if constrainsNames(ca) {
			return
		}
	}
	known := c.above[path[0]]
	for _, p := range known {
		if slices.Equal(p, path) {
			return
		}
	}
	c.above[path[0]] = append(known, path)
}

// issued returns the remembered chains of leaf through issuer, whose signature on leaf
// verifies, leaf and issuer within their validity at now (crypto/x509 checking them, with
// the issuer as the only root), and every CA above it within its validity at now; nil when
// there are none. known is false when nothing is remembered above issuer.
func (c *chainCache) issued(leaf, issuer *x509.Certificate, now time.Time) (chains [][]*x509.Certificate, known bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	paths := c.above[issuer]
	c.mu.Unlock()
	if len(paths) == 0 {
		return nil, false
	}
	pool := x509.NewCertPool()
	pool.AddCert(issuer)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: x509.NewCertPool(), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, true
	}
next:
	for _, path := range paths {
		for _, ca := range path[1:] {
			if !validAt(ca, now) {
				continue next
			}
		}
		chains = append(chains, append([]*x509.Certificate{leaf}, path...))
	}
	return chains, true
}

// constrainsNames tells whether c carries name constraints (crypto/x509 enforces them on
// every certificate below c).
func constrainsNames(c *x509.Certificate) bool {
	return c.PermittedDNSDomainsCritical || len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+
		len(c.PermittedIPRanges)+len(c.ExcludedIPRanges)+len(c.PermittedEmailAddresses)+
		len(c.ExcludedEmailAddresses)+len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) > 0
}

// validAt is crypto/x509's validity check of one certificate at now.
func validAt(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}
