package tpm

import (
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/protocol"
)

// Info is what a TPM says about itself in its fixed properties (TPM 2.0 Part 2, 6.13
// TPM_PT): who made it, which part, which firmware.
type Info struct {
	// Manufacturer is the 4-character vendor ID from TPM_PT_MANUFACTURER, e.g. "IFX ",
	// trimmed ("IFX"). ManufacturerID is the same value as the TCG "id:XXXXXXXX" hex form
	// used in EK certificates.
	Manufacturer   string `json:"manufacturer"`
	ManufacturerID string `json:"manufacturer_id"`
	// VendorStrings joins TPM_PT_VENDOR_STRING_1..4 (the model, by convention).
	VendorString string `json:"vendor_string"`
	// FirmwareVersion is TPM_PT_FIRMWARE_VERSION_1 and _2 as four 16-bit parts, the way
	// vendors print it ("7.85.4555.0").
	FirmwareVersion string `json:"firmware_version"`
	// Family, Revision, Year, DayOfYear: the TPM library specification implemented.
	Family    string `json:"spec_family"`
	Revision  string `json:"spec_revision"`
	SpecYear  uint32 `json:"spec_year"`
	SpecDay   uint32 `json:"spec_day_of_year"`
	VendorTPM uint32 `json:"vendor_tpm_type"`
}

// ReadInfo reads the TPM's fixed properties.
func ReadInfo(t transport.TPM) (*Info, error) {
	props, err := properties(t, tpm2.TPMPTFamilyIndicator, 0x12)
	if err != nil {
		return nil, err
	}
	get := func(p tpm2.TPMPT) uint32 { return props[p] }
	var vendor strings.Builder
	for p := tpm2.TPMPTVendorString1; p <= tpm2.TPMPTVendorString1+3; p++ {
		vendor.WriteString(u32String(get(p)))
	}
	fw1, fw2 := get(tpm2.TPMPTFirmwareVersion1), get(tpm2.TPMPTFirmwareVersion1+1)
	rev := get(tpm2.TPMPTRevision)
	return &Info{
		Manufacturer:    u32String(get(tpm2.TPMPTManufacturer)),
		ManufacturerID:  fmt.Sprintf("id:%08X", get(tpm2.TPMPTManufacturer)),
		VendorString:    vendor.String(),
		FirmwareVersion: protocol.FirmwareVersion(uint64(fw1)<<32 | uint64(fw2)),
		Family:          u32String(get(tpm2.TPMPTFamilyIndicator)),
		Revision:        fmt.Sprintf("%d.%02d", rev/100, rev%100),
		SpecYear:        get(tpm2.TPMPTYear),
		SpecDay:         get(tpm2.TPMPTDayofYear),
		VendorTPM:       get(tpm2.TPMPTVendorTPMType),
	}, nil
}

// u32String decodes a property that holds up to four ASCII characters, big-endian, and
// trims the NUL and space padding vendors use.
func u32String(v uint32) string {
	b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	return strings.TrimSpace(string(b))
}

// property reads one TPM property.
func property(t transport.TPM, p tpm2.TPMPT) (uint32, error) {
	props, err := properties(t, p, 1)
	if err != nil {
		return 0, err
	}
	v, ok := props[p]
	if !ok {
		return 0, fmt.Errorf("tpm: property 0x%X not reported", uint32(p))
	}
	return v, nil
}

// properties reads count consecutive TPM properties starting at first, following the
// moreData flag of TPM2_GetCapability (Part 3, 30.2).
func properties(t transport.TPM, first tpm2.TPMPT, count uint32) (map[tpm2.TPMPT]uint32, error) {
	out := make(map[tpm2.TPMPT]uint32, count)
	next, end := uint32(first), uint32(first)+count
	for next < end {
		r, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapTPMProperties,
			Property:      next,
			PropertyCount: end - next,
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: GetCapability(TPM_PROPERTIES 0x%X): %w", next, err)
		}
		list, err := r.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, fmt.Errorf("tpm: GetCapability(TPM_PROPERTIES 0x%X): %w", next, err)
		}
		if len(list.TPMProperty) == 0 {
			break
		}
		progressed := false
		for _, p := range list.TPMProperty {
			if uint32(p.Property) >= end {
				continue
			}
			out[p.Property] = p.Value
			if uint32(p.Property) >= next {
				next = uint32(p.Property) + 1
				progressed = true
			}
		}
		if !r.MoreData || !progressed {
			break
		}
	}
	return out, nil
}
