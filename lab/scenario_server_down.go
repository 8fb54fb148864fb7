package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ScenarioServerDown stops the SPIRE server until an agent (spire's) fails to re-attest:
// the workloads keep their valid SVIDs, served from their agents' caches; then the server
// returns and the agent re-attests.
var ScenarioServerDown = Scenario{
	Name: "server-down",
	Help: "the SPIRE server stops until spire's agent fails to re-attest:\nworkloads keep their SVIDs; the agent re-attests when it returns",
	Run:  playServerDown,
}

// playServerDown is ScenarioServerDown.Run.
func playServerDown(ctx context.Context, l *Lab, out io.Writer) error {
	const host = "spire"
	p, err := l.ports()
	if err != nil {
		return err
	}
	ca, err := l.caState()
	if err != nil {
		return err
	}
	if err := l.needWorkloads(); err != nil {
		return err
	}
	agentLog := process{name: host + "-agent", dir: l.Dir}.logFile()
	const failed, reattested = "Could not reattest agent", "Successfully reattested node"
	before := countLines(agentLog, failed)
	server := process{name: "spire-server", dir: l.Dir}
	if err := server.stop(20 * time.Second); err != nil {
		return err
	}
	fmt.Fprintln(out, "1. the SPIRE server is down")
	line, err := waitLine(ctx, agentLog, failed, before, 3*time.Minute)
	if err != nil {
		return errors.Join(err, l.upSPIREServer(ctx, p, ca))
	}
	reason := logReason(line, "error")
	fmt.Fprintf(out, "2. %s's agent cannot re-attest, and keeps running:\n   %s\n", host, reason)
	if !l.decommissioned("ca") {
		if _, err := l.stepCACall(ctx); err != nil {
			return errors.Join(fmt.Errorf("lab: with the server down, the workloads lost their SVIDs: %w", err), l.upSPIREServer(ctx, p, ca))
		}
		fmt.Fprintln(out, "3. step-ca's stand-in still calls OpenBao's over mTLS: both hold valid SVIDs from their agents' caches")
	}
	before = countLines(agentLog, reattested)
	if err := l.upSPIREServer(ctx, p, ca); err != nil {
		return err
	}
	for _, h := range Hosts {
		// An agent whose own SVID ran out while the server was away has exited.
		if err := l.upAgent(ctx, p, h); err != nil {
			return err
		}
	}
	if line, err = waitLine(ctx, agentLog, reattested, before, 3*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(out, "4. the server is back; %s's agent re-attests:\n   %s %s\n", host, reattested, logField(line, "spiffe_id"))
	return nil
}
