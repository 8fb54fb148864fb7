package tpmrules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Persistent handles omens uses by default, in the ranges of the TCG TPM v2.0
// Provisioning Guidance (7.8).
const (
	// DefaultAKHandle is where omens persists the attestation key: in the range that the
	// Provisioning Guidance leaves to endorsement-hierarchy keys, clear of the EK handles
	// 0x81010001/0x81010002 and of the DevID handle the Tower's plan uses.
	DefaultAKHandle tpm2.TPMHandle = 0x81010010
	// DefaultSRKHandle is where platforms conventionally persist the SRK.
	DefaultSRKHandle tpm2.TPMHandle = 0x81000001
	// PlanDevIDHandle is the DevID handle of the Tower's plan (and of tpm_devid configs
	// that predate omens).
	PlanDevIDHandle tpm2.TPMHandle = 0x81010002
)

// PersistentRange is the range of persistent handles, for messages.
const PersistentRange = "0x81000000 to 0x81FFFFFF"

// IsPersistent reports whether h is a persistent handle (TPM_HT_PERSISTENT, Part 2, 7.2).
func IsPersistent(h tpm2.TPMHandle) bool {
	return uint32(h)>>24 == uint32(tpm2.TPMHTPersistent)
}

// ParsePersistentHandle parses a persistent handle written in hex, with or without "0x"
// ("0x81010002"). Its error is a phrase for the caller to prefix.
func ParsePersistentHandle(s string) (tpm2.TPMHandle, error) {
	h, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
	if err != nil || !IsPersistent(tpm2.TPMHandle(h)) {
		return tpm2.TPMHandle(h), fmt.Errorf("%q is not a persistent handle (%s)", s, PersistentRange)
	}
	return tpm2.TPMHandle(h), nil
}

// FormatHandle writes a handle as configuration files and messages show it: "0x81010002".
func FormatHandle(h tpm2.TPMHandle) string { return fmt.Sprintf("0x%08X", uint32(h)) }
