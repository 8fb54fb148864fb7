package doctor

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// checkPCRBank checks that the bank the agent quotes (sha256 unless pcr_bank says
// otherwise) is allocated with every PCR of its pcr_selection, and reads their values.
func (h *host) checkPCRBank() {
	h.bank, _ = tpmrules.ParseBank(tpmrules.DefaultPCRBank)
	h.pcrs = tpmrules.DefaultPCRs()
	if h.attestor != nil {
		if b, err := tpm.ParseBank(h.attestor.Bank); err == nil && h.attestor.Bank != "" {
			h.bank = b
		}
		if len(h.attestor.PCRs) > 0 {
			h.pcrs = slices.Clone(h.attestor.PCRs)
		}
	}
	if h.t == nil {
		h.noTPM("pcr_bank")
		return
	}
	banks, err := tpm.AllocatedPCRs(h.t)
	if err != nil {
		h.add("pcr_bank", Fail, err.Error(), "")
		return
	}
	allocated, ok := banks[h.bank.Alg]
	var missing []int
	for _, p := range h.pcrs {
		if !slices.Contains(allocated, p) {
			missing = append(missing, p)
		}
	}
	if !ok || len(allocated) == 0 || len(missing) > 0 {
		what := fmt.Sprintf("the %s bank is not allocated", h.bank.Name)
		if ok && len(allocated) > 0 {
			what = fmt.Sprintf("the %s bank lacks PCRs %s", h.bank.Name, pcrList(missing))
		}
		h.add("pcr_bank", Fail,
			fmt.Sprintf("%s (allocated: %s); the agent quotes %s PCRs %s", what, describeBanks(banks), h.bank.Name, pcrList(h.pcrs)),
			fmt.Sprintf("allocate it in the firmware setup (TPM PCR banks) or with `tpm2_pcrallocate %s:all`, then reboot", h.bank.Name))
		return
	}
	values, err := tpm.ReadPCRs(h.t, h.bank, h.pcrs)
	if err != nil {
		h.add("pcr_bank", Fail, err.Error(), "")
		return
	}
	h.values = values
	h.pass("pcr_bank", "%s allocated with PCRs %s, the agent's pcr_selection", h.bank.Name, pcrList(h.pcrs))
}

// describeBanks writes the banks that have PCRs allocated: "sha1 (24 PCRs)".
func describeBanks(banks map[tpm2.TPMIAlgHash][]int) string {
	names := map[tpm2.TPMIAlgHash]string{tpm2.TPMAlgSHA512: "sha512", tpm2.TPMAlgSM3256: "sm3_256"}
	var out []string
	for alg, pcrs := range banks {
		if len(pcrs) == 0 {
			continue
		}
		name := tpmrules.BankName(alg)
		if name == "" {
			name = names[alg]
		}
		if name == "" {
			name = fmt.Sprintf("alg 0x%04X", uint16(alg))
		}
		out = append(out, fmt.Sprintf("%s (%d PCRs)", name, len(pcrs)))
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "no bank"
	}
	return strings.Join(out, ", ")
}
