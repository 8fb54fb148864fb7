package lab

import (
	"context"
	"fmt"
	"io"
)

// ScenarioSecureBootOff plays Secure Boot turned off on host auth: it reboots with the
// SecureBoot variable 0 and its attestation is refused, the server naming the rule
// secure_boot; Secure Boot back on, it attests again.
var ScenarioSecureBootOff = Scenario{
	Name: "secure-boot-off",
	Help: "Secure Boot turned off on auth: it is refused, naming the\nrule; Secure Boot back on, it attests again",
	Run:  playSecureBootOff,
}

// playSecureBootOff is ScenarioSecureBootOff.Run.
func playSecureBootOff(ctx context.Context, l *Lab, out io.Writer) error {
	const host = "auth"
	boot, err := l.rebootable(host)
	if err != nil {
		return err
	}
	off := boot
	off.SecureBoot = false
	fmt.Fprintf(out, "1. Secure Boot is turned off in %s's firmware setup; the host reboots\n", host)
	if err := l.rebootInto(host, off); err != nil {
		return err
	}
	reason, err := l.attestRejected(ctx, host)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. its attestation is refused:\n   %s\n", reason)
	on := boot
	on.SecureBoot = true
	if err := l.rebootInto(host, on); err != nil {
		return err
	}
	if err := l.attestAccepted(ctx, host); err != nil {
		return err
	}
	fmt.Fprintf(out, "3. Secure Boot is back on; %s reboots and attests again with its TPM\n", host)
	return nil
}
