package lab

// The lab's monitoring: SPIRE's Prometheus endpoints (server and agents, with the tpm
// plugins' metrics), the RA's /metrics, and Debian's Prometheus scraping them with omens'
// alert rules (deploy/prometheus), in the lab's copy with short windows and for:
// (prometheus.LabRules). Everything lives under DIR/prometheus.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	promrules "omens.dev/omens/deploy/prometheus"
	"omens.dev/omens/spireconf"
)

// Prometheus' scrape and rule evaluation interval in the lab.
const promInterval = 2 * time.Second

// Prometheus' job names, as the alert rules name them.
const (
	jobSPIREServer = "spire-server"
	jobSPIREAgent  = "spire-agent"
	jobRA          = "omens-ra"
)

// metricsPorts are the monitoring ports, chosen at the first up and kept, so that a
// resumed lab keeps its addresses.
type metricsPorts struct {
	Prometheus  int            `json:"prometheus"`
	SPIREServer int            `json:"spire_server"`
	RA          int            `json:"ra"`
	Agents      map[string]int `json:"agents"`
}

func (l *Lab) promDir() string { return l.path("prometheus") }

func (l *Lab) promProcess() process { return process{name: "prometheus", dir: l.Dir} }

// metricsPorts reads DIR/prometheus/ports.json, choosing the ports it lacks.
func (l *Lab) metricsPorts() (*metricsPorts, error) {
	file := filepath.Join(l.promDir(), "ports.json")
	p := &metricsPorts{}
	if b, err := os.ReadFile(file); err == nil {
		if err := json.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", file, err)
		}
	}
	if p.Agents == nil {
		p.Agents = map[string]int{}
	}
	changed := false
	pick := func(f *int) error {
		if *f != 0 {
			return nil
		}
		var err error
		*f, err = freePort()
		changed = true
		return err
	}
	for _, f := range []*int{&p.Prometheus, &p.SPIREServer, &p.RA} {
		if err := pick(f); err != nil {
			return nil, err
		}
	}
	for _, h := range Hosts {
		port := p.Agents[h]
		if err := pick(&port); err != nil {
			return nil, err
		}
		p.Agents[h] = port
	}
	if changed {
		if err := os.MkdirAll(l.promDir(), 0o755); err != nil {
			return nil, err
		}
		b, _ := json.MarshalIndent(p, "", "  ")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// serverTelemetry is the SPIRE server's telemetry section: its Prometheus endpoint.
func (l *Lab) serverTelemetry() (*spireconf.Telemetry, error) {
	p, err := l.metricsPorts()
	if err != nil {
		return nil, err
	}
	return &spireconf.Telemetry{PrometheusHost: "127.0.0.1", PrometheusPort: p.SPIREServer}, nil
}

// agentTelemetry is host's SPIRE agent's telemetry section.
func (l *Lab) agentTelemetry(host string) (*spireconf.Telemetry, error) {
	p, err := l.metricsPorts()
	if err != nil {
		return nil, err
	}
	return &spireconf.Telemetry{PrometheusHost: "127.0.0.1", PrometheusPort: p.Agents[host]}, nil
}

// raMetricsListen is the RA's --metrics-listen.
func (l *Lab) raMetricsListen() (string, error) {
	p, err := l.metricsPorts()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p.RA), nil
}

// promConfig is prometheus.yml: every endpoint of the lab, the alert rules beside it.
func promConfig(p *metricsPorts) string {
	var agents []string
	for _, h := range Hosts {
		agents = append(agents, fmt.Sprintf("'127.0.0.1:%d'", p.Agents[h]))
	}
	return fmt.Sprintf(`# The lab's Prometheus (omens lab up): SPIRE's endpoints and the RA's.
global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
rule_files:
  - omens-alerts.yml
scrape_configs:
  - job_name: %[2]s
    static_configs:
      - targets: ['127.0.0.1:%[3]d']
  - job_name: %[4]s
    static_configs:
      - targets: [%[5]s]
  - job_name: %[6]s
    static_configs:
      - targets: ['127.0.0.1:%[7]d']
`, promInterval, jobSPIREServer, p.SPIREServer, jobSPIREAgent, strings.Join(agents, ", "), jobRA, p.RA)
}

// upPrometheus starts Debian's Prometheus unless it runs. Without it the lab runs on,
// saying how to get it.
func (l *Lab) upPrometheus(ctx context.Context) error {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		l.progress("prometheus: not installed, the lab runs without it (install Debian's prometheus package: scripts/install-deps.sh)")
		return nil
	}
	p, err := l.metricsPorts()
	if err != nil {
		return err
	}
	dir := l.promDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	// Written at every up, so that a lab from an older omens gets the current rules; a
	// running Prometheus reads them at its next start.
	if err := os.WriteFile(filepath.Join(dir, "omens-alerts.yml"), promrules.LabRules(), 0o644); err != nil {
		return err
	}
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(promConfig(p)), 0o644); err != nil {
		return err
	}
	url := l.prometheusURL(p)
	return l.ensure(ctx, l.promProcess(), []string{bin,
		"--config.file=" + conf, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=2d", "--web.listen-address=" + fmt.Sprintf("127.0.0.1:%d", p.Prometheus)},
		func() error { return httpOK(url + "/-/ready") })
}

func (l *Lab) prometheusURL(p *metricsPorts) string {
	return fmt.Sprintf("http://127.0.0.1:%d", p.Prometheus)
}

func httpOK(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// Monitoring is where the lab's metrics are, and the alerts firing now.
type Monitoring struct {
	// Prometheus is "up (pid N)", "down" or "not installed".
	Prometheus    string `json:"prometheus"`
	PrometheusURL string `json:"prometheus_url,omitempty"`
	// RulesFile is the lab's copy of omens' alert rules.
	RulesFile             string            `json:"rules_file,omitempty"`
	SPIREServerMetricsURL string            `json:"spire_server_metrics_url,omitempty"`
	AgentMetricsURLs      map[string]string `json:"agent_metrics_urls,omitempty"`
	RAMetricsURL          string            `json:"ra_metrics_url,omitempty"`
	// Firing are the names of the alerts firing now, sorted; Pending those pending.
	Firing  []string `json:"alerts_firing"`
	Pending []string `json:"alerts_pending"`
	Error   string   `json:"error,omitempty"`
}

// Monitoring reports the lab's metric endpoints and, when Prometheus runs, its alerts.
func (l *Lab) Monitoring() Monitoring {
	m := Monitoring{Prometheus: "down", Firing: []string{}, Pending: []string{}}
	if _, err := exec.LookPath("prometheus"); err != nil {
		m.Prometheus = "not installed"
	}
	if _, err := os.Stat(filepath.Join(l.promDir(), "ports.json")); err != nil {
		return m // a lab from before monitoring, or not up yet
	}
	p, err := l.metricsPorts()
	if err != nil {
		m.Error = err.Error()
		return m
	}
	m.SPIREServerMetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", p.SPIREServer)
	m.RAMetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", p.RA)
	m.AgentMetricsURLs = map[string]string{}
	for _, h := range Hosts {
		m.AgentMetricsURLs[h] = fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Agents[h])
	}
	pid := l.promProcess().pid()
	if pid == 0 {
		return m
	}
	m.Prometheus = fmt.Sprintf("up (pid %d)", pid)
	m.PrometheusURL = l.prometheusURL(p)
	m.RulesFile = filepath.Join(l.promDir(), "omens-alerts.yml")
	if err := m.readAlerts(); err != nil {
		m.Error = err.Error()
	}
	return m
}

// readAlerts asks Prometheus for its active alerts.
func (m *Monitoring) readAlerts() error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(m.PrometheusURL + "/api/v1/alerts")
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&out); err != nil {
		return fmt.Errorf("prometheus: /api/v1/alerts: %w", err)
	}
	seen := map[string]bool{}
	for _, a := range out.Data.Alerts {
		name := a.Labels["alertname"]
		if c := a.Labels["check"]; c != "" {
			name += "{check=" + c + "}"
		}
		if seen[a.State+name] {
			continue
		}
		seen[a.State+name] = true
		switch a.State {
		case "firing":
			m.Firing = append(m.Firing, name)
		case "pending":
			m.Pending = append(m.Pending, name)
		}
	}
	sort.Strings(m.Firing)
	sort.Strings(m.Pending)
	return nil
}

// WriteMonitoring prints where the metrics are and the alerts, one line each.
func WriteMonitoring(w io.Writer, m Monitoring) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	prom := m.Prometheus
	if m.PrometheusURL != "" {
		prom = m.PrometheusURL + "  " + m.Prometheus + ", rules " + m.RulesFile
	}
	fmt.Fprintf(tw, "prometheus\t%s\n", prom)
	if m.SPIREServerMetricsURL != "" {
		fmt.Fprintf(tw, "spire-server metrics\t%s\n", m.SPIREServerMetricsURL)
		for _, h := range Hosts {
			fmt.Fprintf(tw, "agent metrics (%s)\t%s\n", h, m.AgentMetricsURLs[h])
		}
		fmt.Fprintf(tw, "ra metrics\t%s\n", m.RAMetricsURL)
	}
	if m.PrometheusURL != "" {
		fmt.Fprintf(tw, "alerts firing\t%s\n", listOrNone(m.Firing))
		if len(m.Pending) > 0 {
			fmt.Fprintf(tw, "alerts pending\t%s\n", listOrNone(m.Pending))
		}
	}
	if m.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", m.Error)
	}
	return tw.Flush()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
