package verify

// This file names every check the verifier makes (the value of CheckError.Check in a
// rejection, and of the check field of audit lines), and holds CheckError, the one error
// type of a rejection. A new check is a constant here, beside its siblings.

import (
	"errors"
	"fmt"
)

// Checks, named in every rejection (CheckError.Check) and in audit lines.
const (
	CheckProtocol      = "protocol"
	CheckEKPublic      = "ek_public"
	CheckEKCertificate = "ek_certificate"
	// CheckEKExpired: the EK chain is trusted but a certificate of it (the EK's or a CA's)
	// is expired, and expired_ek_cert is "reject".
	CheckEKExpired      = "ek_cert_expired"
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

// Checks of the boot event log (eventlog.go), named in every rejection
// (CheckError.Check) and in audit lines.
const (
	// CheckEventLogMissing: the verifier requires a log and the evidence carries none.
	CheckEventLogMissing = "event_log_missing"
	// CheckEventLogParse: the log is empty, over MaxEventLogSize, or does not parse
	// (a truncated log, an unknown digest algorithm).
	CheckEventLogParse = "event_log_parse"
	// CheckEventLogSHA1: the log carries only SHA-1 digests and SHA-1 logs are not
	// allowed.
	CheckEventLogSHA1 = "event_log_sha1"
	// CheckEventLogReplay: the log's digests do not extend to a quoted PCR value (the
	// message names the bank, the PCR, the replayed and the quoted value), or a PCR of
	// 0-7 that the log has no event for is not at its reset value.
	CheckEventLogReplay = "event_log_replay"
	// CheckEventLogSeparator: a PCR of 0-7 has no separator or two, an EV_SEPARATOR
	// measures something else, or a separator is typed as another event.
	CheckEventLogSeparator = "event_log_separator"
	// CheckEventLogVariable: a Secure Boot variable of PCR 7 whose data does not hash to
	// the digest that was extended.
	CheckEventLogVariable = "event_log_variable"
	// CheckEventLogSecureBoot: go-attestation cannot read a Secure Boot state from PCR 7
	// (an unexpected event type, a variable after the separator or twice, a UEFI
	// debugger, Secure Boot on with no keys or no authority).
	CheckEventLogSecureBoot = "event_log_secure_boot"
)

// Checks of DevID keys, named in every rejection (CheckError.Check) and in audit lines.
const (
	// CheckDevIDAttributes: the DevID public area, its attributes, type and size.
	CheckDevIDAttributes = "devid_attributes"
	// CheckCertify: the Certify structure, its signature by the AK, its origin (magic)
	// and type.
	CheckCertify = "devid_certify"
	// CheckCertifyNonce: the Certify's qualifying data is not the verifier's nonce.
	CheckCertifyNonce = "devid_certify_nonce"
	// CheckCertifyKey: the Certify is about another key than the DevID key presented.
	CheckCertifyKey = "devid_certify_key"
	// CheckCertifyStructure: a field of the Certify's TPMS_ATTEST holds what the spec
	// does not let a TPM put there (qualifiedSigner not the AK's qualified name,
	// extraData longer than the nonce, a certified name or qualifiedName that is not a
	// name of the DevID key's name algorithm).
	CheckCertifyStructure = "devid_certify_structure"
	// CheckCSRSignature: the CSR does not parse or is not signed by the key it names.
	CheckCSRSignature = "devid_csr"
	// CheckCSRKey: the CSR is for another key than the DevID key.
	CheckCSRKey = "devid_csr_key"
)

// Checks of DevID certificates, named in every rejection (CheckError.Check) and in audit
// lines.
const (
	// CheckDevIDCertificate: the DevID certificate chain does not parse or does not chain
	// to the DevID CA bundle (devid_ca_path).
	CheckDevIDCertificate = "devid_certificate"
	// CheckDevIDExpired: the chain is trusted but a certificate of it is expired.
	CheckDevIDExpired = "devid_expired"
	// CheckDevIDKeyMatch: the certificate is for another key than the DevID public area.
	CheckDevIDKeyMatch = "devid_key_match"
	// CheckDevIDRevoked: the certificate's serial is in its issuer's CRL.
	CheckDevIDRevoked = "devid_revoked"
	// CheckDevIDCRL: no usable CRL (none could be read or fetched, another issuer's, a
	// bad signature, out of date): revocation cannot be checked, so the attestation is
	// refused.
	CheckDevIDCRL = "devid_crl"
	// CheckEKModeException: in DevID mode, an agent in EK mode whose EK is not listed as
	// an EK-mode exception (Verifier.EKModeHosts), or whose EK certificate did not verify.
	CheckEKModeException = "ek_mode_exception"
)

// Check of DevID enrollment.
const (
	// CheckHost: the CSR names another host than the one being enrolled.
	CheckHost = "devid_host"
)

// CheckError is a rejection: the check that failed and why, naming the value.
type CheckError struct {
	Check string
	Err   error
	// EKHash is the EK hash of the TPM that was rejected, when the verifier got that far,
	// for the audit log.
	EKHash string
}

func (e *CheckError) Error() string { return "verify: " + e.Check + ": " + e.Err.Error() }
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

func asCheckError(err error, target **CheckError) bool {
	ce, ok := err.(*CheckError)
	if ok {
		*target = ce
	}
	return ok
}
