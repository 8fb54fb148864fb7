package tpmrules

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// attribute is one object attribute a key role requires (ok) under its spec name, or, as
// "not X", one it forbids.
type attribute struct {
	ok   bool
	name string
}

func missing(required []attribute) []string {
	var out []string
	for _, c := range required {
		if !c.ok {
			out = append(out, c.name)
		}
	}
	return out
}

// AKAttributesLack is the AK rule on object attributes (TPM 2.0 Part 1, 11.4.7
// "Restricted signing keys"): it lists what a keeps from being an attestation key, nil
// when nothing: a restricted signing key (it signs only structures the TPM made) that was
// generated in its TPM and cannot leave it (fixedTPM, fixedParent, sensitiveDataOrigin),
// and no decryption key.
func AKAttributesLack(a tpm2.TPMAObject) []string {
	return missing([]attribute{
		{a.FixedTPM, "fixedTPM"}, {a.FixedParent, "fixedParent"},
		{a.SensitiveDataOrigin, "sensitiveDataOrigin"}, {a.Restricted, "restricted"},
		{a.SignEncrypt, "sign"}, {!a.Decrypt, "not decrypt"},
	})
}

// DevIDAttributesLack is the DevID rule on object attributes (TCG "TPM 2.0 Keys for
// Device Identity and Attestation", 7.3.4): it lists what a keeps from being a DevID key,
// nil when nothing: a signing key generated in its TPM that cannot leave it, not
// restricted (it signs data from outside the TPM) and no decryption key.
func DevIDAttributesLack(a tpm2.TPMAObject) []string {
	return missing([]attribute{
		{a.FixedTPM, "fixedTPM"}, {a.FixedParent, "fixedParent"},
		{a.SensitiveDataOrigin, "sensitiveDataOrigin"}, {a.SignEncrypt, "sign"},
		{!a.Restricted, "not restricted"}, {!a.Decrypt, "not decrypt"},
	})
}

// EKAttributesLack is the EK rule on object attributes (TCG EK Credential Profile, 2.2):
// it lists what a keeps from being an endorsement key, nil when nothing: a restricted
// decryption key fixed to its TPM, which signs nothing.
func EKAttributesLack(a tpm2.TPMAObject) []string {
	return missing([]attribute{
		{a.FixedTPM, "fixedTPM"}, {a.FixedParent, "fixedParent"},
		{a.Restricted, "restricted"}, {a.Decrypt, "decrypt"}, {!a.SignEncrypt, "not sign"},
	})
}

// MinRSAKeyBits is the smallest RSA key accepted as an AK or a DevID key.
const MinRSAKeyBits = 2048

// AcceptedCurve reports whether an AK or a DevID key may be on curve: NIST P-256 or P-384.
func AcceptedCurve(curve tpm2.TPMECCCurve) bool {
	return curve == tpm2.TPMECCNistP256 || curve == tpm2.TPMECCNistP384
}

// AcceptedNameAlg reports whether an AK or a DevID key may have the name algorithm alg:
// SHA-256 or SHA-384 (SHA-1 names are weak; the credential and Certify bind the name).
func AcceptedNameAlg(alg tpm2.TPMIAlgHash) bool {
	return alg == tpm2.TPMAlgSHA256 || alg == tpm2.TPMAlgSHA384
}

// KeyTypeName names a key type in messages: "RSA", "ECC" or "alg 0x0025".
func KeyTypeName(alg tpm2.TPMAlgID) string {
	switch alg {
	case tpm2.TPMAlgRSA:
		return "RSA"
	case tpm2.TPMAlgECC:
		return "ECC"
	}
	return fmt.Sprintf("alg 0x%04X", uint16(alg))
}

// ErrKeyType is SigningScheme's error for a key that is neither RSA nor ECC.
var ErrKeyType = errors.New("key type is neither RSA nor ECC")

// SigningScheme returns the signature scheme of a signing key's public area and the hash
// it signs with: ECDSA for an ECC key, RSASSA or RSAPSS for an RSA key. A TPM also hashes
// the quoted PCRs with that hash (Part 3, 18.4.1: "the digest ... using the hash of the
// signing scheme"). For an RSA key whose scheme is neither, the scheme is returned with
// the error of reading it as RSASSA.
func SigningScheme(pub *tpm2.TPMTPublic) (tpm2.TPMIAlgSigScheme, tpm2.TPMIAlgHash, error) {
	switch pub.Type {
	case tpm2.TPMAlgECC:
		p, err := pub.Parameters.ECCDetail()
		if err != nil {
			return 0, 0, err
		}
		d, err := p.Scheme.Details.ECDSA()
		if err != nil {
			return p.Scheme.Scheme, 0, err
		}
		return p.Scheme.Scheme, d.HashAlg, nil
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err != nil {
			return 0, 0, err
		}
		if p.Scheme.Scheme == tpm2.TPMAlgRSAPSS {
			d, err := p.Scheme.Details.RSAPSS()
			if err != nil {
				return p.Scheme.Scheme, 0, err
			}
			return p.Scheme.Scheme, d.HashAlg, nil
		}
		d, err := p.Scheme.Details.RSASSA()
		if err != nil {
			return p.Scheme.Scheme, 0, err
		}
		return p.Scheme.Scheme, d.HashAlg, nil
	}
	return 0, 0, fmt.Errorf("%w: 0x%04X", ErrKeyType, uint16(pub.Type))
}
