package lab

import (
	"context"
	"fmt"
	"io"
)

// ScenarioKernelUpdate plays a kernel update on host auth: the operator approves the new
// kernel's digest in the policy's kernels first, the host reboots into it and re-attests
// without a window; a kernel nobody approved is then refused, the server naming the event.
var ScenarioKernelUpdate = Scenario{
	Name: "kernel-update",
	Help: "a kernel update on auth, approved in the policy beforehand:\nit re-attests without a window; an unapproved kernel is\nrefused, naming the event",
	Run:  playKernelUpdate,
}

// playKernelUpdate is ScenarioKernelUpdate.Run.
func playKernelUpdate(ctx context.Context, l *Lab, out io.Writer) error {
	const host = "auth"
	boot, err := l.rebootable(host)
	if err != nil {
		return err
	}
	approved := boot
	approved.Kernel = "6.12.10-omens"
	if err := l.approveKernel(approved.Kernel); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. the operator approves kernel %s in %s: kernels gains %s\n", approved.Kernel, l.PolicyPath(), digestHex(kernelImage(approved.Kernel)))
	if err := l.rebootInto(host, approved); err != nil {
		return err
	}
	if err := l.attestAccepted(ctx, host); err != nil {
		return err
	}
	fmt.Fprintf(out, "2. %s reboots into %s and attests again, without a window\n", host, approved.Kernel)
	rogue := approved
	rogue.Kernel = "6.13.0-unapproved"
	if err := l.rebootInto(host, rogue); err != nil {
		return err
	}
	reason, err := l.attestRejected(ctx, host)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "3. %s reboots into kernel %s, which nobody approved; it is refused:\n   %s\n", host, rogue.Kernel, reason)
	if err := l.rebootInto(host, approved); err != nil {
		return err
	}
	if err := l.attestAccepted(ctx, host); err != nil {
		return err
	}
	fmt.Fprintf(out, "4. %s reboots into %s again and attests with its TPM\n", host, approved.Kernel)
	return nil
}
