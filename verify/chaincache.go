package verify

// This file remembers the EK chains a Bundle verified, so that a TPM that attests again
// (every SVID renewal) does not pay for the signatures of its manufacturer's chain each
// time: they are most of what a verification costs (README, "Costs").

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
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
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]*chainEntry
	// order is the keys in the order they were stored, for forgetting the oldest;
	// next is where the next key goes once order is full.
	order [][sha256.Size]byte
	next  int
}

// chainEntry is one EK certificate's verified chains, without the certificate itself:
// the CAs above it, up to a root of the bundle.
type chainEntry struct {
	raw       []byte // the certificate's DER, compared at each lookup
	ancestors [][]*x509.Certificate
}

func newChainCache(max int) *chainCache {
	return &chainCache{max: max, entries: map[[sha256.Size]byte]*chainEntry{}}
}

// lookup returns the remembered chains of leaf, leaf first, whose every certificate is
// within its validity at now, as crypto/x509 would check them; nil when there are none.
func (c *chainCache) lookup(leaf *x509.Certificate, now time.Time) [][]*x509.Certificate {
	if c == nil || !validAt(leaf, now) {
		return nil
	}
	key := sha256.Sum256(leaf.Raw)
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
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
	if _, ok := c.entries[key]; !ok {
		if len(c.order) < c.max {
			c.order = append(c.order, key)
		} else {
			delete(c.entries, c.order[c.next])
			c.order[c.next] = key
			c.next = (c.next + 1) % c.max
		}
	}
	c.entries[key] = e
}

// validAt is crypto/x509's validity check of one certificate at now.
func validAt(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}
