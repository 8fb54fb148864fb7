package doctor

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"omens.dev/omens/tpm"
)

// checkTPM opens the TPM: --tpm, else the agent's tpm_path, else the kernel's devices.
func (h *host) checkTPM() {
	path := h.opts.TPMPath
	if path == "" && h.attestor != nil {
		path = h.attestor.TPMPath
	}
	resolved, err := tpm.Resolve(path)
	if err != nil {
		detail := err.Error()
		if errors.Is(err, tpm.ErrNoTPM) {
			detail = fmt.Sprintf("no TPM found (tried %s)", strings.Join(tpm.DefaultDevices, ", "))
		}
		h.add("tpm", Fail, detail, "on a machine with a TPM 2.0, enable it in the firmware setup and load the kernel driver (tpm_tis, tpm_crb); "+
			"else give --tpm PATH (a device, or the unix socket of swtpm or `omens tpm simulate`)")
		return
	}
	t, err := tpm.Open(resolved)
	if err != nil {
		h.add("tpm", Fail, err.Error(), "check the path and its permissions (run as root, or as a member of group tss)")
		return
	}
	h.t, h.tpmPath = t, resolved
	what := "a unix socket"
	switch {
	case resolved == tpm.Simulator:
		what = "the in-process reference simulator"
	case resolved == "/dev/tpmrm0":
		what = "the kernel's resource manager"
	default:
		if fi, err := os.Stat(resolved); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			what = "a character device"
		}
	}
	h.pass("tpm", "%s (%s)", resolved, what)
}

// checkTPMInfo reads what the TPM says of itself: a TPM 2.0, its maker and firmware.
func (h *host) checkTPMInfo() {
	if h.t == nil {
		h.noTPM("tpm_info")
		return
	}
	info, err := tpm.ReadInfo(h.t)
	if err != nil {
		h.add("tpm_info", Fail, err.Error(), "the TPM does not answer TPM 2.0 commands: is it a TPM 1.2, or in failure mode (reboot)?")
		return
	}
	detail := fmt.Sprintf("TPM %s revision %s, manufacturer %s (%s), vendor %q, firmware %s",
		info.Family, info.Revision, info.Manufacturer, info.ManufacturerID, info.VendorString, info.FirmwareVersion)
	if info.Family != "2.0" {
		h.add("tpm_info", Fail, detail, "omens needs a TPM 2.0; switch the TPM to 2.0 mode in the firmware setup if it can")
		return
	}
	h.pass("tpm_info", "%s", detail)
}
