package verify

import "crypto/x509"

// SHA1Explanation exposes, to the tests of package verify_test, what a failed EK chain
// verification of c says first about SHA-1 signatures, c being named "certificate".
func SHA1Explanation(b *Bundle, c *x509.Certificate) string {
	w := ekWords
	w.leaf = "certificate"
	return b.sha1Explanation(c, b.ancestorsIn(c, b.bySubject), w)
}
