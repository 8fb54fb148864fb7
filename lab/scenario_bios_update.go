package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	"omens.dev/omens/policy"
)

// ScenarioBIOSUpdate plays a BIOS update on host auth: new firmware in PCR 0, a reboot
// into a new boot log; its agent's attestation is then rejected, the server log naming PCR
// 0; an operator opens an allow-next window and the same boot state is accepted and pinned.
var ScenarioBIOSUpdate = Scenario{
	Name: "bios-update",
	Help: "a BIOS update on auth: its new boot state is rejected, naming\nthe PCR; in an allow-next window it is accepted and pinned",
	Run:  playBIOSUpdate,
}

// playBIOSUpdate is ScenarioBIOSUpdate.Run.
func playBIOSUpdate(ctx context.Context, l *Lab, out io.Writer) error {
	const host = "auth"
	boot, err := l.rebootable(host)
	if err != nil {
		return err
	}
	boot.Firmware = fmt.Sprintf("omens-sim firmware 2.0 (%s)", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "1. BIOS update on %s: PCR 0 now measures %q; the host reboots\n", host, boot.Firmware)
	if err := l.rebootInto(host, boot); err != nil {
		return err
	}
	hash, err := l.ekHash(host)
	if err != nil {
		return err
	}
	reason, err := l.attestRejected(ctx, host)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. its attestation is rejected:\n   %s\n", reason)
	st, err := policy.Open(l.PolicyPath(), "")
	if err != nil {
		return err
	}
	if err := st.AllowNext(hash, 2*time.Hour, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "3. the operator opens a window: omens pcr allow-next --policy %s --host %s --for 2h\n", l.PolicyPath(), host)
	if err := l.attestAccepted(ctx, host); err != nil {
		return err
	}
	rep, err := st.Report(time.Now())
	if err != nil {
		return err
	}
	pinned := false
	for _, h := range rep.Hosts {
		pinned = pinned || (h.EKHash == hash && len(h.Pins) > 0)
	}
	if !pinned {
		return fmt.Errorf("lab: the new boot state of %s was not pinned", host)
	}
	fmt.Fprintf(out, "4. the new boot state is accepted and pinned; %s attests again with its TPM\n", host)
	return nil
}
