package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	promrules "omens.dev/omens/deploy/prometheus"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/internal/test/promtest"
	"omens.dev/omens/lab"
)

// TestPrometheusSeesBIOSUpdate: the lab's Prometheus scrapes the SPIRE server, the agents
// and the RA with omens' alert rules loaded; through its HTTP API the bios-update scenario
// shows as a refusal by the PCR policy, counted, and OmensBootStateRejected firing, then
// clearing once the window has pinned the new state and no refusal follows.
func TestPrometheusSeesBIOSUpdate(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		enginetest.Missing(t, "prometheus not found: install Debian's prometheus package (scripts/install-deps.sh)")
	}
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	omens := buildOmens(t)
	l := &lab.Lab{Dir: dir, Omens: omens}
	t.Cleanup(func() { l.Down() })
	ctx := context.Background()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Migrate(ctx, func(string, []lab.HostStatus) {}); err != nil {
		t.Fatal(err)
	}

	// omens lab status --json names Prometheus and SPIRE's endpoints.
	out, err := exec.Command(omens, "lab", "status", "--dir", dir, "--json").Output()
	if err != nil {
		t.Fatalf("omens lab status --json: %v", err)
	}
	var st struct {
		Hosts      []lab.HostStatus `json:"hosts"`
		Monitoring lab.Monitoring   `json:"monitoring"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("omens lab status --json: %v\n%s", err, out)
	}
	m := st.Monitoring
	if len(st.Hosts) != 3 || !strings.HasPrefix(m.Prometheus, "up (pid ") || !strings.HasPrefix(m.PrometheusURL, "http://127.0.0.1:") ||
		!strings.HasPrefix(m.SPIREServerMetricsURL, "http://127.0.0.1:") || !strings.HasSuffix(m.SPIREServerMetricsURL, "/metrics") {
		t.Fatalf("omens lab status --json: %s", out)
	}
	prom := m.PrometheusURL

	// Every target is scraped: the server, three agents, the RA.
	up := func(job string) float64 {
		var n float64
		for _, r := range promtest.Query(t, prom, `up{job="`+job+`"}`) {
			n += r.Value
		}
		return n
	}
	promtest.Wait(t, time.Minute, "every target up", func() bool {
		return up("spire-server") == 1 && up("spire-agent") == 3 && up("omens-ra") == 1
	})

	rejected := `sum(spire_server_tpm_attestation{result="rejected", check="pcr_policy"})`
	count := func(expr string) (float64, bool) {
		rs := promtest.Query(t, prom, expr)
		if len(rs) == 0 {
			return 0, false
		}
		return rs[0].Value, true
	}
	promtest.Wait(t, time.Minute, "the PCR policy's counter scraped", func() bool { _, ok := count(rejected); return ok })
	before, _ := count(rejected)
	if s := promtest.AlertState(t, prom, "OmensBootStateRejected"); s != "" {
		t.Fatalf("OmensBootStateRejected is %s before the scenario", s)
	}

	sc, _ := lab.FindScenario("bios-update")
	var b bytes.Buffer
	if err := sc.Run(ctx, l, &b); err != nil {
		t.Fatalf("bios-update: %v\n%s", err, b.String())
	}
	t.Logf("bios-update:\n%s", b.String())

	// The refusal is counted, the new state pinned, and the alert fires.
	var after float64
	promtest.Wait(t, time.Minute, "the refusal counted", func() bool { after, _ = count(rejected); return after > before })
	promtest.Wait(t, time.Minute, "the pin counted", func() bool {
		v, _ := count(`sum(spire_server_tpm_boot_state_pinned)`)
		return v >= 1
	})
	states := map[string]bool{}
	promtest.Wait(t, time.Minute, "OmensBootStateRejected firing", func() bool {
		s := promtest.AlertState(t, prom, "OmensBootStateRejected")
		states[s] = true
		return s == "firing"
	})
	if mon := l.Monitoring(); !strings.Contains(strings.Join(mon.Firing, " "), "OmensBootStateRejected") {
		t.Errorf("lab status: alerts firing %v, want OmensBootStateRejected", mon.Firing)
	}

	// The host is in on its pinned state: no refusal follows, and the alert clears once
	// the refusal leaves the lab's window.
	promtest.Wait(t, promrules.LabWindow+time.Minute, "OmensBootStateRejected cleared", func() bool {
		return promtest.AlertState(t, prom, "OmensBootStateRejected") == ""
	})
	if v, _ := count(rejected); v != after {
		t.Errorf("refusals by the PCR policy went from %v to %v after the pin", after, v)
	}
	t.Logf("OmensBootStateRejected went through %v, then cleared", states)
}
