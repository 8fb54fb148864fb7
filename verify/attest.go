package verify

// This file verifies one TPM node attestation (protocol package): the EK (certificate
// chain, certificate key equal to the EK public area, or allow-listed), the AK (attributes
// and scheme), credential activation (TPM 2.0 Part 1, 24 "Credential Protection"), and the
// quote (Part 3, 18.4) over the PCR selection the server requires. In DevID mode, also the
// DevID (devidcert.go: chain, revocation, certificate key; devid.go: key attributes) and
// the AK's TPM2_Certify of the DevID key over the same nonce (Part 3, 18.2), which puts
// the DevID key in the TPM whose EK activated the credential. The PCR values' meaning
// (the boot policy) is the policy package's.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpmrules"
)

// Checks, named in every rejection (CheckError.Check) and in audit lines.
const (
	CheckProtocol       = "protocol"
	CheckEKPublic       = "ek_public"
	CheckEKCertificate  = "ek_certificate"
	CheckEKKeyMatch     = "ek_key_match"
	CheckEKAllowlist    = "ek_allowlist"
	CheckEKDenylist     = "ek_denylist"
	CheckEKType         = "ek_type"
	CheckAKAttributes   = "ak_attributes"
	CheckCredential     = "credential_activation"
	CheckQuoteSignature = "quote_signature"
	CheckQuoteNonce     = "quote_nonce"
	CheckQuoteSelection = "quote_selection"
	CheckPCRDigest      = "pcr_digest"
	CheckPCRSelection   = "pcr_selection"
	// CheckWeakHash: a signature (AK scheme, quote, Certify, CSR) or a name (the AK's,
	// the DevID key's) uses a hash weaker than SHA-256.
	CheckWeakHash = "weak_hash"
	// CheckQuoteStructure: a field of the quote's TPMS_ATTEST holds what the spec does
	// not let a TPM put there (qualifiedSigner not this AK's qualified name, extraData
	// longer than the nonce, a PCR digest not of the signing hash's size).
	CheckQuoteStructure = "quote_structure"
	// CheckFirmware: the firmware version the agent's Hello claims is not the one the
	// TPM signed in the quote (TPMS_ATTEST.firmwareVersion).
	CheckFirmware = "firmware_mismatch"
)

// CheckError is a rejection: the check that failed and why, naming the value.
type CheckError struct {
	Check string
	Err   error
	// EKHash is the EK hash of the TPM that was rejected, when the verifier got that far,
	// for the audit log.
	EKHash string
}

func (e *CheckError) Error() string { return "attest: " + e.Check + ": " + e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

func reject(check string, format string, args ...any) error {
	return &CheckError{Check: check, Err: fmt.Errorf(format, args...)}
}

// FailedCheck returns the check named by err, or "" when err is not a rejection.
func FailedCheck(err error) string {
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Check
	}
	return ""
}

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
	// Type is the one EK type accepted (tpmrules.EKTypeRSA2048, EKTypeECCP256,
	// EKTypeECCP384);
	// empty accepts every type. A TPM holds up to three certified EKs, each its own agent
	// ID: accepting one type gives a chip one identity, so that a ban or a deny-listed
	// hash keeps the chip out rather than one of its keys.
	Type string
}

// Verifier checks attestations. Its fields are read-only once in use.
type Verifier struct {
	// Mode is the attestation mode served: protocol.ModeEKCert (also when empty) or
	// protocol.ModeDevID. A Hello of the other mode is refused.
	Mode string
	EK   EKPolicy
	// DevID applies in DevID mode.
	DevID DevIDPolicy
	// PCRBank and PCRs are the selection every quote must cover.
	PCRBank tpm2.TPMIAlgHash
	PCRs    []int
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
	// Rand is the source of secrets and nonces; nil means crypto/rand.
	Rand interface{ Read([]byte) (int, error) }
}

// Identity is what the verifier learned of a TPM from its Hello.
type Identity struct {
	EKHash      string
	EKPublicKey crypto.PublicKey
	// EKCert is the EK certificate; nil when the TPM sent none.
	EKCert *EKCertificate
	// CertStatus is "valid", "expired", "none" (no certificate) or "insecure" (a
	// certificate that did not verify, accepted by AllowInsecure).
	CertStatus string
	// TPM is what the agent's Hello claims of its TPM: unsigned, for logs only. What is
	// proven is EKCert.TPM (the manufacturer's signed SAN) and Result.Firmware (signed by
	// the TPM in the quote).
	TPM      protocol.TPMProperties
	Warnings []string
	// Mode is the attestation mode, protocol.ModeEKCert or protocol.ModeDevID.
	Mode string
	// DevID is the DevID certificate and key in DevID mode; nil in EK mode. Until Finish
	// accepts the AK's Certify of the key, nothing says the key is in this TPM.
	DevID *DevIDIdentity
}

// Session carries a verification from the Hello to the Evidence.
type Session struct {
	v     *Verifier
	hello *protocol.Hello
	akPub tpm2.TPMTPublic
	akKey crypto.PublicKey
	// akQN is the AK's qualified name as a child of the EK, which the TPM signs in every
	// TPMS_ATTEST as qualifiedSigner.
	akQN      []byte
	secret    []byte
	nonce     []byte
	Identity  *Identity
	bankAlg   tpm2.TPMIAlgHash
	completed bool
}

// Result is an accepted attestation.
type Result struct {
	*Identity
	PCRBank string
	// PCRs maps each quoted PCR to its value.
	PCRs map[int][]byte
	// PCRDigest is the quoted digest of the PCR values, hex.
	PCRDigest string
	// Firmware is the TPM's firmware version as the TPM signed it in the quote
	// (TPMS_ATTEST.firmwareVersion, protocol.FirmwareVersion's format); the Hello's claim
	// was checked against it.
	Firmware string
	// EventLog is the boot event log the agent sent, unparsed; nil when none.
	EventLog []byte
}

func (v *Verifier) mode() string {
	if v.Mode == "" {
		return protocol.ModeEKCert
	}
	return v.Mode
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) random(n int) ([]byte, error) {
	b := make([]byte, n)
	r := v.Rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := r.Read(b); err != nil {
		return nil, fmt.Errorf("attest: random: %w", err)
	}
	return b, nil
}

// unmarshalCanonical decodes a TPM structure and insists on its canonical encoding (no
// trailing bytes, no alternative encodings), recovering from any panic of the marshaller.
func unmarshalCanonical[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (out *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("cannot re-encode: %v", r)
		}
	}()
	v, err := tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, errors.New("not in canonical TPM encoding (trailing or extra bytes)")
	}
	return v, nil
}

// canonicalName is the name of an object whose public area pub is in canonical encoding
// (unmarshalCanonical): its name algorithm and the digest of pub (Part 1, 16 "Names"),
// what tpm2.ObjectName computes without marshalling the area again.
func canonicalName(nameAlg tpm2.TPMIAlgHash, pub []byte) (*tpm2.TPM2BName, error) {
	h, err := nameAlg.Hash()
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(pub)
	name := binary.BigEndian.AppendUint16(make([]byte, 0, 2+h.Size()), uint16(nameAlg))
	return &tpm2.TPM2BName{Buffer: d.Sum(name)}, nil
}

// Begin checks a Hello and returns the Challenge to send. The Session keeps the secret and
// nonce for Finish.
func (v *Verifier) Begin(helloBytes []byte) (*Session, *protocol.Challenge, error) {
	hello, err := protocol.DecodeHello(helloBytes)
	if err != nil {
		return nil, nil, &CheckError{Check: CheckProtocol, Err: err}
	}
	mode := v.mode()
	if hello.Mode != mode {
		return nil, nil, reject(CheckProtocol, "mode %q is not served by this verifier (want %q)", hello.Mode, mode)
	}
	bank, err := tpmrules.ParseBank(hello.PCRBank)
	if err != nil {
		return nil, nil, reject(CheckPCRSelection, "%v", err)
	}
	bankAlg := bank.Alg
	if bankAlg != v.PCRBank || !slices.Equal(hello.PCRs, v.PCRs) {
		return nil, nil, reject(CheckPCRSelection, "agent selects %s %v, server requires %s %v (set pcr_bank and pcr_selection alike on both sides)",
			hello.PCRBank, hello.PCRs, tpmrules.BankName(v.PCRBank), v.PCRs)
	}
	c, err := v.credential(hello.EKCert, hello.EKPublic, hello.AKPublic, hello.TPM)
	if err != nil {
		return nil, nil, err
	}
	c.id.Mode = mode
	if mode == protocol.ModeDevID {
		if c.id.DevID, err = v.checkDevID(hello.DevIDCert, hello.DevIDPublic); err != nil {
			var ce *CheckError
			if errors.As(err, &ce) {
				ce.EKHash = c.id.EKHash
			}
			return nil, nil, err
		}
	}
	s := &Session{v: v, hello: hello, akPub: *c.akPub, akKey: c.akKey, akQN: c.akQN, secret: c.secret, nonce: c.nonce, Identity: c.id, bankAlg: bankAlg}
	return s, &protocol.Challenge{CredentialBlob: c.blob, EncryptedSecret: c.encSecret, Nonce: c.nonce}, nil
}

// challenge is what a verifier learned of a TPM's EK and AK and the credential it sealed
// to them: shared by node attestation (Begin) and DevID enrollment (BeginEnrollment).
type challenge struct {
	id              *Identity
	akPub           *tpm2.TPMTPublic
	akKey           crypto.PublicKey
	akQN            []byte
	secret, nonce   []byte
	blob, encSecret []byte
}

// credential checks the EK (certificate, key match, lists) and the AK, then seals a fresh
// secret to the EK for the AK's name (TPM2_MakeCredential) and draws a nonce.
func (v *Verifier) credential(ekCert, ekPublic, akPublic []byte, props protocol.TPMProperties) (*challenge, error) {
	ekPub, err := unmarshalPublic(ekPublic)
	if err != nil {
		return nil, reject(CheckEKPublic, "EK public area: %v", err)
	}
	id, err := v.checkEK(ekCert, props, ekPub)
	if err != nil {
		var ce *CheckError
		if id != nil && errors.As(err, &ce) {
			ce.EKHash = id.EKHash
		}
		return nil, err
	}
	akPub, err := unmarshalPublic(akPublic)
	if err != nil {
		return nil, &CheckError{Check: CheckAKAttributes, Err: fmt.Errorf("AK public area: %v", err), EKHash: id.EKHash}
	}
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
	akQN, err := akQualifiedName(ekPub.NameAlg, ekName.Buffer, akPub.NameAlg, akName.Buffer)
	if err != nil {
		return nil, reject(CheckAKAttributes, "AK qualified name: %v", err)
	}
	ekKEM, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		return nil, reject(CheckEKPublic, "EK cannot receive a credential: %v", err)
	}
	secret, err := v.random(32)
	if err != nil {
		return nil, err
	}
	nonce, err := v.random(32)
	if err != nil {
		return nil, err
	}
	r := v.Rand
	if r == nil {
		r = rand.Reader
	}
	blob, encSecret, err := tpm2.CreateCredential(r, ekKEM, akName.Buffer, secret)
	if err != nil {
		return nil, reject(CheckEKPublic, "MakeCredential: %v", err)
	}
	return &challenge{id: id, akPub: akPub, akKey: akKey, akQN: akQN, secret: secret, nonce: nonce, blob: blob, encSecret: encSecret}, nil
}

// checkEK decides whether the EK (ekPub, with certificate ekCert) is one this server
// accepts.
func (v *Verifier) checkEK(ekCert []byte, props protocol.TPMProperties, ekPub *tpm2.TPMTPublic) (*Identity, error) {
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
	if t := tpmrules.EKType(ekPub); v.EK.Type != "" && t != v.EK.Type {
		return id, reject(CheckEKType, "EK type %s is not the one this server accepts, %s (ek_hash=%s): each EK of a TPM is another agent ID, so one type is served; set the agent's ek_type = %q",
			t, v.EK.Type, hash, v.EK.Type)
	}
	if v.EK.Deny[hash] {
		return id, reject(CheckEKDenylist, "EK %s is deny-listed", hash)
	}
	allowed := v.EK.Allow[hash]
	var certErr error
	if len(ekCert) > 0 {
		id.EKCert, id.CertStatus, certErr = v.checkEKCert(ekCert, key, hash)
		if certErr != nil && FailedCheck(certErr) == CheckEKKeyMatch {
			// A certificate for another TPM's EK is an attack, not a missing certificate.
			return id, certErr
		}
	}
	switch {
	case v.EK.RequireCertAndAllow && (certErr != nil || id.EKCert == nil):
		if certErr == nil {
			certErr = reject(CheckEKCertificate, "no EK certificate (ek_hash=%s); both a valid certificate and an allow-listed hash are required", hash)
		}
		return id, certErr
	case v.EK.RequireCertAndAllow && !allowed:
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
	case v.EK.AllowInsecure:
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

func (v *Verifier) checkEKCert(raw []byte, ekKey crypto.PublicKey, hash string) (*EKCertificate, string, error) {
	c, err := ParseEKCertificate(raw)
	if err != nil {
		return nil, "", reject(CheckEKCertificate, "%v (ek_hash=%s)", err, hash)
	}
	if err := c.CheckPublicKey(ekKey); err != nil {
		return nil, "", reject(CheckEKKeyMatch, "%v (ek_hash=%s)", err, hash)
	}
	if v.EK.Bundle == nil {
		return nil, "", reject(CheckEKCertificate, "no manufacturer CA bundle is configured (ca_path) to verify the EK certificate (ek_hash=%s)", hash)
	}
	_, err = v.EK.Bundle.VerifyEKCertificate(c, v.now())
	switch {
	case err == nil:
		return c, "valid", nil
	case errors.Is(err, ErrExpired) && v.EK.Expired == ExpiredWarn:
		return c, "expired", nil
	default:
		return nil, "", reject(CheckEKCertificate, "%v (ek_hash=%s)", err, hash)
	}
}

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

// Finish checks the Evidence against the session's challenge. A session finishes once.
func (s *Session) Finish(evidenceBytes []byte) (*Result, error) {
	if s.completed {
		return nil, reject(CheckProtocol, "message out of order: this attestation already received its evidence")
	}
	s.completed = true
	ev, err := protocol.DecodeEvidence(evidenceBytes)
	if err != nil {
		return nil, &CheckError{Check: CheckProtocol, Err: err}
	}
	res, err := s.finish(ev)
	if err != nil {
		var ce *CheckError
		if errors.As(err, &ce) && ce.EKHash == "" {
			ce.EKHash = s.Identity.EKHash
		}
		return nil, err
	}
	return res, nil
}

func (s *Session) finish(ev *protocol.Evidence) (*Result, error) {
	if s.Identity.DevID == nil && len(ev.DevIDCertify) > 0 {
		return nil, reject(CheckProtocol, "the evidence carries a DevID Certify, but this attestation is in mode %q", s.Identity.Mode)
	}
	if subtle.ConstantTimeCompare(ev.Secret, s.secret) != 1 {
		return nil, reject(CheckCredential, "activated secret is wrong: the AK is not in the TPM that holds this EK (ek_hash=%s)", s.Identity.EKHash)
	}
	attest, err := unmarshalCanonical[tpm2.TPMSAttest](ev.Quote)
	if err != nil {
		return nil, reject(CheckQuoteSignature, "quote: %v", err)
	}
	sig, err := unmarshalCanonical[tpm2.TPMTSignature](ev.Signature)
	if err != nil {
		return nil, reject(CheckQuoteSignature, "signature: %v", err)
	}
	digestHash, err := signingHash(&s.akPub)
	if err != nil {
		return nil, reject(CheckPCRDigest, "%v", err)
	}
	// Every field bounded before anything is hashed or believed.
	if err := checkAttestFields(attest, attestBounds{signerAlg: s.akPub.NameAlg, typ: tpm2.TPMSTAttestQuote, nonce: len(s.nonce), digest: digestHash.Size()}); err != nil {
		return nil, reject(CheckQuoteStructure, "quote: %v", err)
	}
	if err := verifySignature(s.akKey, &s.akPub, ev.Quote, sig, "quote"); err != nil {
		if FailedCheck(err) != "" {
			return nil, err
		}
		return nil, reject(CheckQuoteSignature, "%v (ek_hash=%s)", err, s.Identity.EKHash)
	}
	// A restricted AK also signs data from outside the TPM (TPM2_Sign with a TPM2_Hash
	// ticket) as long as it does not start with TPM_GENERATED_VALUE; only that magic makes
	// the structure the TPM's own (Part 1, 11.4.7). go-tpm does not check it when
	// unmarshalling.
	if attest.Magic != tpm2.TPMGeneratedValue {
		return nil, reject(CheckQuoteSignature, "quote magic 0x%08X is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate (ek_hash=%s)",
			uint32(attest.Magic), s.Identity.EKHash)
	}
	// From here the quote is the TPM's own statement.
	if attest.Type != tpm2.TPMSTAttestQuote {
		return nil, reject(CheckQuoteSignature, "attestation type 0x%04X is not a quote", uint16(attest.Type))
	}
	if err := checkSigner(attest, s.akQN); err != nil {
		return nil, reject(CheckQuoteStructure, "quote: %v", err)
	}
	if subtle.ConstantTimeCompare(attest.ExtraData.Buffer, s.nonce) != 1 {
		return nil, reject(CheckQuoteNonce, "quote qualifying data %x is not this attestation's nonce %x (a replayed quote?)", attest.ExtraData.Buffer, s.nonce)
	}
	firmware := protocol.FirmwareVersion(attest.FirmwareVersion)
	if s.hello.TPM.Firmware != firmware {
		return nil, reject(CheckFirmware, "the hello claims firmware %q, the TPM signed firmware %q in the quote (TPMS_ATTEST.firmwareVersion 0x%016X)",
			s.hello.TPM.Firmware, firmware, attest.FirmwareVersion)
	}
	info, err := attest.Attested.Quote()
	if err != nil {
		return nil, reject(CheckQuoteSignature, "quote info: %v", err)
	}
	quoted := tpmrules.SelectedPCRs(info.PCRSelect)
	want := map[tpm2.TPMIAlgHash][]int{s.bankAlg: s.hello.PCRs}
	if !sameSelection(quoted, want) {
		return nil, reject(CheckQuoteSelection, "quote covers %s, want %s %v", describeSelection(quoted), tpmrules.BankName(s.bankAlg), s.hello.PCRs)
	}
	if len(ev.PCRValues) != len(s.hello.PCRs) {
		return nil, reject(CheckPCRDigest, "%d PCR values for %d quoted PCRs", len(ev.PCRValues), len(s.hello.PCRs))
	}
	h, err := s.bankAlg.Hash()
	if err != nil {
		return nil, reject(CheckPCRDigest, "%v", err)
	}
	d := digestHash.New()
	pcrs := make(map[int][]byte, len(ev.PCRValues))
	for i, val := range ev.PCRValues {
		if len(val) != h.Size() {
			return nil, reject(CheckPCRDigest, "PCR %d value is %d bytes, want %d for %s", s.hello.PCRs[i], len(val), h.Size(), tpmrules.BankName(s.bankAlg))
		}
		d.Write(val)
		pcrs[s.hello.PCRs[i]] = val
	}
	if sum := d.Sum(nil); subtle.ConstantTimeCompare(sum, info.PCRDigest.Buffer) != 1 {
		return nil, reject(CheckPCRDigest, "PCR values hash to %x, the quote says %x", sum, info.PCRDigest.Buffer)
	}
	if s.Identity.DevID != nil {
		// The AK is in the EK's TPM (the credential was activated); its Certify over
		// this attestation's nonce puts the DevID key there too, now.
		if len(ev.DevIDCertify) == 0 {
			return nil, reject(CheckCertify, "the evidence carries no Certify of the DevID key, which mode %q requires", protocol.ModeDevID)
		}
		if err := verifyCertify(&s.akPub, s.akQN, ev.DevIDCertify, ev.DevIDCertifySignature, s.nonce, s.Identity.DevID.Public); err != nil {
			return nil, err
		}
	}
	return &Result{
		Identity:  s.Identity,
		PCRBank:   tpmrules.BankName(s.bankAlg),
		PCRs:      pcrs,
		PCRDigest: hex.EncodeToString(info.PCRDigest.Buffer),
		Firmware:  firmware,
		EventLog:  ev.EventLog,
	}, nil
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

// verifySignature checks sig over msg (a "quote" or other TPMS_ATTEST, as what says) with
// the AK, in the AK's own scheme.
// A signature that says it used a hash weaker than SHA-256 is refused as weak_hash before
// anything else, whatever the AK's scheme.
func verifySignature(key crypto.PublicKey, ak *tpm2.TPMTPublic, msg []byte, sig *tpm2.TPMTSignature, what string) error {
	if alg, err := signatureHash(sig); err == nil {
		if err := checkHash(what+" signature hash", alg, ""); err != nil && FailedCheck(err) == CheckWeakHash {
			return err
		}
	}
	h, err := signingHash(ak)
	if err != nil {
		return err
	}
	hh := h.New()
	hh.Write(msg)
	digest := hh.Sum(nil)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if sig.SigAlg != tpm2.TPMAlgECDSA {
			return fmt.Errorf("signature algorithm 0x%04X, the AK signs with ECDSA", uint16(sig.SigAlg))
		}
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return err
		}
		if e.Hash != tpm2.TPMIAlgHash(algOf(h)) {
			return fmt.Errorf("signature hash 0x%04X is not the AK's", uint16(e.Hash))
		}
		r, s := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest, r, s) {
			return fmt.Errorf("bad %s signature: not made by this AK", what)
		}
		return nil
	case *rsa.PublicKey:
		var r *tpm2.TPMSSignatureRSA
		switch sig.SigAlg {
		case tpm2.TPMAlgRSASSA:
			r, err = sig.Signature.RSASSA()
		case tpm2.TPMAlgRSAPSS:
			r, err = sig.Signature.RSAPSS()
		default:
			return fmt.Errorf("signature algorithm 0x%04X, the AK signs with RSA", uint16(sig.SigAlg))
		}
		if err != nil {
			return err
		}
		if r.Hash != tpm2.TPMIAlgHash(algOf(h)) {
			return fmt.Errorf("signature hash 0x%04X is not the AK's", uint16(r.Hash))
		}
		if sig.SigAlg == tpm2.TPMAlgRSAPSS {
			err = rsa.VerifyPSS(k, h, digest, r.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(k, h, digest, r.Sig.Buffer)
		}
		if err != nil {
			return fmt.Errorf("bad %s signature: not made by this AK", what)
		}
		return nil
	}
	return fmt.Errorf("AK key type %T", key)
}

func algOf(h crypto.Hash) tpm2.TPMAlgID {
	switch h {
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512
	}
	return tpm2.TPMAlgNull
}

func sameSelection(a, b map[tpm2.TPMIAlgHash][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func describeSelection(sel map[tpm2.TPMIAlgHash][]int) string {
	if len(sel) == 0 {
		return "no PCRs"
	}
	var out string
	for alg, pcrs := range sel {
		name := tpmrules.BankName(alg)
		if name == "" {
			name = fmt.Sprintf("alg 0x%04X", uint16(alg))
		}
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%s %v", name, pcrs)
	}
	return out
}
