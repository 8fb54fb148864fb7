// Package promtest reads Prometheus for tests: a sample of an exposition (what a /metrics
// endpoint serves), and the HTTP API of a running Prometheus (/api/v1/query,
// /api/v1/alerts).
package promtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample returns the value of the sample name{labels...} in text, a Prometheus text
// exposition, and whether it is there: the sum over the samples whose labels include
// labels (so SPIRE's own "host" label does not matter). Counters, gauges and untyped
// samples have one value; for a summary or a histogram it is the sample count.
func Sample(t testing.TB, text, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("promtest: exposition does not parse: %v", err)
	}
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
metric:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue metric
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

// Result is one series of an instant query.
type Result struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant query on the Prometheus at base (http://127.0.0.1:port).
func Query(t testing.TB, base, expr string) []Result {
	t.Helper()
	var out struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	get(t, base+"/api/v1/query?query="+url.QueryEscape(expr), &out)
	var rs []Result
	for _, r := range out.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("promtest: query %s: value %v: %v", expr, r.Value[1], err)
		}
		rs = append(rs, Result{Metric: r.Metric, Value: v})
	}
	return rs
}

// Alert is one alert of /api/v1/alerts.
type Alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"` // "pending" or "firing"
}

// Alerts returns the active (pending or firing) alerts of the Prometheus at base.
func Alerts(t testing.TB, base string) []Alert {
	t.Helper()
	var out struct {
		Alerts []Alert `json:"alerts"`
	}
	get(t, base+"/api/v1/alerts", &out)
	return out.Alerts
}

// AlertState returns the state of alert name ("pending", "firing"), or "" when inactive.
func AlertState(t testing.TB, base, name string) string {
	t.Helper()
	state := ""
	for _, a := range Alerts(t, base) {
		if a.Labels["alertname"] == name && (state == "" || a.State == "firing") {
			state = a.State
		}
	}
	return state
}

// Wait polls cond every second until it returns true, failing the test with what after
// timeout.
func Wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("promtest: waited %s for %s", timeout, what)
		}
		time.Sleep(time.Second)
	}
}

func get(t testing.TB, u string, v any) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("promtest: %s: %v", u, err)
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Status != "success" {
		t.Fatalf("promtest: %s: %s %s", u, resp.Status, firstLine(b, env.Error, err))
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		t.Fatalf("promtest: %s: %v", u, err)
	}
}

func firstLine(b []byte, apiErr string, err error) string {
	if apiErr != "" {
		return apiErr
	}
	return fmt.Sprintf("%v: %.200s", err, b)
}
