package doctor

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"omens.dev/omens/internal/limits"
)

// checkLUKS reads the LUKS2 header of --luks (a device or an image file) with cryptsetup
// and compares each Clevis tpm2 binding with what the agent quotes: a binding sealed to
// a PCR the agent does not quote, or to another bank, fails (the disk then unlocks on a
// boot state no attestation checks; the plan binds both to the same PCRs); a binding
// over PCR 4 warns, since PCR 4 measures the kernel and changes at every kernel update.
func (h *host) checkLUKS() {
	dev := h.opts.LUKSDevice
	if dev == "" {
		h.add("luks", Warn, "not checked: no --luks given", "give --luks DEVICE (the LUKS2 device holding the root file system, e.g. /dev/nvme0n1p3, or an image file)")
		return
	}
	meta, err := h.luksDump(dev)
	if err != nil {
		h.add("luks", Fail, err.Error(), "give --luks a LUKS2 device or image (cryptsetup isLuks --type luks2 DEVICE), as root")
		return
	}
	tokens, err := ParseLUKS2Metadata(meta)
	if err != nil {
		h.add("luks", Fail, fmt.Sprintf("%s: %v", dev, err), "")
		return
	}
	agentBank, agentPCRs := h.bank.Name, h.pcrs
	suggest := fmt.Sprintf(`'{"pcr_bank":"%s","pcr_ids":"%s"}'`, agentBank, pcrList(withoutPCR4(agentPCRs)))
	status := Pass
	var found, notes []string
	worse := func(s Status) {
		if s == Fail || status == Pass {
			status = s
		}
	}
	next := ""
	for _, tok := range tokens {
		for _, pin := range tok.TPM2 {
			bank := pin.Bank
			if bank == "" {
				bank = "sha1" // clevis-encrypt-tpm2's default; it writes pcr_bank whenever it seals to PCRs
			}
			slot := strings.Join(tok.Keyslots, ",")
			what := fmt.Sprintf("token %s (keyslot %s): tpm2 on %s PCRs %s", tok.ID, slot, bank, pcrList(pin.PCRs))
			if len(pin.PCRs) == 0 {
				what = fmt.Sprintf("token %s (keyslot %s): tpm2 on no PCR", tok.ID, slot)
			}
			found = append(found, what)
			var extra []int
			for _, p := range pin.PCRs {
				if !slices.Contains(agentPCRs, p) {
					extra = append(extra, p)
				}
			}
			edit := fmt.Sprintf("clevis luks edit -d %s -s %s -c %s", dev, firstOr(tok.Keyslots, "SLOT"), suggest)
			switch {
			case len(pin.PCRs) > 0 && bank != agentBank:
				worse(Fail)
				notes = append(notes, fmt.Sprintf("token %s is sealed to the %s bank, the agent quotes %s", tok.ID, bank, agentBank))
				next = edit
			case len(extra) > 0:
				worse(Fail)
				notes = append(notes, fmt.Sprintf("token %s is sealed to %s, which the agent does not quote (%s %s): the disk unlocks on a boot state no attestation checks",
					tok.ID, pcrWords(extra), agentBank, pcrList(agentPCRs)))
				next = edit
			case len(pin.PCRs) == 0:
				worse(Warn)
				notes = append(notes, fmt.Sprintf("token %s is sealed to no PCR: the disk unlocks with this TPM whatever booted", tok.ID))
				if next == "" {
					next = edit
				}
			}
			if slices.Contains(pin.PCRs, 4) {
				worse(Warn)
				notes = append(notes, fmt.Sprintf("token %s includes PCR 4, which changes at every kernel update: the disk will not unlock by TPM after one until it is rebound", tok.ID))
				if next == "" {
					next = fmt.Sprintf("after each kernel update run clevis luks regen -d %s -s %s, or rebind without PCR 4: %s", dev, firstOr(tok.Keyslots, "SLOT"), edit)
				}
			}
		}
	}
	if len(found) == 0 {
		h.add("luks", Fail, fmt.Sprintf("%s: no Clevis tpm2 binding in its LUKS2 tokens", dev),
			fmt.Sprintf("bind one: clevis luks bind -d %s tpm2 %s", dev, suggest))
		return
	}
	detail := fmt.Sprintf("%s: %s", dev, strings.Join(found, "; "))
	if len(notes) > 0 {
		detail += "; " + strings.Join(notes, "; ")
	} else {
		detail += fmt.Sprintf(", all quoted by the agent (%s %s)", agentBank, pcrList(agentPCRs))
	}
	h.add("luks", status, detail, next)
}

// luksDump runs cryptsetup luksDump --dump-json-metadata on dev; its output is capped at
// limits.LUKS2Meta.
func (h *host) luksDump(dev string) ([]byte, error) {
	bin := h.opts.Cryptsetup
	if bin == "" {
		bin = "cryptsetup"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("cryptsetup not found (%v): install it (apt-get install cryptsetup-bin)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &capped{max: int(limits.LUKS2Meta.MaxBytes) + 1}
	errOut := &capped{max: 4096}
	cmd := exec.CommandContext(ctx, path, "luksDump", "--dump-json-metadata", dev)
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.b.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("cryptsetup luksDump --dump-json-metadata %s: %s", dev, msg)
	}
	return out.b.Bytes(), nil
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	b   bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func withoutPCR4(pcrs []int) []int {
	out := slices.DeleteFunc(slices.Clone(pcrs), func(p int) bool { return p == 4 })
	if len(out) == 0 {
		return pcrs
	}
	return out
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}
