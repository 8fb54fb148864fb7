package verify

import "crypto/x509"

// SHA1Explanation exposes, to the tests of package verify_test, what a failed EK chain
// verification of c says first about SHA-1 signatures, c being named "certificate".
func SHA1Explanation(b *Bundle, c *x509.Certificate) string {
	w := ekWords
	w.leaf = "certificate"
	return b.sha1Explanation(c, b.ancestorsIn(c, b.bySubject), w)
}

// RememberChains gives b a cache of the chains it verifies that holds at most max EK
// certificates, and returns a function that counts those it holds.
func RememberChains(b *Bundle, max int) (held func() int) {
	b.verified = newChainCache(max)
	return func() int {
		return b.verified.entries.len()
	}
}

// RememberedIssuers counts the CA certificates of b with remembered paths to a root.
func RememberedIssuers(b *Bundle) int {
	b.verified.mu.Lock()
	defer b.verified.mu.Unlock()
	return len(b.verified.above)
}

// KnownTPMs counts the TPMs whose decoded Hello the verifier remembers (known.go).
func KnownTPMs() int { return known.len() }

// FromMemory says whether s's Hello was decoded from memory rather than afresh.
func FromMemory(s *Session) bool { return s.proof.fromMemory }

// ForgetKnownTPMs empties the verifier's memory of decoded Hellos, for a cold benchmark.
func ForgetKnownTPMs() { known.clear() }
