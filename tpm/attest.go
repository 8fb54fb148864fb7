package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpmrules"
)

// Quote has the AK sign the selected PCRs of one bank with nonce as qualifying data
// (TPM2_Quote, Part 3, 18.4). It returns the TPMS_ATTEST the TPM signed and the
// TPMT_SIGNATURE, both as the TPM marshalled them, which is what a verifier checks.
func Quote(t transport.TPM, ak *AK, bank Bank, pcrs []int, nonce []byte) (attest, signature []byte, err error) {
	r, err := tpm2.Quote{
		SignHandle:     ak.AuthHandle(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      tpmrules.PCRSelection(bank, pcrs),
	}.Execute(t)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: Quote(%s %v): %w", bank.Name, pcrs, err)
	}
	return r.Quoted.Bytes(), tpm2.Marshal(r.Signature), nil
}

// ActivateCredential recovers the secret a verifier sealed to this TPM's EK for the AK's
// name (TPM2_ActivateCredential, Part 3, 12.5). Only the TPM that holds both keys can: it
// proves the AK lives beside the EK.
func ActivateCredential(t transport.TPM, ak *AK, ek *EK, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	r, err := tpm2.ActivateCredential{
		ActivateHandle: ak.AuthHandle(),
		KeyHandle:      ekAuth(ek),
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: ActivateCredential: %w", err)
	}
	return r.CertInfo.Buffer, nil
}
