// Package bootlog writes synthetic TCG boot event logs: the log a UEFI firmware with
// Secure Boot, shim, grub and a Linux kernel would leave behind, in the crypto-agile
// format of the TCG PC Client Platform Firmware Profile 2.0 (PFP), so that a simulated
// host (tpmsim, --boot-log) boots like a real machine whose boot chain a test chooses.
//
// Boot (boot.go) lays out the events in the order firmware measures them: the S-CRTM
// version and firmware code in PCR 0, the Secure Boot variables (SecureBoot, PK, KEK, db,
// dbx) in PCR 7, EV_SEPARATOR in PCRs 0-7 at ReadyToBoot, the db certificate that
// verified shim as EV_EFI_VARIABLE_AUTHORITY, the boot applications (shim, grub, the
// kernel) in PCR 4 with digests the caller gives, and ExitBootServices in PCR 5. Each
// event carries its digest in every bank of the log.
//
// The UEFI structures the events hold (UEFI_VARIABLE_DATA, EFI_SIGNATURE_LIST,
// UEFI_IMAGE_LOAD_EVENT, device paths) are encoded in uefi.go, the log format in log.go
// (Encode, which also serves logs laid out by hand, as the test kit eventlogtest does),
// and a platform's Secure Boot certificates are made in keys.go.
package bootlog
