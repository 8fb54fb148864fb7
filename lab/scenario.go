package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"omens.dev/omens/policy"
	"omens.dev/omens/tpm/tpmsim"
)

// Scenarios are the failures from the plan that `omens lab scenario NAME` plays.
var Scenarios = map[string]func(*Lab, context.Context, io.Writer) error{
	"bios-update": (*Lab).ScenarioBIOSUpdate,
}

// ScenarioBIOSUpdate plays a BIOS update on host auth: new firmware in PCR 0, a reboot;
// its agent's attestation is then rejected, the server log naming PCR 0; an operator opens
// an allow-next window and the same boot state is accepted and pinned.
func (l *Lab) ScenarioBIOSUpdate(ctx context.Context, out io.Writer) error {
	const host = "auth"
	p, err := l.ports()
	if err != nil {
		return err
	}
	if !l.onTPM(host) {
		return fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	firmware := fmt.Sprintf("omens-sim firmware 2.0 (%s)", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "1. BIOS update on %s: PCR 0 now measures %q; the host reboots\n", host, firmware)
	if _, err := tpmsim.Reboot(l.TPMSocket(host), tpmsim.Profile{0: {firmware}}); err != nil {
		return err
	}
	hash, err := l.ekHash(host)
	if err != nil {
		return err
	}
	agent := process{name: host + "-agent", dir: l.Dir}
	restart := func() error {
		if err := agent.stop(20 * time.Second); err != nil {
			return err
		}
		// The rebooted host's agent starts afresh and attests.
		return os.RemoveAll(l.path("hosts", host, "agent", "data"))
	}
	if err := restart(); err != nil {
		return err
	}
	logPath := process{name: "spire-server", dir: l.Dir}.logFile()
	before := countLines(logPath, "tpm attestation rejected")
	if _, err := agent.start([]string{mustEngine("spire-agent"), "run", "-config", l.path("hosts", host, "agent", "agent.conf")}); err != nil {
		return err
	}
	line, err := waitLine(ctx, logPath, "tpm attestation rejected", before, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. its attestation is rejected:\n   %s\n", reasonOf(line))
	st, err := policy.Open(l.PolicyPath(), "")
	if err != nil {
		return err
	}
	if err := st.AllowNext(hash, 2*time.Hour, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "3. the operator opens a window: omens pcr allow-next --policy %s --host %s --for 2h\n", l.PolicyPath(), host)
	if err := restart(); err != nil {
		return err
	}
	if err := l.upAgent(ctx, p, host); err != nil {
		return err
	}
	rep, err := st.Report(time.Now())
	if err != nil {
		return err
	}
	b, _ := jsonMarshal(rep)
	if !strings.Contains(string(b), "pinned") {
		return fmt.Errorf("lab: the new boot state of %s was not pinned", host)
	}
	fmt.Fprintf(out, "4. the new boot state is accepted and pinned; %s attests again with its TPM\n", host)
	return nil
}

func mustEngine(name string) string {
	p, _ := enginePath(name)
	return p
}

func countLines(path, substr string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), substr)
}

// waitLine waits for the (n+1)th line of path holding substr and returns it.
func waitLine(ctx context.Context, path, substr string, n int, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		seen := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, substr) {
				if seen == n {
					return l, nil
				}
				seen++
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("lab: no %q in %s within %s", substr, path, limit)
}

// reasonOf extracts the reason field of a SPIRE log line.
func reasonOf(line string) string {
	if i := strings.Index(line, "desc = "); i >= 0 {
		r := line[i+len("desc = "):]
		if j := strings.Index(r, `" result=`); j >= 0 {
			r = r[:j]
		}
		return r
	}
	return line
}
