// Package tpm is the prover side of omens: the only code that sends TPM commands.
//
// It opens a TPM (a character device, a unix socket speaking raw TPM 2.0 commands such as
// swtpm's or `omens tpm simulate`'s, or the in-process reference simulator), reads the
// endorsement key (EK) certificates from NV, loads or creates the EK from the TCG templates,
// reads TPM properties and PCRs, and creates, persists and loads the attestation key (AK).
//
// The templates it creates keys from and the rules it checks loaded keys with are package
// tpmrules', which the verifier applies too.
//
// Every function takes the TPM as a transport.TPM (go-tpm's direct tpm2 API). Over a socket
// a TPM keeps transient objects and sessions after the client goes away (there is no
// resource manager as behind /dev/tpmrm0), so every function here flushes what it loads
// before it returns; TransientHandles lets tests check that.
//
// References: TCG TPM 2.0 Library, Part 2 (structures) and Part 3 (commands); TCG EK
// Credential Profile for TPM Family 2.0, section 2.2 (EK templates) and 2.2.1.4 (NV indices);
// TCG TPM v2.0 Provisioning Guidance, section 7.8 (persistent handles).
package tpm
