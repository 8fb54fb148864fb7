package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"omens.dev/omens/demo"
)

// ScenarioTPMFailure takes host spire's TPM away while OpenBao's stand-in runs there: the
// simulator stops and its device socket is gone. At its next re-attestation (the lab's
// agents re-attest every minute) the agent reports the failure in its log and keeps
// serving the SVIDs it holds; when the TPM returns, with its NV (the AK, the DevID key at
// its handle), the agent re-attests with it.
var ScenarioTPMFailure = Scenario{
	Name: "tpm-failure",
	Help: "spire's TPM disappears: its agent reports it, keeps serving\nSVIDs, and re-attests when the TPM returns",
	Run:  playTPMFailure,
}

// playTPMFailure is ScenarioTPMFailure.Run.
func playTPMFailure(ctx context.Context, l *Lab, out io.Writer) error {
	const host = "spire"
	if !l.onTPM(host) {
		return fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	if err := l.needWorkloads(); err != nil {
		return err
	}
	agentLog := process{name: host + "-agent", dir: l.Dir}.logFile()
	const failed, reattested = "Could not reattest agent", "Successfully reattested node"
	before := countLines(agentLog, failed)
	if err := l.tpmProcess(host).stop(10 * time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. the TPM of %s disappears: %s is gone\n", host, l.TPMSocket(host))
	line, err := waitLine(ctx, agentLog, failed, before, 3*time.Minute)
	if err != nil {
		return errors.Join(err, l.upTPM(ctx, host))
	}
	reason := logReason(line, "error")
	fmt.Fprintf(out, "2. at its next re-attestation the agent reports it, and keeps running:\n   %s\n", reason)
	w := openbao
	s, err := demo.ReadSVIDFile(l.SVIDFile(w))
	if err == nil && !s.Valid(time.Now()) {
		err = fmt.Errorf("its SVID expired at %s", s.NotAfter.Format(time.RFC3339))
	}
	if err == nil && !l.decommissioned("ca") {
		_, err = l.stepCACall(ctx)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("lab: with %s's TPM gone, %s lost its SVID: %w", host, w.Name, err), l.upTPM(ctx, host))
	}
	fmt.Fprintf(out, "3. it still serves the SVIDs it holds: OpenBao's stand-in, valid until %s, answers step-ca's over mTLS\n", s.NotAfter.Local().Format(time.TimeOnly))
	before = countLines(agentLog, reattested)
	if err := l.upTPM(ctx, host); err != nil {
		return err
	}
	if line, err = waitLine(ctx, agentLog, reattested, before, 3*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(out, "4. the TPM is back with its NV (the AK, the DevID key at %s); the agent re-attests with it:\n   %s %s\n", DevIDHandle, reattested, logField(line, "spiffe_id"))
	return nil
}
