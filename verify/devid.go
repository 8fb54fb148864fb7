package verify

// This file checks a DevID key (IEEE 802.1AR LDevID) held in a TPM: its public area (TCG
// "TPM 2.0 Keys for Device Identity and Attestation", 7.3.4: generated in the TPM and bound
// to it, an unrestricted signing key), the AK's TPM2_Certify of it over a verifier's nonce
// (TPM 2.0 Part 3, 18.2), and a CSR signed by it (PKCS #10 proof of possession).

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpmrules"
)

// minNonce is the shortest nonce VerifyCertify accepts from its caller.
const minNonce = 16

// CheckDevIDPublic decodes a DevID key's TPMT_PUBLIC (in canonical encoding, so that its
// name is the TPM's) and requires a key the TPM generated (sensitiveDataOrigin) and cannot
// let go (fixedTPM, fixedParent), that signs (sign) data from outside the TPM (not
// restricted) and decrypts nothing (not decrypt); RSA of at least 2048 bits or ECC NIST
// P-256 or P-384; a SHA-256 or SHA-384 name. A key imported from software, or one that can
// be duplicated to another TPM, lacks fixedTPM or sensitiveDataOrigin and is refused.
func CheckDevIDPublic(pubBytes []byte) (*tpm2.TPMTPublic, crypto.PublicKey, error) {
	pub, err := unmarshalPublic(pubBytes)
	if err != nil {
		return nil, nil, reject(CheckDevIDAttributes, "DevID public area: %v", err)
	}
	if pub.NameAlg == tpm2.TPMAlgSHA1 {
		return nil, nil, checkHash("DevID name algorithm", pub.NameAlg, CheckDevIDAttributes)
	}
	if !tpmrules.AcceptedNameAlg(pub.NameAlg) {
		return nil, nil, reject(CheckDevIDAttributes, "DevID name algorithm 0x%04X, want SHA-256 or SHA-384", uint16(pub.NameAlg))
	}
	name, err := canonicalName(pub.NameAlg, pubBytes)
	if err != nil {
		return nil, nil, reject(CheckDevIDAttributes, "DevID name: %v", err)
	}
	a := pub.ObjectAttributes
	lack := tpmrules.DevIDAttributesLack(a)
	if len(lack) > 0 {
		why := ""
		if !a.FixedTPM || !a.SensitiveDataOrigin {
			why = ": a key made outside the TPM or able to leave it is no device identity"
		}
		return nil, nil, reject(CheckDevIDAttributes, "DevID key attributes 0x%08X lack %v%s (devid_name=%x)",
			binary.BigEndian.Uint32(tpm2.Marshal(a)), lack, why, name.Buffer)
	}
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, nil, reject(CheckDevIDAttributes, "DevID RSA parameters: %v", err)
		}
		if p.KeyBits < tpmrules.MinRSAKeyBits {
			return nil, nil, reject(CheckDevIDAttributes, "DevID RSA key is %d bits, want at least %d (devid_name=%x)", p.KeyBits, tpmrules.MinRSAKeyBits, name.Buffer)
		}
	case tpm2.TPMAlgECC:
		p, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, nil, reject(CheckDevIDAttributes, "DevID ECC parameters: %v", err)
		}
		if !tpmrules.AcceptedCurve(p.CurveID) {
			return nil, nil, reject(CheckDevIDAttributes, "DevID curve 0x%04X, want NIST P-256 or P-384 (devid_name=%x)", uint16(p.CurveID), name.Buffer)
		}
	default:
		return nil, nil, reject(CheckDevIDAttributes, "DevID key type 0x%04X, want RSA or ECC", uint16(pub.Type))
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, nil, reject(CheckDevIDAttributes, "DevID public key: %v (devid_name=%x)", err, name.Buffer)
	}
	return pub, key, nil
}

// VerifyCertify checks that attest and sig, from TPM2_Certify, are the AK's statement,
// made by the TPM, that the key whose public area is devidPub is loaded in the TPM beside
// the AK, made after the verifier drew nonce: the AK (akPub) is an attestation key (a
// restricted signing key, which signs a structure starting with TPM_GENERATED_VALUE only
// when the TPM made it, Part 1, 11.4.7) whose signature over attest verifies; attest starts
// with TPM_GENERATED_VALUE, is of type TPM_ST_ATTEST_CERTIFY, carries nonce as extraData
// and the name of devidPub as the certified name. devidPub must be in canonical encoding;
// its attributes are CheckDevIDPublic's to judge.
//
// The Certify's qualifiedSigner is bounded to a name of the AK's name algorithm; callers
// that know the EK check it is the AK's qualified name under the EK (Session.Finish and
// Enrollment.Finish do).
func VerifyCertify(akPub *tpm2.TPMTPublic, attest, sig []byte, nonce []byte, devidPub []byte) error {
	return verifyCertify(akPub, nil, attest, sig, nonce, devidPub)
}

// verifyCertify is VerifyCertify, and when akQN is not nil, the Certify's qualifiedSigner
// must be akQN.
func verifyCertify(akPub *tpm2.TPMTPublic, akQN []byte, attest, sig []byte, nonce []byte, devidPub []byte) error {
	if len(nonce) < minNonce {
		return fmt.Errorf("verify: Certify nonce is %d bytes, want at least %d: the verifier must draw a fresh one", len(nonce), minNonce)
	}
	akKey, err := checkAK(akPub)
	if err != nil {
		return err
	}
	a, err := unmarshalAttest(attest)
	if err != nil {
		return reject(CheckCertify, "Certify attestation: %v", err)
	}
	s, err := unmarshalSignature(sig)
	if err != nil {
		return reject(CheckCertify, "Certify signature: %v", err)
	}
	pub, err := unmarshalPublic(devidPub)
	if err != nil {
		return reject(CheckCertifyKey, "DevID public area: %v", err)
	}
	name, err := canonicalName(pub.NameAlg, devidPub)
	if err != nil {
		return reject(CheckCertifyKey, "DevID name: %v", err)
	}
	// Every field bounded before anything is hashed or believed.
	if err := checkAttestFields(a, attestBounds{signerAlg: akPub.NameAlg, typ: tpm2.TPMSTAttestCertify, nonce: len(nonce), certifiedAlg: pub.NameAlg}); err != nil {
		return reject(CheckCertifyStructure, "Certify: %v", err)
	}
	if err := verifySignature(akKey, akPub, attest, s, "Certify"); err != nil {
		if FailedCheck(err) != "" {
			return err
		}
		return reject(CheckCertify, "%v", err)
	}
	// Only the magic makes the structure the TPM's own: the AK also signs, through
	// TPM2_Hash and TPM2_Sign, any data that does not start with it.
	if a.Magic != tpm2.TPMGeneratedValue {
		return reject(CheckCertify, "Certify magic 0x%08X is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate", uint32(a.Magic))
	}
	if a.Type != tpm2.TPMSTAttestCertify {
		return reject(CheckCertify, "attestation type 0x%04X is not a Certify (TPM_ST_ATTEST_CERTIFY 0x%04X)", uint16(a.Type), uint16(tpm2.TPMSTAttestCertify))
	}
	if err := checkSigner(a, akQN); err != nil {
		return reject(CheckCertifyStructure, "Certify: %v", err)
	}
	if subtle.ConstantTimeCompare(a.ExtraData.Buffer, nonce) != 1 {
		return reject(CheckCertifyNonce, "Certify qualifying data %x is not the nonce %x (a replayed Certify?)", a.ExtraData.Buffer, nonce)
	}
	info, err := a.Attested.Certify()
	if err != nil {
		return reject(CheckCertify, "Certify info: %v", err)
	}
	if !bytes.Equal(info.Name.Buffer, name.Buffer) {
		return reject(CheckCertifyKey, "Certify is about the key named %x, not the DevID key %x", info.Name.Buffer, name.Buffer)
	}
	return nil
}

// csrSignatureAlgorithms are the CSR signatures CheckCSR accepts: SHA-256 or stronger.
var csrSignatureAlgorithms = map[x509.SignatureAlgorithm]bool{
	x509.SHA256WithRSA: true, x509.SHA384WithRSA: true, x509.SHA512WithRSA: true,
	x509.SHA256WithRSAPSS: true, x509.SHA384WithRSAPSS: true, x509.SHA512WithRSAPSS: true,
	x509.ECDSAWithSHA256: true, x509.ECDSAWithSHA384: true, x509.ECDSAWithSHA512: true,
}

// weakCSRSignatures are the CSR signatures of a hash weaker than SHA-256 (weak_hash).
var weakCSRSignatures = map[x509.SignatureAlgorithm]bool{
	x509.MD2WithRSA: true, x509.MD5WithRSA: true, x509.SHA1WithRSA: true, x509.DSAWithSHA1: true, x509.ECDSAWithSHA1: true,
}

// CheckCSR parses a PKCS #10 request and requires that it is signed (SHA-256 or stronger)
// by the key it names, and that this key is devid, the DevID key: the proof that whoever
// asks for the certificate holds that key.
func CheckCSR(csrDER []byte, devid crypto.PublicKey) (*x509.CertificateRequest, error) {
	want, err := keyID(devid)
	if err != nil {
		return nil, fmt.Errorf("verify: DevID key: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, reject(CheckCSRSignature, "CSR: %v", err)
	}
	if weakCSRSignatures[csr.SignatureAlgorithm] {
		return nil, reject(CheckWeakHash, "CSR signature algorithm %v, want SHA-256 or stronger with RSA or ECDSA", csr.SignatureAlgorithm)
	}
	if !csrSignatureAlgorithms[csr.SignatureAlgorithm] {
		return nil, reject(CheckCSRSignature, "CSR signature algorithm %v, want SHA-256 or stronger with RSA or ECDSA", csr.SignatureAlgorithm)
	}
	got, err := keyID(csr.PublicKey)
	if err != nil {
		return nil, reject(CheckCSRSignature, "CSR public key: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, reject(CheckCSRSignature, "CSR signature does not verify with the key it names (%s): %v", got, err)
	}
	k, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(devid) {
		return nil, reject(CheckCSRKey, "CSR is for key %s, not the DevID key %s", got, want)
	}
	return csr, nil
}

// keyID names a public key in messages: "sha256:" and the SHA-256 of its PKIX DER, in hex
// (what EKHash computes for an EK).
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
