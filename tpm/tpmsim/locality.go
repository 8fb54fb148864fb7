//go:build cgo

package tpmsim

// The startup locality. A platform whose CRTM runs at locality 3 (Intel TXT, Boot Guard) or
// 4 (an H-CRTM) sends TPM2_Startup from that locality, and PCR 0 then starts at the locality
// in its last byte instead of zero (TPM 2.0 Part 1, 34.3, PCRStartup; TCG PC Client Platform
// Firmware Profile 2.0, 10.4.5.3, which logs it as an EV_NO_ACTION StartupLocality event).
// The go-tpm-tools platform layer fixes the command locality at 0 (_plat__LocalityGet in its
// Platform_fp.h), so the simulator cannot be started from locality 3. It sets PCR 0's reset
// value itself instead, in the reference TPM's PCR array, right after TPM2_Startup and before
// anything is extended into PCR 0, which leaves the TPM as a startup at that locality would;
// it then reads PCR 0 back in every bank to check that the array is laid out as expected.

/*
extern unsigned char s_pcrs[];

static void omens_pcr_set_byte(size_t off, unsigned char v) { s_pcrs[off] = v; }
*/
import "C"

import (
	"bytes"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// simBank is a PCR bank of the reference simulator and where its PCR 0 value lies in the
// simulator's PCR array: each element of s_pcrs (Global.h, type PCR) holds one PCR's
// value in every bank the build implements, in the order sha1, sha256, sha384, sha512
// (go-tpm-tools builds it with ALG_SHA512 and without SM3).
type simBank struct {
	alg    tpm2.TPMIAlgHash
	name   string
	size   int
	offset int
}

var simBanks = []simBank{
	{tpm2.TPMAlgSHA1, "sha1", 20, 0},
	{tpm2.TPMAlgSHA256, "sha256", 32, 20},
	{tpm2.TPMAlgSHA384, "sha384", 48, 52},
	{tpm2.TPMAlgSHA512, "sha512", 64, 100},
}

func simBankOf(alg tpm2.TPMIAlgHash) (simBank, bool) {
	for _, b := range simBanks {
		if b.alg == alg {
			return b, true
		}
	}
	return simBank{}, false
}

// setStartupLocality gives PCR 0 the reset value of a TPM2_Startup from locality in every
// bank. PCR 0 must still hold its reset value for locality 0 (all zero).
func setStartupLocality(t transport.TPM, locality byte) error {
	if err := checkPCR0(t, 0); err != nil {
		return fmt.Errorf("tpmsim: startup locality %d: PCR 0 was extended before: %w", locality, err)
	}
	for _, b := range simBanks {
		C.omens_pcr_set_byte(C.size_t(b.offset+b.size-1), C.uchar(locality))
	}
	if err := checkPCR0(t, locality); err != nil {
		return fmt.Errorf("tpmsim: startup locality %d: the reference simulator's PCR array is not laid out as expected: %w", locality, err)
	}
	return nil
}

// checkPCR0 reads PCR 0 in every bank and compares it with the reset value for a startup
// from locality.
func checkPCR0(t transport.TPM, locality byte) error {
	for _, b := range simBanks {
		sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: b.alg, PCRSelect: []byte{1, 0, 0}}}}
		r, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(t)
		if err != nil {
			return fmt.Errorf("PCR_Read(%s 0): %w", b.name, err)
		}
		if len(r.PCRValues.Digests) != 1 {
			return fmt.Errorf("PCR_Read(%s 0) returned %d digests, want 1", b.name, len(r.PCRValues.Digests))
		}
		want := make([]byte, b.size)
		want[b.size-1] = locality
		if got := r.PCRValues.Digests[0].Buffer; !bytes.Equal(got, want) {
			return fmt.Errorf("PCR 0 (%s) is %x, want %x", b.name, got, want)
		}
	}
	return nil
}
