package tpm

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpmrules"
)

// Bank is a PCR bank (tpmrules.Bank).
type Bank = tpmrules.Bank

// NumPCRs is the number of PCRs in each bank (tpmrules.NumPCRs).
const NumPCRs = tpmrules.NumPCRs

// ParseBank returns the bank named name ("sha256", in any case).
func ParseBank(name string) (Bank, error) {
	b, err := tpmrules.ParseBank(strings.ToLower(name))
	if err != nil {
		return Bank{}, fmt.Errorf("tpm: %w", err)
	}
	return b, nil
}

// ParsePCRSelection parses "0,2,4,7", "0-7" or "all" into sorted, distinct PCR indices.
func ParsePCRSelection(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("tpm: empty PCR selection (want e.g. 0,2,4,7 or 0-7)")
	}
	if s == "all" {
		out := make([]int, NumPCRs)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePCRIndex(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parsePCRIndex(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("tpm: PCR range %q runs backwards", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return slices.Compact(out), nil
}

func parsePCRIndex(s string) (int, error) {
	i, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || i < 0 || i >= NumPCRs {
		return 0, fmt.Errorf("tpm: PCR index %q is not a number from 0 to %d", s, NumPCRs-1)
	}
	return i, nil
}

// ReadPCRs reads the PCRs of one bank (TPM2_PCR_Read, Part 3, 22.4). A TPM returns at most
// eight digests per call, so it asks again for what is missing. The result maps PCR index
// to digest.
func ReadPCRs(t transport.TPM, bank Bank, pcrs []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(pcrs))
	for range NumPCRs {
		var missing []int
		for _, p := range pcrs {
			if _, ok := out[p]; !ok {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return out, nil
		}
		r, err := tpm2.PCRRead{PCRSelectionIn: tpmrules.PCRSelection(bank, missing)}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: PCR_Read(%s %v): %w", bank.Name, missing, err)
		}
		got := tpmrules.SelectedPCRs(r.PCRSelectionOut)[bank.Alg]
		if len(got) != len(r.PCRValues.Digests) {
			return nil, fmt.Errorf("tpm: PCR_Read(%s): TPM selected %d PCRs but returned %d digests", bank.Name, len(got), len(r.PCRValues.Digests))
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("tpm: PCR_Read(%s %v): the TPM returned no PCRs (is the %s bank allocated?)", bank.Name, missing, bank.Name)
		}
		for i, p := range got {
			d := r.PCRValues.Digests[i].Buffer
			if len(d) != bank.Size {
				return nil, fmt.Errorf("tpm: PCR_Read(%s): PCR %d digest is %d bytes, want %d", bank.Name, p, len(d), bank.Size)
			}
			if !slices.Contains(missing, p) {
				return nil, fmt.Errorf("tpm: PCR_Read(%s): TPM returned PCR %d, which was not asked for", bank.Name, p)
			}
			out[p] = d
		}
	}
	return nil, fmt.Errorf("tpm: PCR_Read(%s): the TPM did not return all requested PCRs", bank.Name)
}

// ExtendPCR extends data's digest into a PCR of every allocated bank among sha1, sha256
// and sha384 by TPM2_PCR_Event (Part 3, 22.3), the way firmware measures a component. The
// event data is at most 1024 bytes.
func ExtendPCR(t transport.TPM, pcr int, data []byte) error {
	h, err := pcrAuth(pcr)
	if err != nil {
		return err
	}
	if len(data) == 0 || len(data) > 1024 {
		return fmt.Errorf("tpm: event data is %d bytes, want 1 to 1024", len(data))
	}
	if _, err := (tpm2.PCREvent{PCRHandle: h, EventData: tpm2.TPM2BEvent{Buffer: data}}).Execute(t); err != nil {
		return fmt.Errorf("tpm: PCR_Event(PCR %d): %w", pcr, err)
	}
	return nil
}

// ExtendPCRDigests extends a PCR with digests computed elsewhere, one per bank, by
// TPM2_PCR_Extend (Part 3, 22.2): what firmware does for an event it hashed itself and
// logged. Banks not named keep their value.
func ExtendPCRDigests(t transport.TPM, pcr int, digests []tpm2.TPMTHA) error {
	h, err := pcrAuth(pcr)
	if err != nil {
		return err
	}
	if len(digests) == 0 {
		return fmt.Errorf("tpm: PCR_Extend(PCR %d): no digests", pcr)
	}
	if _, err := (tpm2.PCRExtend{PCRHandle: h, Digests: tpm2.TPMLDigestValues{Digests: digests}}).Execute(t); err != nil {
		return fmt.Errorf("tpm: PCR_Extend(PCR %d): %w", pcr, err)
	}
	return nil
}

// pcrAuth is the handle of a PCR with its empty authValue, as firmware extends it.
func pcrAuth(pcr int) (tpm2.AuthHandle, error) {
	if pcr < 0 || pcr >= NumPCRs {
		return tpm2.AuthHandle{}, fmt.Errorf("tpm: PCR index %d is not from 0 to %d", pcr, NumPCRs-1)
	}
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)}, nil
}

// AllocatedPCRs returns the PCR banks the TPM has allocated and, for each, the PCRs
// allocated in it (TPM2_GetCapability(TPM_CAP_PCRS), Part 3, 30.2; Part 2, 10.9.7): a bank
// switched off by TPM2_PCR_Allocate is absent, or has no PCR. Banks of hash algorithms
// omens does not know are returned too, by algorithm.
func AllocatedPCRs(t transport.TPM) (map[tpm2.TPMIAlgHash][]int, error) {
	r, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: GetCapability(TPM_CAP_PCRS): %w", err)
	}
	sel, err := r.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("tpm: GetCapability(TPM_CAP_PCRS): %w", err)
	}
	out := map[tpm2.TPMIAlgHash][]int{}
	for _, s := range sel.PCRSelections {
		out[s.Hash] = nil
	}
	for alg, pcrs := range tpmrules.SelectedPCRs(*sel) {
		out[alg] = pcrs
	}
	return out, nil
}
