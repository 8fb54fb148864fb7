package verify

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"omens.dev/omens/internal/limits"
)

// Bundle is a set of TPM manufacturer CA certificates that EK certificates are verified
// against: self-signed roots, which are trusted, and intermediates, which are not trusted
// by themselves and only help build chains.
type Bundle struct {
	roots, intermediates []*x509.Certificate
	rootPool, interPool  *x509.CertPool
	// bySubject indexes roots and intermediates by raw subject, to find the ancestors
	// of a certificate.
	bySubject map[string][]*x509.Certificate
	// unusable holds, by raw subject, why CA certificates that LoadBundle left out
	// could not be used, to explain a failed verification.
	unusable map[string][]string
	// rejected are the CA certificates LoadBundle left out for want of a chain (among
	// them those signed with SHA-1), to explain a failed verification.
	rejected []*x509.Certificate
	// verified remembers the EK chains this bundle verified (chaincache.go); nil in a
	// zero Bundle, which remembers nothing.
	verified *chainCache
}

// NewBundle returns a bundle that trusts roots and builds chains through intermediates,
// as given, without the checks LoadBundle makes.
func NewBundle(roots, intermediates []*x509.Certificate) *Bundle {
	b := &Bundle{
		rootPool:  x509.NewCertPool(), // never nil: a nil pool would mean the system roots
		interPool: x509.NewCertPool(),
		bySubject: map[string][]*x509.Certificate{},
		unusable:  map[string][]string{},
		verified:  newChainCache(maxVerifiedChains),
	}
	for _, c := range roots {
		if c != nil {
			b.roots = append(b.roots, c)
			b.rootPool.AddCert(c)
			b.bySubject[string(c.RawSubject)] = append(b.bySubject[string(c.RawSubject)], c)
		}
	}
	for _, c := range intermediates {
		if c != nil {
			b.intermediates = append(b.intermediates, c)
			b.interPool.AddCert(c)
			b.bySubject[string(c.RawSubject)] = append(b.bySubject[string(c.RawSubject)], c)
		}
	}
	return b
}

// Roots returns the trusted root certificates.
func (b *Bundle) Roots() []*x509.Certificate { return slices.Clone(b.roots) }

// Intermediates returns the intermediate certificates.
func (b *Bundle) Intermediates() []*x509.Certificate { return slices.Clone(b.intermediates) }

// BundleProblem is a file, or a certificate in a file, that LoadBundle could not use.
type BundleProblem struct {
	File    string // path of the file
	Subject string // subject of the certificate, when it could be read
	Reason  string
}

func (p BundleProblem) String() string {
	if p.Subject == "" {
		return fmt.Sprintf("%s: %s", p.File, p.Reason)
	}
	return fmt.Sprintf("%s: %q: %s", p.File, p.Subject, p.Reason)
}

type loadedCert struct {
	file string
	cert *x509.Certificate
}

// LoadBundle loads CA certificates from path: a PEM file (any number of CERTIFICATE
// blocks), a DER file (one certificate, trailing 0x00/0xFF padding tolerated), or a
// directory, walked recursively, every file of which is read (a subdirectory such as
// _malformed is read too, and what cannot be used in it is reported). Identical
// certificates are loaded once. Each file is read through limits.ReadFile: a regular
// file of at most limits.CABundle.MaxBytes, or it is reported as unreadable.
//
// A self-signed certificate becomes a root; a self-signature that crypto/x509 refuses
// only because of its algorithm (SHA-1) does not matter for a root, whose signature is
// never checked. Every other certificate is an intermediate, kept only when it chains,
// by signatures alone (validity periods are checked at verification), to a root of the
// bundle, as crypto/x509 would build the chain.
//
// What cannot be used is returned as problems, each with its reason (unreadable file, no
// certificate, unparseable, not a CA, unhandled critical extension, issuer missing,
// signature crypto/x509 refuses such as SHA-1) instead of failing the load. The error is
// non-nil only when path cannot be read or when no root is usable.
func LoadBundle(path string) (*Bundle, []BundleProblem, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: CA bundle: %w", err)
	}
	var (
		loaded   []loadedCert
		problems []BundleProblem
	)
	if !info.IsDir() {
		b, err := limits.ReadFile(path, limits.CABundle)
		if err != nil {
			return nil, nil, fmt.Errorf("verify: CA bundle: %w", err)
		}
		loaded, problems = readCAFile(path, b)
	} else {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == path {
					return err
				}
				problems = append(problems, BundleProblem{File: p, Reason: "unreadable: " + err.Error()})
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			b, err := limits.ReadFile(p, limits.CABundle) // follows a symbolic link to a file
			if err != nil {
				problems = append(problems, BundleProblem{File: p, Reason: "unreadable: " + err.Error()})
				return nil
			}
			l, pr := readCAFile(p, b)
			loaded, problems = append(loaded, l...), append(problems, pr...)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("verify: CA bundle: %w", err)
		}
	}

	seen := map[string]bool{}
	var roots, candidates []loadedCert
	for _, l := range loaded {
		c := l.cert
		if seen[string(c.Raw)] {
			continue
		}
		seen[string(c.Raw)] = true
		if reason := notUsableCA(c); reason != "" {
			problems = append(problems, BundleProblem{File: l.file, Subject: c.Subject.String(), Reason: reason})
			continue
		}
		if bytes.Equal(c.RawSubject, c.RawIssuer) {
			err := c.CheckSignatureFrom(c)
			var insecure x509.InsecureAlgorithmError
			if err == nil || errors.As(err, &insecure) {
				roots = append(roots, l)
				continue
			}
			// Same name, other key (a key rollover): an intermediate.
		}
		candidates = append(candidates, l)
	}

	usable := map[*x509.Certificate]bool{}
	bySubject := map[string][]*x509.Certificate{}
	for _, l := range roots {
		usable[l.cert] = true
	}
	for _, l := range append(slices.Clone(roots), candidates...) {
		bySubject[string(l.cert.RawSubject)] = append(bySubject[string(l.cert.RawSubject)], l.cert)
	}
	type pair struct{ child, parent *x509.Certificate }
	sigErr := map[pair]error{}
	checkSig := func(child, parent *x509.Certificate) error {
		k := pair{child, parent}
		if err, ok := sigErr[k]; ok {
			return err
		}
		err := child.CheckSignatureFrom(parent)
		sigErr[k] = err
		return err
	}
	for changed := true; changed; {
		changed = false
		for _, l := range candidates {
			if usable[l.cert] {
				continue
			}
			for _, parent := range bySubject[string(l.cert.RawIssuer)] {
				if parent != l.cert && usable[parent] && checkSig(l.cert, parent) == nil {
					usable[l.cert], changed = true, true
					break
				}
			}
		}
	}

	var rootCerts, interCerts, rejected []*x509.Certificate
	for _, l := range roots {
		rootCerts = append(rootCerts, l.cert)
	}
	unusable := map[string][]string{}
	for _, l := range candidates {
		if usable[l.cert] {
			interCerts = append(interCerts, l.cert)
			continue
		}
		var why []string
		for _, parent := range bySubject[string(l.cert.RawIssuer)] {
			if parent == l.cert {
				continue
			}
			var insecure x509.InsecureAlgorithmError
			switch err := checkSig(l.cert, parent); {
			case err == nil:
				why = append(why, fmt.Sprintf("its issuer %q is not usable either", parent.Subject.String()))
			case errors.As(err, &insecure):
				why = append(why, fmt.Sprintf("signed by %q with %v, which crypto/x509 refuses (%v)", parent.Subject.String(), l.cert.SignatureAlgorithm, err))
			default:
				why = append(why, fmt.Sprintf("the signature does not verify with the key of %q: %v", parent.Subject.String(), err))
			}
		}
		if len(why) == 0 {
			why = append(why, missingIssuer(l.cert, loaded))
		}
		rejected = append(rejected, l.cert)
		reason := "no chain to a root of the bundle: " + strings.Join(why, "; ")
		problems = append(problems, BundleProblem{File: l.file, Subject: l.cert.Subject.String(), Reason: reason})
		unusable[string(l.cert.RawSubject)] = append(unusable[string(l.cert.RawSubject)], fmt.Sprintf("%q: %s", l.cert.Subject.String(), reason))
	}
	if len(rootCerts) == 0 {
		return nil, problems, fmt.Errorf("verify: CA bundle %q holds no usable root certificate (%d problems)", path, len(problems))
	}
	b := NewBundle(rootCerts, interCerts)
	b.unusable, b.rejected = unusable, rejected
	return b, problems, nil
}

// missingIssuer explains why no certificate of the bundle has c's issuer name. A CA whose
// subject reads the same but is encoded differently (PrintableString against UTF8String,
// as between STMicro's ECC root and intermediates) is named: crypto/x509 matches issuer
// and subject byte for byte, not with the comparison rules of RFC 5280, section 7.1.
func missingIssuer(c *x509.Certificate, loaded []loadedCert) string {
	want := strings.ToLower(c.Issuer.String())
	for _, l := range loaded {
		if l.cert != c && strings.ToLower(l.cert.Subject.String()) == want {
			return fmt.Sprintf("issuer %q is in the bundle (%s) only with a differently encoded name, and crypto/x509 matches names byte for byte",
				c.Issuer.String(), filepath.Base(l.file))
		}
	}
	return fmt.Sprintf("issuer %q is not in the bundle", c.Issuer.String())
}

// notUsableCA returns why crypto/x509 would never let c sign a certificate in a chain, or
// "" (the conditions of x509.Certificate.CheckSignatureFrom and of chain building).
func notUsableCA(c *x509.Certificate) string {
	switch {
	case c.Version == 3 && !c.BasicConstraintsValid:
		return "not a CA: version 3 certificate without basicConstraints"
	case c.BasicConstraintsValid && !c.IsCA:
		return "not a CA: basicConstraints cA=false"
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return "not a CA: keyUsage lacks keyCertSign"
	case c.PublicKeyAlgorithm == x509.UnknownPublicKeyAlgorithm:
		return "unsupported public key algorithm"
	case len(c.UnhandledCriticalExtensions) > 0:
		var oids []string
		for _, o := range c.UnhandledCriticalExtensions {
			oids = append(oids, o.String())
		}
		return "unhandled critical extension " + strings.Join(oids, ", ")
	}
	return ""
}

// readCAFile parses the certificates of one file, PEM or DER.
func readCAFile(file string, b []byte) ([]loadedCert, []BundleProblem) {
	var (
		loaded   []loadedCert
		problems []BundleProblem
	)
	add := func(der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			problems = append(problems, BundleProblem{File: file, Subject: bestEffortSubject(der), Reason: "unparseable: " + err.Error()})
			return
		}
		loaded = append(loaded, loadedCert{file: file, cert: c})
	}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		found := false
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			found = true
			if block.Type != "CERTIFICATE" {
				problems = append(problems, BundleProblem{File: file, Reason: fmt.Sprintf("PEM block %q is not a certificate", block.Type)})
				continue
			}
			add(block.Bytes)
		}
		if !found {
			problems = append(problems, BundleProblem{File: file, Reason: "no PEM block found"})
		}
		return loaded, problems
	}
	if len(b) == 0 {
		return nil, []BundleProblem{{File: file, Reason: "empty file"}}
	}
	der, _, err := extractDER(b)
	if err != nil {
		return nil, []BundleProblem{{File: file, Reason: "neither PEM nor a DER certificate: " + strings.TrimPrefix(err.Error(), "verify: ")}}
	}
	add(der)
	return loaded, problems
}

// bestEffortSubject reads the subject of a certificate that crypto/x509 refuses (for
// example for a non-minimal serial number INTEGER), for the problem report, or "".
func bestEffortSubject(der []byte) string {
	var cert struct {
		TBS struct {
			Version  int `asn1:"optional,explicit,default:0,tag:0"`
			Serial   asn1.RawValue
			SigAlg   asn1.RawValue
			Issuer   asn1.RawValue
			Validity asn1.RawValue
			Subject  pkix.RDNSequence
		}
	}
	if _, err := asn1.Unmarshal(der, &cert); err != nil {
		return ""
	}
	var name pkix.Name
	name.FillFromRDNSequence(&cert.TBS.Subject)
	return name.String()
}

func (b *Bundle) options(now time.Time) x509.VerifyOptions {
	return b.optionsWith(now, b.interPool)
}

// optionsWith verifies at now with intermediates inter.
func (b *Bundle) optionsWith(now time.Time, inter *x509.CertPool) x509.VerifyOptions {
	roots := b.rootPool
	if roots == nil {
		// A zero Bundle trusts nothing; a nil Roots would make crypto/x509 use the
		// system roots.
		roots = x509.NewCertPool()
	}
	return x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// tcg-kp-EKCertificate is unknown to crypto/x509; checkEKProfile checks it.
		// DevID certificates carry whatever usages their CA gives them.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
}

// VerifyEKCertificate verifies that c chains to a root of the bundle at time now (the
// current time when zero), and that it is an EK certificate (see the package comment on
// the extended key usage). It returns the chains, leaf first.
//
// Errors wrap ErrNotEKCert; ErrExpired or ErrNotYetValid when a certificate of the chain
// (the EK certificate or a CA) is outside its validity at now but the chain verifies at a
// time inside all of their validity periods; otherwise ErrUntrusted, with the message
//
//	verify: certificate not trusted: issuer "<issuer DN>" (serial <EK certificate serial>) does not chain to the CA bundle: <crypto/x509 reason>
//
// and the crypto/x509 error wrapped as well. When a SHA-1 signature (of the EK
// certificate or of a CA, the signature itself valid) is all that stops a chain to a root,
// the message starts with a sentence that says so and what to do.
//
// The bundle remembers the chains it verified for each EK certificate (by the SHA-256 of
// its DER, at most maxVerifiedChains of them): the next verification of the same
// certificate checks the EK profile again and the validity of the certificate and of each
// CA of a remembered chain at now, but not the signatures, which do not change; when no
// remembered chain is valid at now it verifies from scratch, as the first time. A bundle
// never changes, so a CA removed from the files is gone with the bundle that held it.
func (b *Bundle) VerifyEKCertificate(c *EKCertificate, now time.Time) ([][]*x509.Certificate, error) {
	if c == nil || c.Cert == nil {
		return nil, newError(ErrMalformed, nil, "no certificate")
	}
	if now.IsZero() {
		now = time.Now()
	}
	if err := c.checkEKProfile(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, newError(ErrUntrusted, nil, "issuer %q (serial %s): no CA bundle", c.Cert.Issuer.String(), serial(c.Cert))
	}
	if chains := b.verified.lookup(c.Cert, now); chains != nil {
		return chains, nil
	}
	if chains := b.fromKnownIssuer(c.Cert, now); chains != nil {
		b.verified.store(c.Cert, chains)
		return chains, nil
	}
	chains, err := c.Cert.Verify(b.options(now))
	if err == nil {
		b.verified.store(c.Cert, chains)
		return chains, nil
	}
	return nil, b.explain(c.Cert, now, err)
}

// fromKnownIssuer returns the chains of leaf through the remembered paths above its
// issuer (chainCache.issued), when leaf's issuer name is only that of intermediates of the
// bundle and every one of them has remembered paths: then no chain the bundle can build
// for leaf passes elsewhere. Otherwise, or when no remembered chain passes at now, nil:
// leaf is verified from scratch, which also gives the error.
func (b *Bundle) fromKnownIssuer(leaf *x509.Certificate, now time.Time) [][]*x509.Certificate {
	cands := b.bySubject[string(leaf.RawIssuer)]
	if len(cands) == 0 {
		return nil
	}
	var out [][]*x509.Certificate
	for _, ca := range cands {
		if slices.Contains(b.roots, ca) {
			return nil
		}
		chains, known := b.verified.issued(leaf, ca, now)
		if !known {
			return nil
		}
		out = append(out, chains...)
	}
	return out
}

// maxRetries bounds the verifications that explain runs to tell an expired chain from an
// untrusted one.
const maxRetries = 16

// chainWords names a kind of certificate chain in explanations, with its sentinel errors.
type chainWords struct {
	leaf, chain, bundle        string
	untrusted, expired, notYet error
	// sha1Advice says what to do about a chain refused for a SHA-1 signature.
	sha1Advice string
}

var ekWords = chainWords{
	leaf: "EK certificate", chain: "the EK chain", bundle: "the CA bundle",
	untrusted: ErrUntrusted, expired: ErrExpired, notYet: ErrNotYetValid,
	sha1Advice: "such a TPM can be accepted only by its EK hash (ek_allowlist_path), until its manufacturer publishes a chain signed with SHA-256",
}

func (b *Bundle) explain(leaf *x509.Certificate, now time.Time, nowErr error) error {
	return b.explainChain(leaf, now, nowErr, b.options, b.ancestorsIn(leaf, b.bySubject), ekWords)
}

// explainChain turns a failed verification at now into w's expired, not-yet-valid or
// untrusted error. When the leaf or a possible ancestor is outside its validity at now,
// the chain is verified again (opts) at the start of each validity period concerned: the
// intersection of the validity periods of a chain, when not empty, starts at one of them.
func (b *Bundle) explainChain(leaf *x509.Certificate, now time.Time, nowErr error, opts func(time.Time) x509.VerifyOptions,
	ancestors []*x509.Certificate, w chainWords) error {
	within := func(c *x509.Certificate, t time.Time) bool {
		return !t.Before(c.NotBefore) && !t.After(c.NotAfter)
	}
	family := append([]*x509.Certificate{leaf}, ancestors...)
	outside := false
	var times []time.Time
	for _, c := range family {
		outside = outside || !within(c, now)
		times = append(times, c.NotBefore)
	}
	reason := nowErr
	if outside {
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		times = slices.CompactFunc(times, time.Time.Equal)
		if len(times) > maxRetries {
			times = times[len(times)-maxRetries:] // the latest starts: the leaf's ancestors are usually older
		}
		var leafValidErr error
		for _, t := range times {
			chains, err := leaf.Verify(opts(t))
			if err == nil {
				for _, chain := range chains {
					for i, c := range chain {
						if within(c, now) {
							continue
						}
						what := fmt.Sprintf("CA %q serial %s in %s", c.Subject.String(), serial(c), w.chain)
						if i == 0 {
							what = w.leaf + " serial " + serial(c)
						}
						if now.After(c.NotAfter) {
							return newError(w.expired, nowErr, "%s: notAfter %s is before the verification time %s (the chain is otherwise trusted)",
								what, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
						}
						return newError(w.notYet, nowErr, "%s: notBefore %s is after the verification time %s (the chain is otherwise trusted)",
							what, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
					}
				}
			}
			if leafValidErr == nil && err != nil && within(leaf, t) {
				leafValidErr = err
			}
		}
		// At now, crypto/x509 stops at the leaf's validity; the reason that matters is
		// the one found inside it.
		if !within(leaf, now) && leafValidErr != nil {
			reason = leafValidErr
		}
	}
	msg := fmt.Sprintf("issuer %q (serial %s) does not chain to %s: %v", leaf.Issuer.String(), serial(leaf), w.bundle, reason)
	if u := b.unusable[string(leaf.RawIssuer)]; len(u) > 0 {
		msg += fmt.Sprintf("; the issuer is in %s but unusable: ", w.bundle) + strings.Join(u, "; ")
	}
	// A SHA-1 signature is said first, in plain words, and crypto/x509's words follow.
	if why := b.sha1Explanation(leaf, ancestors, w); why != "" {
		msg = why + "; " + msg
	}
	return &ekError{kind: w.untrusted, msg: w.untrusted.Error() + ": " + msg, cause: reason}
}

// ancestorsIn returns the certificates of bySubject (indexed by raw subject) reachable
// from c by issuer name, at most 64.
func (b *Bundle) ancestorsIn(c *x509.Certificate, bySubject map[string][]*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	seen := map[*x509.Certificate]bool{}
	queue := [][]byte{c.RawIssuer}
	for len(queue) > 0 && len(out) < 64 {
		name := queue[0]
		queue = queue[1:]
		for _, p := range bySubject[string(name)] {
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, p)
			if !bytes.Equal(p.RawSubject, p.RawIssuer) {
				queue = append(queue, p.RawIssuer)
			}
		}
	}
	return out
}
