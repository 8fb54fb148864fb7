package verify

// This file checks the attestation key (AK): its public area and the hash its scheme signs
// with, the hash of quotes and Certify structures alike.

import (
	"crypto"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpmrules"
)

// checkAK requires a restricted signing key generated in and fixed to its TPM, with a
// scheme the verifier can check (TPM 2.0 Part 1, 11.4.7 "Restricted signing keys"), a name
// and a scheme hash of SHA-256 or stronger (weak_hash otherwise): the AK signs quotes and
// Certify structures with its scheme's hash, and its name (of its name algorithm) is what
// the credential is bound to.
func checkAK(pub *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	lack := tpmrules.AKAttributesLack(pub.ObjectAttributes)
	if len(lack) > 0 {
		return nil, reject(CheckAKAttributes, "AK attributes lack %v", lack)
	}
	if pub.NameAlg == tpm2.TPMAlgSHA1 {
		return nil, checkHash("AK name algorithm", pub.NameAlg, CheckAKAttributes)
	}
	if !tpmrules.AcceptedNameAlg(pub.NameAlg) {
		return nil, reject(CheckAKAttributes, "AK name algorithm 0x%04X, want SHA-256 or SHA-384", uint16(pub.NameAlg))
	}
	switch pub.Type {
	case tpm2.TPMAlgECC:
		p, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, reject(CheckAKAttributes, "AK ECC parameters: %v", err)
		}
		if p.Scheme.Scheme != tpm2.TPMAlgECDSA {
			return nil, reject(CheckAKAttributes, "AK scheme 0x%04X, want ECDSA", uint16(p.Scheme.Scheme))
		}
		_, hash, err := tpmrules.SigningScheme(pub)
		if err == nil && hash == tpm2.TPMAlgSHA1 {
			return nil, checkHash("AK ECDSA scheme hash", hash, CheckAKAttributes)
		}
		if err != nil || hash != tpm2.TPMAlgSHA256 {
			return nil, reject(CheckAKAttributes, "AK ECDSA scheme hash is not SHA-256")
		}
		if !tpmrules.AcceptedCurve(p.CurveID) {
			return nil, reject(CheckAKAttributes, "AK curve 0x%04X, want NIST P-256 or P-384", uint16(p.CurveID))
		}
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, reject(CheckAKAttributes, "AK RSA parameters: %v", err)
		}
		if p.Scheme.Scheme != tpm2.TPMAlgRSASSA && p.Scheme.Scheme != tpm2.TPMAlgRSAPSS {
			return nil, reject(CheckAKAttributes, "AK scheme 0x%04X, want RSASSA or RSAPSS", uint16(p.Scheme.Scheme))
		}
		_, hash, err := tpmrules.SigningScheme(pub)
		if err != nil {
			return nil, reject(CheckAKAttributes, "AK %s scheme: %v", schemeName(p.Scheme.Scheme), err)
		}
		if err := checkHash("AK "+schemeName(p.Scheme.Scheme)+" scheme hash", hash, CheckAKAttributes); err != nil {
			return nil, err
		}
		if p.KeyBits < tpmrules.MinRSAKeyBits {
			return nil, reject(CheckAKAttributes, "AK RSA key is %d bits, want at least %d", p.KeyBits, tpmrules.MinRSAKeyBits)
		}
	default:
		return nil, reject(CheckAKAttributes, "AK type 0x%04X, want RSA or ECC", uint16(pub.Type))
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, reject(CheckAKAttributes, "AK public key: %v", err)
	}
	return key, nil
}

// signingHash is the hash the AK's scheme signs with; the TPM also hashes the quoted PCRs
// with it (Part 3, 18.4.1: "the digest ... using the hash of the signing scheme").
func signingHash(ak *tpm2.TPMTPublic) (crypto.Hash, error) {
	_, alg, err := tpmrules.SigningScheme(ak)
	if err != nil {
		return 0, err
	}
	return alg.Hash()
}
