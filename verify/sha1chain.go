package verify

// This file explains a chain that crypto/x509 refuses only because a certificate of it is
// signed with SHA-1, as every Infineon "IFX TPM EK Intermediate CA" and a few TPM 1.2 era
// EK certificates are: crypto/x509 refuses SHA-1 signatures (since Go 1.18; Go 1.24
// removed the setting that allowed them) and says so only in a parenthesis of "certificate signed by
// unknown authority", or not at all when the SHA-1 certificate was left out of the bundle.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// sha1Link is a certificate (child) signed with SHA-1 by another (parent), the signature
// itself valid.
type sha1Link struct{ child, parent *x509.Certificate }

// maxSHA1Depth bounds the walk from a leaf to a root.
const maxSHA1Depth = 8

// sha1Links looks for a path from leaf to a root of the bundle, through certs (candidate
// issuers: the bundle's certificates, those LoadBundle left out, and any the peer sent),
// on which every signature is valid and at least one is SHA-1. It returns the SHA-1 links
// of the first such path, the one nearest the leaf first, or nil.
func (b *Bundle) sha1Links(leaf *x509.Certificate, certs []*x509.Certificate) []sha1Link {
	bySubject := map[string][]*x509.Certificate{}
	for _, c := range certs {
		bySubject[string(c.RawSubject)] = append(bySubject[string(c.RawSubject)], c)
	}
	isRoot := func(c *x509.Certificate) bool {
		for _, r := range b.roots {
			if r.Equal(c) {
				return true
			}
		}
		return false
	}
	var walk func(c *x509.Certificate, depth int) ([]sha1Link, bool)
	walk = func(c *x509.Certificate, depth int) ([]sha1Link, bool) {
		if depth > maxSHA1Depth {
			return nil, false
		}
		for _, p := range bySubject[string(c.RawIssuer)] {
			if p.Equal(c) {
				continue
			}
			var links []sha1Link
			var insecure x509.InsecureAlgorithmError
			switch err := c.CheckSignatureFrom(p); {
			case err == nil:
			case errors.As(err, &insecure) && sha1SignatureValid(c, p):
				links = []sha1Link{{child: c, parent: p}}
			default:
				continue
			}
			if isRoot(p) {
				return links, true
			}
			if rest, ok := walk(p, depth+1); ok {
				return append(links, rest...), true
			}
		}
		return nil, false
	}
	links, ok := walk(leaf, 0)
	if !ok || len(links) == 0 {
		return nil
	}
	return links
}

// sha1SignatureValid checks child's SHA-1 signature with parent's key directly, as
// crypto/x509 no longer does.
func sha1SignatureValid(child, parent *x509.Certificate) bool {
	sum := sha1.Sum(child.RawTBSCertificate)
	switch child.SignatureAlgorithm {
	case x509.SHA1WithRSA:
		k, ok := parent.PublicKey.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, crypto.SHA1, sum[:], child.Signature) == nil
	case x509.ECDSAWithSHA1:
		k, ok := parent.PublicKey.(*ecdsa.PublicKey)
		return ok && ecdsa.VerifyASN1(k, sum[:], child.Signature)
	}
	return false
}

// sha1Explanation says, in plain words, which certificates of the chain of leaf are
// signed with SHA-1 and what to do, or "" when SHA-1 is not what stops the chain. The
// issuers looked at are ancestors (which may hold certificates the peer sent), the
// bundle's, and those LoadBundle left out.
func (b *Bundle) sha1Explanation(leaf *x509.Certificate, ancestors []*x509.Certificate, w chainWords) string {
	certs := append(append(append(append([]*x509.Certificate{}, ancestors...), b.roots...), b.intermediates...), b.rejected...)
	links := b.sha1Links(leaf, certs)
	if links == nil {
		return ""
	}
	var parts []string
	for i, l := range links {
		child := fmt.Sprintf("intermediate CA %q", certName(l.child))
		if l.child == leaf {
			child = fmt.Sprintf("%s serial %s", w.leaf, serial(leaf))
		}
		if i == 0 {
			parts = append(parts, fmt.Sprintf("%s is signed with SHA-1 (%v) by %q", child, l.child.SignatureAlgorithm, certName(l.parent)))
		} else {
			parts = append(parts, fmt.Sprintf("%s by %q", child, certName(l.parent)))
		}
	}
	return strings.Join(parts, ", and so is ") + ", which Go's crypto/x509 refuses (no setting re-enables SHA-1 since Go 1.24): " + w.sha1Advice
}

// certName is a certificate's common name, or its subject when it has none.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
