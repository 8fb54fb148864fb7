// Package verify is the verifier side of omens: pure functions over the bytes an agent or
// a device sends, which never talk to a TPM. The rules it shares with the prover (key
// templates and attribute rules, PCR banks, the default selection, signing schemes) are
// package tpmrules'.
//
// Where each part lives:
//
//   - attest.go: node attestation, the orchestration: Verifier, Begin (Hello to
//     Challenge), Session.Finish (Evidence to Result).
//   - enroll.go: DevID enrollment for the RA: Enroller, which holds only the EK policy,
//     BeginEnrollment and Enrollment.Finish (the CSR for the host).
//   - ek.go: the EK proof, one for both flows: the EK certificate (VerifyEKCert: parse,
//     key match, chain), the allow- and denylists, the EK type, and credential activation.
//     ekcert.go parses EK certificates as vendors write them; bundle.go and sha1chain.go
//     chain them to the manufacturer CAs; ekhash.go names a TPM by its EK.
//   - ak.go: the attestation key's public area and signing hash.
//   - quote.go: the quote, its PCR selection and the PCR values against its digest.
//   - devid.go: DevID keys, the AK's TPM2_Certify of them, and CSRs; devidcert.go: DevID
//     certificates (chain, revocation, key).
//   - tpmsattest.go: rules for every TPM structure and signature (canonical decoding,
//     names, hash strength, TPMS_ATTEST bounds, the AK's signature); public.go decodes
//     public areas.
//   - checks.go: the name of every check and CheckError, the one type of a rejection.
//   - eventlog.go: the boot event log, replayed against the quoted PCR values of every
//     quoted bank (go-attestation parses and replays it), the structural checks that
//     trust only digests (separators of PCRs 0-7, Secure Boot variables), and BootFacts,
//     what the replayed log proves; Session.Finish calls it after checkQuote as the
//     Verifier's EventLogPolicy asks (ignore, verify, require). What the facts must be
//     (the boot policy) stays the policy package's.
//
// Every error of this package starts with "verify: ". A rejection is a *CheckError that
// names the failed check and the value it failed on; FailedCheck returns its name.
package verify
