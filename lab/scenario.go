package lab

import (
	"context"
	"fmt"
	"io"
	"omens.dev/omens/registry"
	"os"
	"strconv"
	"strings"
	"time"

	"omens.dev/omens/internal/engines"
)

// Scenario is a failure from the plan that `omens lab scenario NAME` plays on a running
// lab, one file each (scenario_*.go). To add one, write its file and list it in
// Scenarios.
type Scenario struct {
	// Name is what `omens lab scenario` takes.
	Name string
	// Help is what `omens lab scenario --help` says of it, in lines of about 60 columns.
	Help string
	// Run plays the scenario on the lab, printing each step and what the Tower did to
	// out.
	Run func(ctx context.Context, l *Lab, out io.Writer) error
}

// Scenarios are the scenarios, in the order `omens lab scenario --help` lists them.
var Scenarios = []Scenario{
	ScenarioBIOSUpdate,
	ScenarioKernelUpdate,
	ScenarioSecureBootOff,
	ScenarioJoinTokenAfterMigration,
	ScenarioRevoke,
	ScenarioServerDown,
	ScenarioTPMFailure,
	ScenarioNetworkPartition,
	ScenarioRollback,
	ScenarioEKExpired,
}

// FindScenario returns the scenario called name.
func FindScenario(name string) (Scenario, bool) {
	for _, s := range Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// ScenarioNames are the scenarios' names, in the order of Scenarios.
func ScenarioNames() []string {
	names := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		names[i] = s.Name
	}
	return names
}

// ScenarioHelp lists the scenarios with their Help, the names in a column.
func ScenarioHelp() string {
	width := 0
	for _, s := range Scenarios {
		width = max(width, len(s.Name))
	}
	var b strings.Builder
	for _, s := range Scenarios {
		for i, line := range strings.Split(s.Help, "\n") {
			name := ""
			if i == 0 {
				name = s.Name
			}
			fmt.Fprintf(&b, "  %-*s  %s\n", width, name, line)
		}
	}
	return b.String()
}

// What the scenarios share: the engines, and reading the logs of the lab's processes.

// mustEngine is the path of an engine; upTower has checked they are all there.
func mustEngine(name string) string {
	p, _ := engines.Path(name)
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

// logReason returns the error in field key of a SPIRE log line, without its gRPC
// wrapping ("rpc error: code = … desc = ").
func logReason(line, key string) string {
	r := logField(line, key)
	if _, desc, ok := strings.Cut(r, "desc = "); ok {
		return desc
	}
	return r
}

// needWorkloads checks that the demo workloads run (omens lab up starts them).
func (l *Lab) needWorkloads() error {
	for _, w := range Workloads {
		if !l.decommissioned(w.Host) && w.process(l.Dir).pid() == 0 {
			return fmt.Errorf("lab: the demo workload %s does not run: run `omens lab up` first", w.Name)
		}
	}
	return nil
}

// logField returns the value of key in a SPIRE log line (logrus text format), or the
// whole line when it has none.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return line
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if q, err := strconv.QuotedPrefix(v); err == nil {
			if u, err := strconv.Unquote(q); err == nil {
				return u
			}
		}
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// What the scenarios that restart the server or an agent share.

// restartAgent stops host's agent and starts it again, on the SVID it holds.
func (l *Lab) restartAgent(ctx context.Context, p *ports, host string) error {
	if err := (process{name: host + "-agent", dir: l.Dir}).stop(20 * time.Second); err != nil {
		return err
	}
	return l.upAgent(ctx, p, host)
}

// restartServer stops the SPIRE server and starts it on its configuration rendered
// again.
func (l *Lab) restartServer(ctx context.Context, p *ports, ca *caState) error {
	if err := (process{name: "spire-server", dir: l.Dir}).stop(20 * time.Second); err != nil {
		return err
	}
	if err := l.upSPIREServer(ctx, p, ca); err != nil {
		return err
	}
	for _, h := range Hosts {
		// An agent whose own SVID ran out while it could not re-attest has exited.
		if err := l.upAgent(ctx, p, h); err != nil {
			return err
		}
	}
	return nil
}

// agentSelectors are the selectors the SPIRE server's API shows for agent id.
func (l *Lab) agentSelectors(ctx context.Context, id string) ([]string, error) {
	rc, err := registry.Dial(l.ServerSocket())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	agents, err := rc.Agents(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		if a.ID == id {
			return a.Selectors, nil
		}
	}
	return nil, fmt.Errorf("lab: the SPIRE server lists no agent %s", id)
}
