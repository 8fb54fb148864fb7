package tpmrules

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// NumPCRs is the number of PCRs a PC Client TPM has in each bank (PC Client Platform TPM
// Profile, 4.6.2).
const NumPCRs = 24

// Bank names a PCR bank by its hash algorithm.
type Bank struct {
	Name string
	Alg  tpm2.TPMIAlgHash
	Size int
}

// Banks omens reads, quotes and verifies. sha1 and sha256 are what PC Client TPMs
// allocate; sha384 is accepted where a TPM has it.
var Banks = []Bank{
	{"sha1", tpm2.TPMAlgSHA1, 20},
	{"sha256", tpm2.TPMAlgSHA256, 32},
	{"sha384", tpm2.TPMAlgSHA384, 48},
}

// DefaultPCRBank is the bank quoted and verified when the configuration names none.
const DefaultPCRBank = "sha256"

// DefaultPCRs returns the PCR selection quoted, verified and pinned when the
// configuration names none: 0, 2, 4 and 7, the PCRs a LUKS/Clevis TPM binding uses
// (firmware code, option ROM code, boot loader, Secure Boot policy). Each call returns a
// new slice.
func DefaultPCRs() []int { return []int{0, 2, 4, 7} }

// ParseBank returns the bank of the exact name ("sha256"). Its error is a phrase for the
// caller to prefix.
func ParseBank(name string) (Bank, error) {
	for _, b := range Banks {
		if b.Name == name {
			return b, nil
		}
	}
	return Bank{}, fmt.Errorf("unknown PCR bank %q (want sha1, sha256 or sha384)", name)
}

// BankOf returns the bank of hash algorithm alg.
func BankOf(alg tpm2.TPMIAlgHash) (Bank, bool) {
	for _, b := range Banks {
		if b.Alg == alg {
			return b, true
		}
	}
	return Bank{}, false
}

// BankName names the bank of alg, "" when it is none of Banks.
func BankName(alg tpm2.TPMIAlgHash) string {
	b, _ := BankOf(alg)
	return b.Name
}

// PCRSelection builds the TPML_PCR_SELECTION for pcrs in one bank.
func PCRSelection(bank Bank, pcrs []int) tpm2.TPMLPCRSelection {
	idx := make([]uint, len(pcrs))
	for i, p := range pcrs {
		idx[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      bank.Alg,
		PCRSelect: tpm2.PCClientCompatible.PCRs(idx...),
	}}}
}

// SelectedPCRs lists, in ascending order within each selection, the PCRs a
// TPML_PCR_SELECTION selects, by hash algorithm; a bank with no PCR selected is left out.
func SelectedPCRs(sel tpm2.TPMLPCRSelection) map[tpm2.TPMIAlgHash][]int {
	out := map[tpm2.TPMIAlgHash][]int{}
	for _, s := range sel.PCRSelections {
		for i, b := range s.PCRSelect {
			for bit := range 8 {
				if b&(1<<bit) != 0 {
					out[s.Hash] = append(out[s.Hash], i*8+bit)
				}
			}
		}
	}
	return out
}
