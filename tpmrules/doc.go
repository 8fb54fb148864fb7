// Package tpmrules is the one home of the TPM rules that the prover (package tpm, which
// sends TPM commands) and the verifier (package verify, which never does) must agree on:
// the key templates (AK, SRK, DevID, EK), the attribute rule of each key role, the PCR
// banks and the default PCR selection, persistent-handle parsing and formatting, and the
// hash a signing key's scheme signs with.
//
// It sends no TPM command and imports no transport: it is data and pure functions over
// go-tpm's tpm2 structures, so that the prover checks what it loads or creates with the
// very rule the verifier applies to what the agent sends.
//
// The rules' errors and lists are phrases that each caller words into its own message,
// under its own package prefix (tpm:, verify:, prover:), so that the messages of both
// sides stay what operators know.
//
// References: TCG TPM 2.0 Library, Part 1 (11.4.7 restricted signing keys, 16 names) and
// Part 2 (8.3 TPMA_OBJECT, 12.2.4 TPMT_PUBLIC); TCG EK Credential Profile for TPM Family
// 2.0 (2.2 templates, 2.2.1.4 NV indices, B.6.2 PolicyB); TCG TPM v2.0 Provisioning
// Guidance (7.8 persistent handles); TCG "TPM 2.0 Keys for Device Identity and
// Attestation" (7.3.4 DevID keys); PC Client Platform TPM Profile (4.6.2 PCRs).
package tpmrules
