package verify

// This file checks a quote (TPM 2.0 Part 3, 18.4): the AK's signature over a TPMS_ATTEST
// the TPM made (magic, type, qualified signer), the nonce as qualifying data, the firmware
// version the TPM signed, the PCR selection the server requires, and the PCR values the
// agent sent against the quoted digest. What the values mean (the boot policy) is the
// policy package's; the event log is replayed against them in eventlog.go.

import (
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpmrules"
)

// quoted is what an accepted quote proves: the PCR values, their digest as the TPM signed
// it, and the TPM's firmware version.
type quoted struct {
	pcrs     map[int][]byte
	digest   []byte
	firmware string
}

// checkQuote checks the evidence's quote, its signature and PCR values against the
// session's AK, nonce and selection.
func (s *Session) checkQuote(ev *protocol.Evidence) (*quoted, error) {
	attest, err := unmarshalAttest(ev.Quote)
	if err != nil {
		return nil, reject(CheckQuoteSignature, "quote: %v", err)
	}
	sig, err := unmarshalSignature(ev.Signature)
	if err != nil {
		return nil, reject(CheckQuoteSignature, "signature: %v", err)
	}
	digestHash, err := signingHash(s.proof.akPub)
	if err != nil {
		return nil, reject(CheckPCRDigest, "%v", err)
	}
	// Every field bounded before anything is hashed or believed.
	if err := checkAttestFields(attest, attestBounds{signerAlg: s.proof.akPub.NameAlg, typ: tpm2.TPMSTAttestQuote, nonce: len(s.proof.nonce), digest: digestHash.Size()}); err != nil {
		return nil, reject(CheckQuoteStructure, "quote: %v", err)
	}
	if err := verifySignature(s.proof.akKey, s.proof.akPub, ev.Quote, sig, "quote"); err != nil {
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
	if err := checkSigner(attest, s.proof.akQN); err != nil {
		return nil, reject(CheckQuoteStructure, "quote: %v", err)
	}
	if subtle.ConstantTimeCompare(attest.ExtraData.Buffer, s.proof.nonce) != 1 {
		return nil, reject(CheckQuoteNonce, "quote qualifying data %x is not this attestation's nonce %x (a replayed quote?)", attest.ExtraData.Buffer, s.proof.nonce)
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
	covered := tpmrules.SelectedPCRs(info.PCRSelect)
	want := map[tpm2.TPMIAlgHash][]int{s.bankAlg: s.hello.PCRs}
	if !sameSelection(covered, want) {
		return nil, reject(CheckQuoteSelection, "quote covers %s, want %s %v", describeSelection(covered), tpmrules.BankName(s.bankAlg), s.hello.PCRs)
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
	return &quoted{pcrs: pcrs, digest: info.PCRDigest.Buffer, firmware: firmware}, nil
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
