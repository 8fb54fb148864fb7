package lab

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/bootlog"
)

// hostBoot is the boot a lab host's firmware records in its synthetic event log: every
// host boots the same shim and grub, verified by the lab platform's db certificate.
type hostBoot struct {
	Firmware   string `json:"firmware"`
	Kernel     string `json:"kernel"`
	SecureBoot bool   `json:"secure_boot"`
}

// The boot every lab host starts with.
const (
	labFirmware = "omens-sim firmware 1.0"
	labKernel   = "6.12.9-omens"
)

// bootBanks are the banks of the lab's boot logs, as most PC firmware logs.
var bootBanks = []crypto.Hash{crypto.SHA1, crypto.SHA256}

// The lab's boot chain: stand-in images, their digests the hashes of these names.
func shimImage() bootlog.Image {
	return bootlog.Image{Path: `\EFI\BOOT\BOOTX64.EFI`, Digests: bootlog.ImageDigests([]byte("shim 15.8"), bootBanks...)}
}

func grubImage() bootlog.Image {
	return bootlog.Image{Path: `\EFI\debian\grubx64.efi`, Digests: bootlog.ImageDigests([]byte("grub 2.12"), bootBanks...)}
}

func kernelImage(version string) bootlog.Image {
	return bootlog.Image{Path: `\vmlinuz-` + version, Digests: bootlog.ImageDigests([]byte("linux "+version), bootBanks...)}
}

// digestHex is an image's SHA-256 digest, the bank the server quotes, as the policy
// names it.
func digestHex(img bootlog.Image) string { return hex.EncodeToString(img.Digests[crypto.SHA256]) }

// platformKeys are the Secure Boot databases of the lab's platform, made at the first
// up and kept in DIR/secure-boot-keys.json: the hosts share one firmware vendor.
func (l *Lab) platformKeys() (*bootlog.PlatformKeys, error) {
	file := l.path("secure-boot-keys.json")
	if b, err := os.ReadFile(file); err == nil {
		k := &bootlog.PlatformKeys{}
		if err := json.Unmarshal(b, k); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", file, err)
		}
		return k, nil
	}
	k, err := bootlog.NewPlatformKeys("omens-sim")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	return k, os.WriteFile(file, b, 0o644)
}

// authorityHex is the SHA-256 of the db certificate that verifies the lab's boot chain.
func authorityHex(k *bootlog.PlatformKeys) string {
	s := sha256.Sum256(k.DB[0])
	return hex.EncodeToString(s[:])
}

func (l *Lab) bootFile(host string) string    { return l.path("hosts", host, "boot.json") }
func (l *Lab) bootLogPath(host string) string { return l.path("hosts", host, "boot.log") }

// currentBoot is the boot host last booted (the lab's first boot before any).
func (l *Lab) currentBoot(host string) (hostBoot, error) {
	b := hostBoot{Firmware: labFirmware, Kernel: labKernel, SecureBoot: true}
	raw, err := os.ReadFile(l.bootFile(host))
	if os.IsNotExist(err) {
		return b, nil
	}
	if err == nil {
		err = json.Unmarshal(raw, &b)
	}
	if err != nil {
		return b, fmt.Errorf("lab: %s: %w", l.bootFile(host), err)
	}
	return b, nil
}

// writeBootLog writes the synthetic event log of boot b to host's boot log, records b as
// host's boot, and returns the log's path.
func (l *Lab) writeBootLog(host string, b hostBoot) (string, error) {
	keys, err := l.platformKeys()
	if err != nil {
		return "", err
	}
	raw, err := bootlog.Boot{Banks: bootBanks, FirmwareVersion: b.Firmware, SecureBoot: b.SecureBoot, Keys: keys,
		Shim: shimImage(), Grub: grubImage(), Kernel: kernelImage(b.Kernel)}.Write()
	if err != nil {
		return "", fmt.Errorf("lab: %s: %w", host, err)
	}
	if err := os.MkdirAll(l.path("hosts", host), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(l.bootLogPath(host), raw, 0o644); err != nil {
		return "", err
	}
	j, _ := json.MarshalIndent(b, "", "  ")
	return l.bootLogPath(host), os.WriteFile(l.bootFile(host), j, 0o644)
}

// firstBootLog is the --boot-log of host's first simulated TPM start, "" once its state
// directory keeps a log (which later starts boot).
func (l *Lab) firstBootLog(host string) (string, error) {
	if _, err := os.Stat(l.EventLogPath(host)); err == nil {
		return "", nil
	}
	if _, err := os.Stat(l.TPMState(host)); err == nil {
		// A TPM state without a boot log is a lab made before hosts booted logs: its
		// policy pins PCRs 4 and 7 as raw values, which no log-booted host matches.
		return "", fmt.Errorf("lab: %s: %s was made by an earlier omens, whose hosts boot no event log: run `omens lab down --dir %s`, remove the directory, then `omens lab up` again", host, l.Dir, l.Dir)
	}
	b, err := l.currentBoot(host)
	if err != nil {
		return "", err
	}
	return l.writeBootLog(host, b)
}

// EventLogPath is where host's simulated TPM serves its boot event log to the agent, as
// Linux serves /sys/kernel/security/tpm0/binary_bios_measurements.
func (l *Lab) EventLogPath(host string) string {
	return filepath.Join(l.TPMState(host), tpmsim.EventLogFile)
}

// rebootInto reboots host's simulated TPM into boot b, from a new event log.
func (l *Lab) rebootInto(host string, b hostBoot) error {
	path, err := l.writeBootLog(host, b)
	if err != nil {
		return err
	}
	if _, err := tpmsim.RebootFromLog(l.TPMSocket(host), path); err != nil {
		return fmt.Errorf("lab: %s: %w", host, err)
	}
	return nil
}

// freshAgent stops host's agent and removes its data: the rebooted host's agent starts
// afresh and attests.
func (l *Lab) freshAgent(host string) error {
	if err := (process{name: host + "-agent", dir: l.Dir}).stop(20 * time.Second); err != nil {
		return err
	}
	return os.RemoveAll(l.path("hosts", host, "agent", "data"))
}

// attestRejected starts host's agent afresh and returns the reason the SPIRE server logs
// for rejecting its attestation.
func (l *Lab) attestRejected(ctx context.Context, host string) (string, error) {
	if err := l.freshAgent(host); err != nil {
		return "", err
	}
	logPath := process{name: "spire-server", dir: l.Dir}.logFile()
	before := countLines(logPath, "tpm attestation rejected")
	agent := process{name: host + "-agent", dir: l.Dir}
	if _, err := agent.start([]string{mustEngine("spire-agent"), "run", "-config", l.path("hosts", host, "agent", "agent.conf")}); err != nil {
		return "", err
	}
	line, err := waitLine(ctx, logPath, "tpm attestation rejected", before, 60*time.Second)
	if err != nil {
		return "", err
	}
	return logReason(line, "reason"), nil
}

// attestAccepted starts host's agent afresh and waits until it has attested.
func (l *Lab) attestAccepted(ctx context.Context, host string) error {
	if err := l.freshAgent(host); err != nil {
		return err
	}
	p, err := l.ports()
	if err != nil {
		return err
	}
	return l.upAgent(ctx, p, host)
}

// bootBlock is the boot rules of the lab's policy group: Secure Boot on, the lab's shim
// and grub, its kernel, verified by its platform's db certificate.
func (l *Lab) bootBlock() (string, error) {
	keys, err := l.platformKeys()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("  boot {\n    secure_boot  = %q\n    boot_loaders = [%q, %q]\n    kernels      = [%q]\n    authorities  = [%q]\n  }\n",
		"required", digestHex(shimImage()), digestHex(grubImage()), digestHex(kernelImage(labKernel)), authorityHex(keys)), nil
}

var kernelsLine = regexp.MustCompile(`(?m)^(\s*kernels\s*=\s*\[)([^\]]*)\]`)

// approveKernel adds the digest of kernel version to the kernels of the lab's policy, as
// an operator does before the reboot.
func (l *Lab) approveKernel(version string) error {
	b, err := os.ReadFile(l.PolicyPath())
	if err != nil {
		return err
	}
	d := digestHex(kernelImage(version))
	if strings.Contains(string(b), d) {
		return nil
	}
	loc := kernelsLine.FindSubmatchIndex(b)
	if loc == nil {
		return fmt.Errorf("lab: %s has no kernels rule", l.PolicyPath())
	}
	list := strings.TrimSpace(string(b[loc[4]:loc[5]]))
	if list != "" {
		list += ", "
	}
	out := string(b[:loc[4]]) + list + fmt.Sprintf("%q", d) + string(b[loc[5]:])
	return os.WriteFile(l.PolicyPath(), []byte(out), 0o644)
}

// rebootable checks that host's agent is on its TPM, as the scenarios that reboot it
// need, and returns the boot it last booted.
func (l *Lab) rebootable(host string) (hostBoot, error) {
	if !l.onTPM(host) {
		return hostBoot{}, fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	return l.currentBoot(host)
}
