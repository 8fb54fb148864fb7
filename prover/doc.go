// Package prover is the TPM half of both of omens' exchanges, the counterpart of package
// verify: node attestation (Prover.Begin and Exchange.Answer, checked by verify's Begin and
// Session.Finish) and DevID enrollment (Prover.BeginEnrollment and Enrollment.Answer,
// checked by verify's BeginEnrollment and Enrollment.Finish). It answers with the host's
// TPM; both choose the EK the same way. Private keys never leave the TPM: the AK is
// created in it, persisted at a handle, and only asked to sign quotes and activate
// credentials.
//
// In steady state (EK and AK persisted, EK certificate and TPM properties read once per
// Prover) one attestation sends 7 TPM commands: ReadPublic (EK), ReadPublic (AK),
// StartAuthSession, PolicySecret and ActivateCredential (the EK policy), Quote, PCR_Read.
// No key is generated. DevID mode adds, with the DevID key at a persistent handle, 2:
// ReadPublic (DevID) and Certify; with the key in blob files, 4 under a persisted SRK:
// ReadPublic (SRK), Load (DevID), Certify, FlushContext (DevID); and without a persisted
// SRK, 6: CreatePrimary (SRK, a key derivation) and its FlushContext besides.
//
// Files: prover.go (attestation), devid.go (its DevID mode), enroll.go (DevID enrollment).
package prover
