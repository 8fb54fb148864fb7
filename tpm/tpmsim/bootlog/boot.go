package bootlog

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
)

// Image is a boot application firmware or shim loads (EV_EFI_BOOT_SERVICES_APPLICATION).
type Image struct {
	// Path is the file it is loaded from, in the device path (`\EFI\BOOT\BOOTX64.EFI`).
	Path string
	// Digests is the image's Authenticode digest in every bank of the log: what firmware
	// extends for it. ImageDigests makes them for a stand-in image.
	Digests map[crypto.Hash][]byte
	// Size is the image's length in memory (default 1 MiB).
	Size uint64
}

// ImageDigests returns the digests, in banks, of a stand-in image whose bytes are content:
// a synthetic boot application has no PE file, so its digest is the hash of content.
func ImageDigests(content []byte, banks ...crypto.Hash) map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(banks))
	for _, h := range banks {
		d := h.New()
		d.Write(content)
		out[h] = d.Sum(nil)
	}
	return out
}

// Boot describes the boot a synthetic log records.
type Boot struct {
	// Banks are the log's banks (default SHA-1 and SHA-256, as most PC firmware logs).
	Banks []crypto.Hash
	// FirmwareVersion is the S-CRTM version (EV_S_CRTM_VERSION) and names the firmware
	// volume measured as EV_POST_CODE: a new version is a BIOS update (default
	// "omens-sim firmware 1.0").
	FirmwareVersion string
	// SecureBoot is the value of the SecureBoot variable.
	SecureBoot bool
	// Keys are the enrolled Secure Boot databases (NewPlatformKeys).
	Keys *PlatformKeys
	// Authority is the db certificate that verified shim, logged as
	// EV_EFI_VARIABLE_AUTHORITY when Secure Boot is on (default Keys.DB[0]).
	Authority []byte
	// Shim, Grub and Kernel are the boot chain, loaded in that order.
	Shim, Grub, Kernel Image
	// KernelCommandLine, when set, is measured by grub into PCR 8 (EV_IPL), as grub 2 does.
	KernelCommandLine string
}

// partitionGUID is the unique GUID of the EFI system partition in the device paths.
const partitionGUID GUID = "a5f0c8d2-6e1b-4c57-9a3e-0b7d2f4e8c61"

// Write returns the TCG crypto-agile event log of boot b.
func (b Boot) Write() ([]byte, error) {
	banks := b.Banks
	if len(banks) == 0 {
		banks = []crypto.Hash{crypto.SHA1, crypto.SHA256}
	}
	for _, h := range banks {
		if _, err := algID(h); err != nil {
			return nil, err
		}
	}
	fw := b.FirmwareVersion
	if fw == "" {
		fw = "omens-sim firmware 1.0"
	}
	if b.Keys == nil || len(b.Keys.PK) == 0 || len(b.Keys.KEK) == 0 || len(b.Keys.DB) == 0 {
		return nil, errors.New("bootlog: Keys with a PK, a KEK and a db certificate are required (NewPlatformKeys)")
	}
	owner := b.Keys.Owner
	if owner == "" {
		owner = OmensOwner
	}
	if _, err := owner.encode(); err != nil {
		return nil, err
	}
	authority := b.Authority
	if authority == nil {
		authority = b.Keys.DB[0]
	}
	for _, c := range append([][]byte{b.Keys.PK, authority}, append(b.Keys.KEK, b.Keys.DB...)...) {
		if _, err := x509.ParseCertificate(c); err != nil {
			return nil, fmt.Errorf("bootlog: Secure Boot certificate: %w", err)
		}
	}
	for _, d := range b.Keys.DBX {
		if len(d) != 32 {
			return nil, fmt.Errorf("bootlog: dbx entry of %d bytes, want a SHA-256 digest", len(d))
		}
	}
	images := []struct {
		name string
		img  Image
	}{{"shim", b.Shim}, {"grub", b.Grub}, {"kernel", b.Kernel}}
	for _, im := range images {
		if im.img.Path == "" {
			return nil, fmt.Errorf("bootlog: %s: a Path is required", im.name)
		}
		for _, h := range banks {
			if len(im.img.Digests[h]) != h.Size() {
				return nil, fmt.Errorf("bootlog: %s: no %d-byte digest for bank %v", im.name, h.Size(), h)
			}
		}
	}
	var events []Event
	measure := func(pcr int, typ uint32, data []byte) {
		events = append(events, Event{PCR: pcr, Type: typ, Data: data})
	}
	event := func(pcr int, typ uint32, digests map[crypto.Hash][]byte, data []byte) {
		events = append(events, Event{PCR: pcr, Type: typ, Data: data, Digests: digests})
	}

	// PCR 0: the S-CRTM version, a NUL-terminated UCS-2 string whose digest is its own
	// (PFP, "PCR[0]"), then the firmware code, a UEFI_PLATFORM_FIRMWARE_BLOB whose
	// digest is that of the firmware volume measured.
	measure(0, EvSCRTMVersion, append(UCS2(fw), 0, 0))
	event(0, EvPostCode, ImageDigests([]byte("firmware volume of "+fw), banks...), firmwareBlob(0xffc00000, 0x400000))

	// PCR 7: the Secure Boot variables (PFP, "PCR[7]"), each digest over the whole
	// UEFI_VARIABLE_DATA.
	sb := byte(0)
	if b.SecureBoot {
		sb = 1
	}
	var dbx []byte
	if len(b.Keys.DBX) > 0 {
		dbx = SignatureList(EFICertSHA256GUID, owner, b.Keys.DBX)
	}
	for _, v := range []struct {
		vendor GUID
		name   string
		data   []byte
	}{
		{EFIGlobalVariable, "SecureBoot", []byte{sb}},
		{EFIGlobalVariable, "PK", X509Lists(owner, [][]byte{b.Keys.PK})},
		{EFIGlobalVariable, "KEK", X509Lists(owner, b.Keys.KEK)},
		{EFIImageSecurityDatabaseGUID, "db", X509Lists(owner, b.Keys.DB)},
		{EFIImageSecurityDatabaseGUID, "dbx", dbx},
	} {
		measure(7, EvEFIVariableDriverConfig, VariableData(v.vendor, v.name, v.data))
	}

	// PCR 4: the boot manager is about to call the boot option (PFP, "PCR[4]").
	measure(4, EvEFIAction, []byte("Calling EFI Application from Boot Option"))
	// ReadyToBoot: EV_SEPARATOR in PCRs 0-7, data and digest over four zero bytes
	// (PFP, "EV_SEPARATOR").
	for pcr := range 8 {
		measure(pcr, EvSeparator, []byte{0, 0, 0, 0})
	}

	// The db entry that verified shim (PFP, "PCR[7]"): its EFI_SIGNATURE_DATA as
	// the value of variable db, logged once before the first image it verified.
	if b.SecureBoot {
		measure(7, EvEFIVariableAuthority, VariableData(EFIImageSecurityDatabaseGUID, "db", SignatureData(owner, authority)))
	}
	addr := uint64(0x7d000000)
	for i, im := range images {
		size := im.img.Size
		if size == 0 {
			size = 1 << 20
		}
		event(4, EvEFIBootServicesApplication, im.img.Digests, imageLoadEvent(addr, size, filePath(partitionGUID, im.img.Path)))
		addr -= 0x1000000
		if i == 1 && b.KernelCommandLine != "" {
			// grub measures the command line's bytes and logs it with a prefix.
			event(8, EvIPL, ImageDigests([]byte(b.KernelCommandLine), banks...), append([]byte("kernel_cmdline: "+b.KernelCommandLine), 0))
		}
	}

	// PCR 5: the kernel's EFI stub leaves boot services (PFP, "PCR[5]").
	measure(5, EvEFIAction, []byte("Exit Boot Services Invocation"))
	measure(5, EvEFIAction, []byte("Exit Boot Services Returned with Success"))
	return Encode(banks, events)
}
