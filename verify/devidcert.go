package verify

// This file checks, for node attestation in DevID mode, the DevID certificate an agent
// presents (IEEE 802.1AR LDevID, issued by the user's CA, step-ca in the Tower): its chain
// to the DevID CA bundle (plain X.509 path validation, RFC 5280 section 6, any extended key
// usage), its revocation in the issuing CA's CRL (RFC 5280 section 6.3), and that it
// certifies the DevID key whose public area the agent sent. That this key lives in the TPM
// of the EK is Finish's to check (TPM2_Certify by the AK).

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors of DevID certificate verification, for errors.Is.
var (
	ErrDevIDUntrusted   = errors.New("verify: certificate not trusted")
	ErrDevIDExpired     = errors.New("verify: certificate expired")
	ErrDevIDNotYetValid = errors.New("verify: certificate not yet valid")
)

var devidWords = chainWords{
	leaf: "DevID certificate", chain: "the DevID chain", bundle: "the DevID CA bundle",
	untrusted: ErrDevIDUntrusted, expired: ErrDevIDExpired, notYet: ErrDevIDNotYetValid,
	sha1Advice: "re-issue the DevID CA chain with SHA-256 or stronger",
}

// DevIDPolicy says which DevID certificates are accepted in DevID mode.
type DevIDPolicy struct {
	// Bundle holds the DevID CA's roots and intermediates (step-ca's root and
	// intermediate); nil accepts no DevID certificate.
	Bundle *Bundle
	// CRL returns the current certificate revocation list of the CA that issues DevID
	// certificates; nil checks no revocation. An error, or a CRL that is not the issuer's,
	// does not verify or is past its nextUpdate, refuses the attestation (fail closed).
	CRL func() (*x509.RevocationList, error)
}

// DevIDIdentity is what the verifier learned of a DevID in DevID mode.
type DevIDIdentity struct {
	// Cert is the DevID certificate; Chain the verified chain, the certificate first and
	// a root of the DevID CA bundle last.
	Cert  *x509.Certificate
	Chain []*x509.Certificate
	// Public is the DevID key's TPMT_PUBLIC as the agent sent it; Key its public key.
	Public []byte
	Key    crypto.PublicKey
}

// VerifyDevIDCertificate verifies that leaf chains to a root of the bundle at now (the
// current time when zero), through the bundle's intermediates and intermediates (those
// the agent sent after its certificate: they help build a chain, never anchor one), and
// that leaf is not a CA. It returns the chains, leaf first.
//
// Errors wrap ErrDevIDExpired or ErrDevIDNotYetValid when a certificate of the chain is
// outside its validity at now but the chain verifies at a time inside all of them;
// otherwise ErrDevIDUntrusted, with the message
//
//	verify: certificate not trusted: issuer "<issuer DN>" (serial <serial>) does not chain to the DevID CA bundle: <crypto/x509 reason>
func (b *Bundle) VerifyDevIDCertificate(leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if leaf.BasicConstraintsValid && leaf.IsCA {
		return nil, newError(ErrDevIDUntrusted, nil, "serial %s (%s) is a CA certificate (basicConstraints cA=true), not a DevID", serial(leaf), leaf.Subject.String())
	}
	if b == nil {
		return nil, newError(ErrDevIDUntrusted, nil, "issuer %q (serial %s): no DevID CA bundle", leaf.Issuer.String(), serial(leaf))
	}
	inter := b.interPool
	bySubject := b.bySubject
	if len(intermediates) > 0 {
		inter = b.interPool.Clone()
		bySubject = make(map[string][]*x509.Certificate, len(b.bySubject)+len(intermediates))
		for k, v := range b.bySubject {
			bySubject[k] = v
		}
		for _, c := range intermediates {
			inter.AddCert(c)
			bySubject[string(c.RawSubject)] = append(bySubject[string(c.RawSubject)], c)
		}
	}
	opts := func(t time.Time) x509.VerifyOptions { return b.optionsWith(t, inter) }
	chains, err := leaf.Verify(opts(now))
	if err == nil {
		return chains, nil
	}
	return nil, b.explainChain(leaf, now, err, opts, b.ancestorsIn(leaf, bySubject), devidWords)
}

// checkDevID checks the DevID of a DevID-mode Hello: the key's attributes, the certificate
// chain, that the certificate is for that key, and its revocation.
func (v *Verifier) checkDevID(chainDER [][]byte, public []byte) (*DevIDIdentity, error) {
	_, key, err := CheckDevIDPublic(public)
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, len(chainDER))
	for i, der := range chainDER {
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, reject(CheckDevIDCertificate, "DevID certificate chain[%d]: %v", i, err)
		}
	}
	leaf := certs[0]
	if v.DevID.Bundle == nil {
		return nil, reject(CheckDevIDCertificate, "no DevID CA bundle is configured (devid_ca_path) to verify DevID certificate serial %s", serial(leaf))
	}
	chains, err := v.DevID.Bundle.VerifyDevIDCertificate(leaf, certs[1:], v.now())
	switch {
	case errors.Is(err, ErrDevIDExpired):
		return nil, reject(CheckDevIDExpired, "%v", err)
	case err != nil:
		return nil, reject(CheckDevIDCertificate, "%v", err)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(key) {
		got, err := keyID(leaf.PublicKey)
		if err != nil {
			got = fmt.Sprintf("of type %T", leaf.PublicKey)
		}
		want, _ := keyID(key)
		return nil, reject(CheckDevIDKeyMatch, "DevID certificate serial %s (CN=%s) is for key %s, not the DevID key %s the agent presented",
			serial(leaf), leaf.Subject.CommonName, got, want)
	}
	if err := v.checkRevocation(leaf, chains); err != nil {
		return nil, err
	}
	return &DevIDIdentity{Cert: leaf, Chain: chains[0], Public: public, Key: key}, nil
}

// checkRevocation looks the DevID certificate up in the current CRL, after checking that
// the CRL is its issuer's (same name, signed by the issuer's key in a verified chain) and
// not past its nextUpdate.
func (v *Verifier) checkRevocation(leaf *x509.Certificate, chains [][]*x509.Certificate) error {
	if v.DevID.CRL == nil {
		return nil
	}
	crl, err := v.DevID.CRL()
	if err != nil {
		return reject(CheckDevIDCRL, "no CRL to check DevID certificate serial %s against: %v", serial(leaf), err)
	}
	if crl == nil {
		return reject(CheckDevIDCRL, "no CRL to check DevID certificate serial %s against", serial(leaf))
	}
	if !bytes.Equal(crl.RawIssuer, leaf.RawIssuer) {
		return reject(CheckDevIDCRL, "the CRL is issued by %q, not by %q, the issuer of DevID certificate serial %s",
			crl.Issuer.String(), leaf.Issuer.String(), serial(leaf))
	}
	var sigErr error
	verified := false
	for _, chain := range chains {
		if len(chain) < 2 {
			continue
		}
		if sigErr = crl.CheckSignatureFrom(chain[1]); sigErr == nil {
			verified = true
			break
		}
	}
	if !verified {
		return reject(CheckDevIDCRL, "the CRL of %q does not verify with the issuer's key: %v", crl.Issuer.String(), sigErr)
	}
	now := v.now()
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return reject(CheckDevIDCRL, "the CRL of %q (thisUpdate %s) is out of date: nextUpdate %s is before %s",
			crl.Issuer.String(), crl.ThisUpdate.UTC().Format(time.RFC3339), crl.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return reject(CheckDevIDRevoked, "DevID certificate serial %s (CN=%s) is revoked since %s",
				serial(leaf), leaf.Subject.CommonName, e.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
