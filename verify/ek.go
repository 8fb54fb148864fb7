package verify

// This file checks the EK half of a TPM's proof, the same for node attestation (attest.go)
// and DevID enrollment (enroll.go): the EK certificate (parsed by ekcert.go, chained by
// bundle.go) and that it certifies the EK public area the agent sent, or the allowlist;
// the denylist and the EK type served; the AK (ak.go); and credential activation (TPM 2.0
// Part 1, 24 "Credential Protection"): a fresh secret sealed to the EK for the AK's name
// (TPM2_MakeCredential), which only the TPM holding both keys can recover.

import (
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpmrules"
)

// ExpiredPolicy says what an expired (but otherwise trusted) EK certificate gets.
type ExpiredPolicy int

const (
	// ExpiredReject refuses the attestation. The default: an expired certificate is one
	// its issuer no longer vouches for.
	ExpiredReject ExpiredPolicy = iota
	// ExpiredWarn accepts it with a warning and the selector ek_cert:expired, for fleets
	// whose TPM vendors issued short-lived EK certificates.
	ExpiredWarn
)

// EKPolicy says which EKs are accepted.
type EKPolicy struct {
	// Bundle holds the manufacturer roots and intermediates; nil accepts no certificate.
	Bundle *Bundle
	// AllowInsecure accepts a TPM without an EK certificate (or with one that does not
	// verify) whose EK is not allow-listed; every such acceptance carries a warning.
	AllowInsecure bool
	// Allow and Deny are EK hashes (EKHash). A deny-listed EK is refused whatever else.
	Allow, Deny map[string]bool
	// RequireCertAndAllow asks for both a valid certificate and an allow-listed hash.
	RequireCertAndAllow bool
	Expired             ExpiredPolicy
	// Type is the one EK type accepted (tpmrules.EKTypeRSA2048, EKTypeECCP256 or
	// EKTypeECCP384); empty accepts every type. A TPM holds up to three certified EKs,
	// each its own agent ID: accepting one type gives a chip one identity, so that a ban or
	// a deny-listed hash keeps the chip out rather than one of its keys.
	Type string
}

// ekVerifier checks EK proofs under one policy, clock and source of randomness: the
// Verifier's in node attestation, the Enroller's in DevID enrollment.
type ekVerifier struct {
	policy *EKPolicy
	clock  func() time.Time
	rnd    interface{ Read([]byte) (int, error) }
}

func (v ekVerifier) now() time.Time {
	if v.clock != nil {
		return v.clock()
	}
	return time.Now()
}

func (v ekVerifier) rand() interface{ Read([]byte) (int, error) } {
	if v.rnd == nil {
		return rand.Reader
	}
	return v.rnd
}

func (v ekVerifier) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := v.rand().Read(b); err != nil {
		return nil, fmt.Errorf("verify: random: %w", err)
	}
	return b, nil
}

// ekProof is a TPM's EK proof in progress, the one shape of it for node attestation
// (Session) and DevID enrollment (Enrollment): what the verifier learned of the EK (its
// identity, certificate and lists) and of the AK (attributes, key, qualified name), and
// the credential it sealed to them with the nonce it drew.
type ekProof struct {
	id    *Identity
	akPub *tpm2.TPMTPublic
	akKey crypto.PublicKey
	// akQN is the AK's qualified name as a child of the EK, which the TPM signs in every
	// TPMS_ATTEST as qualifiedSigner.
	akQN            []byte
	secret, nonce   []byte
	blob, encSecret []byte
	// decoded is what was decoded of the Hello, remembered by remember once the
	// attestation is accepted unless it came from memory (known.go).
	decoded    *knownTPM
	decodedKey [32]byte
	fromMemory bool
}

// remember keeps what was decoded of this TPM's Hello for its next attestation; called
// once the attestation is accepted.
func (p *ekProof) remember() {
	if !p.fromMemory {
		known.put(p.decodedKey, p.decoded)
	}
}

// checkActivation is the last step of the proof: the secret the agent recovered with
// TPM2_ActivateCredential must be the one sealed to the EK for the AK's name, which only
// the TPM holding both keys can recover (TPM 2.0 Part 1, 24 "Credential Protection").
func (p *ekProof) checkActivation(secret []byte) error {
	if subtle.ConstantTimeCompare(secret, p.secret) != 1 {
		return reject(CheckCredential, "activated secret is wrong: the AK is not in the TPM that holds this EK (ek_hash=%s)", p.id.EKHash)
	}
	return nil
}

// begin checks the EK (certificate, key match, lists) and the AK, then seals a fresh
// secret to the EK for the AK's name (TPM2_MakeCredential) and draws a nonce.
func (v ekVerifier) begin(ekCert, ekPublic, akPublic []byte, props protocol.TPMProperties) (*ekProof, error) {
	return v.prove(ekCert, ekPublic, akPublic, props, nil, nil)
}

// resume checks the same as begin, and takes the secret and nonce of a challenge already
// sent (by another verifier sharing the session) instead of drawing new ones.
func (v ekVerifier) resume(ekCert, ekPublic, akPublic []byte, secret, nonce []byte) (*ekProof, error) {
	if len(secret) != 32 || len(nonce) != 32 {
		return nil, reject(CheckProtocol, "saved challenge: secret is %d bytes and nonce %d, want 32 each", len(secret), len(nonce))
	}
	return v.prove(ekCert, ekPublic, akPublic, protocol.TPMProperties{}, secret, nonce)
}

// prove checks the EK and AK and seals a new credential, or, given secret and nonce,
// keeps those.
func (v ekVerifier) prove(ekCert, ekPublic, akPublic []byte, props protocol.TPMProperties, secret, nonce []byte) (*ekProof, error) {
	key := knownKey(ekCert, ekPublic, akPublic)
	k, fromMemory := known.get(key)
	var err error
	if !fromMemory {
		k = &knownTPM{}
		if k.ekPub, err = unmarshalPublic(ekPublic); err != nil {
			return nil, reject(CheckEKPublic, "EK public area: %v", err)
		}
	}
	ekPub := k.ekPub
	id, err := v.checkEK(ekCert, props, ekPub, k.cert)
	if err != nil {
		var ce *CheckError
		if id != nil && errors.As(err, &ce) {
			ce.EKHash = id.EKHash
		}
		return nil, err
	}
	if !fromMemory {
		k.cert = id.EKCert
		if k.akPub, err = unmarshalPublic(akPublic); err != nil {
			return nil, &CheckError{Check: CheckAKAttributes, Err: fmt.Errorf("AK public area: %v", err), EKHash: id.EKHash}
		}
	}
	akPub := k.akPub
	akKey, err := checkAK(akPub)
	if err != nil {
		err.(*CheckError).EKHash = id.EKHash
		return nil, err
	}
	akName, err := canonicalName(akPub.NameAlg, akPublic)
	if err != nil {
		return nil, reject(CheckAKAttributes, "AK name: %v", err)
	}
	ekName, err := canonicalName(ekPub.NameAlg, ekPublic)
	if err != nil {
		return nil, reject(CheckEKPublic, "EK name: %v", err)
	}
	akQN, err := tpmrules.AKQualifiedName(ekPub.NameAlg, ekName.Buffer, akPub.NameAlg, akName.Buffer)
	if err != nil {
		return nil, reject(CheckAKAttributes, "AK qualified name: %v", err)
	}
	ekKEM, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		return nil, reject(CheckEKPublic, "EK cannot receive a credential: %v", err)
	}
	p := &ekProof{id: id, akPub: akPub, akKey: akKey, akQN: akQN, decoded: k, decodedKey: key, fromMemory: fromMemory}
	if secret != nil {
		p.secret, p.nonce = secret, nonce
		return p, nil
	}
	if secret, err = v.random(32); err != nil {
		return nil, err
	}
	if nonce, err = v.random(32); err != nil {
		return nil, err
	}
	blob, encSecret, err := tpm2.CreateCredential(v.rand(), ekKEM, akName.Buffer, secret)
	if err != nil {
		return nil, reject(CheckEKPublic, "MakeCredential: %v", err)
	}
	p.secret, p.nonce, p.blob, p.encSecret = secret, nonce, blob, encSecret
	return p, nil
}

// checkEK decides whether the EK (ekPub, with certificate ekCert) is one this server
// accepts; parsed is ekCert already parsed (known.go), or nil.
func (v ekVerifier) checkEK(ekCert []byte, props protocol.TPMProperties, ekPub *tpm2.TPMTPublic, parsed *EKCertificate) (*Identity, error) {
	if len(tpmrules.EKAttributesLack(ekPub.ObjectAttributes)) > 0 {
		return nil, reject(CheckEKPublic, "not an endorsement key: want a restricted decryption key fixed to its TPM")
	}
	key, err := tpm2.Pub(*ekPub)
	if err != nil {
		return nil, reject(CheckEKPublic, "EK public key: %v", err)
	}
	hash, err := EKHash(key)
	if err != nil {
		return nil, reject(CheckEKPublic, "%v", err)
	}
	id := &Identity{EKHash: hash, EKPublicKey: key, TPM: props, CertStatus: "none"}
	if t := tpmrules.EKType(ekPub); v.policy.Type != "" && t != v.policy.Type {
		return id, reject(CheckEKType, "EK type %s is not the one this server accepts, %s (ek_hash=%s): each EK of a TPM is another agent ID, so one type is served; set the agent's ek_type = %q",
			t, v.policy.Type, hash, v.policy.Type)
	}
	if v.policy.Deny[hash] {
		return id, reject(CheckEKDenylist, "EK %s is deny-listed", hash)
	}
	allowed := v.policy.Allow[hash]
	var certErr error
	if len(ekCert) > 0 {
		id.EKCert, id.CertStatus, certErr = v.checkEKCert(ekCert, parsed, key, hash)
		if certErr != nil && FailedCheck(certErr) == CheckEKKeyMatch {
			// A certificate for another TPM's EK is an attack, not a missing certificate.
			return id, certErr
		}
	}
	switch {
	case v.policy.RequireCertAndAllow && (certErr != nil || id.EKCert == nil):
		if certErr == nil {
			certErr = reject(CheckEKCertificate, "no EK certificate (ek_hash=%s); both a valid certificate and an allow-listed hash are required", hash)
		}
		return id, certErr
	case v.policy.RequireCertAndAllow && !allowed:
		return id, reject(CheckEKAllowlist, "EK %s has a valid certificate but is not allow-listed; both are required", hash)
	case id.EKCert != nil && certErr == nil:
		if id.CertStatus == "expired" {
			id.Warnings = append(id.Warnings, fmt.Sprintf("EK certificate expired on %s, accepted by expired_ek_cert = \"warn\"", id.EKCert.Cert.NotAfter.UTC().Format(time.RFC3339)))
		}
		return id, nil
	case allowed:
		if certErr != nil {
			id.Warnings = append(id.Warnings, "EK certificate did not verify, EK accepted by the allowlist: "+certErr.Error())
			id.EKCert, id.CertStatus = nil, "none"
		}
		return id, nil
	case v.policy.AllowInsecure:
		if certErr != nil {
			id.Warnings = append(id.Warnings, "EK certificate did not verify, accepted by allow_insecure: "+certErr.Error())
			id.CertStatus = "insecure"
			id.EKCert = nil
		} else {
			id.Warnings = append(id.Warnings, "TPM has no EK certificate, accepted by allow_insecure")
		}
		return id, nil
	case certErr != nil:
		return id, certErr
	default:
		return id, reject(CheckEKAllowlist, "TPM sent no EK certificate and EK %s is not allow-listed", hash)
	}
}

func (v ekVerifier) checkEKCert(raw []byte, parsed *EKCertificate, ekKey crypto.PublicKey, hash string) (*EKCertificate, string, error) {
	r, err := verifyEKCert(raw, parsed, ekKey, v.policy.Bundle, v.now())
	switch {
	case r.Cert == nil:
		return nil, "", reject(CheckEKCertificate, "%v (ek_hash=%s)", err, hash)
	case !r.KeyMatches:
		return nil, "", reject(CheckEKKeyMatch, "%v (ek_hash=%s)", err, hash)
	case v.policy.Bundle == nil:
		return nil, "", reject(CheckEKCertificate, "no manufacturer CA bundle is configured (ca_path) to verify the EK certificate (ek_hash=%s)", hash)
	case err == nil:
		return r.Cert, "valid", nil
	case errors.Is(err, ErrExpired) && v.policy.Expired == ExpiredWarn:
		return r.Cert, "expired", nil
	case errors.Is(err, ErrExpired):
		return nil, "", reject(CheckEKExpired, "%v (ek_hash=%s); expired_ek_cert = \"warn\" accepts it with the selector ek_cert:expired", err, hash)
	default:
		return nil, "", reject(CheckEKCertificate, "%v (ek_hash=%s)", err, hash)
	}
}

// EKCertCheck is what VerifyEKCert found, step by step.
type EKCertCheck struct {
	// Cert is the EK certificate; nil when it did not parse.
	Cert *EKCertificate
	// KeyMatches says that the certificate certifies the EK.
	KeyMatches bool
	// Chains are the verified chains, from the certificate to a root of the bundle.
	Chains [][]*x509.Certificate
}

// VerifyEKCert is the certificate half of an EK proof, as the verifier, `omens ek
// verify` and the lab's status run it: it parses raw, the EK certificate as read from NV
// (ParseEKCertificate), requires that it certify ekKey, the EK public key (CheckPublicKey),
// and verifies its chain to bundle at time now (Bundle.VerifyEKCertificate); with a nil
// bundle, the chain is not verified. It stops at the first step that fails, and returns
// that step's error with what it found so far: a nil Cert for a certificate that does not
// parse, KeyMatches false for one of another key, no Chains for one that does not chain.
func VerifyEKCert(raw []byte, ekKey crypto.PublicKey, bundle *Bundle, now time.Time) (*EKCertCheck, error) {
	return verifyEKCert(raw, nil, ekKey, bundle, now)
}

// verifyEKCert is VerifyEKCert with raw already parsed as parsed, unless nil.
func verifyEKCert(raw []byte, parsed *EKCertificate, ekKey crypto.PublicKey, bundle *Bundle, now time.Time) (*EKCertCheck, error) {
	r := &EKCertCheck{}
	c, err := parsed, error(nil)
	if c == nil {
		if c, err = ParseEKCertificate(raw); err != nil {
			return r, err
		}
	}
	r.Cert = c
	if err := c.CheckPublicKey(ekKey); err != nil {
		return r, err
	}
	r.KeyMatches = true
	if bundle == nil {
		return r, nil
	}
	r.Chains, err = bundle.VerifyEKCertificate(c, now)
	return r, err
}
