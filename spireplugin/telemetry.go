package spireplugin

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
)

// Telemetry reports a plugin's metrics through SPIRE's metrics host service, so that they
// reach SPIRE's own sinks (Prometheus, statsd, ...) under SPIRE's prefix. The names are
// package metrics'. Until the host service is brokered (BrokerHostServices), or when SPIRE
// does not offer it, every call does nothing. A failed call is logged at debug level and
// never fails an attestation.
//
// Each call to the host service is a gRPC round trip to SPIRE, a good part of what an
// attestation costs the plugin (README, "Scale"); so counters and gauges are held and sent
// together at most flushInterval after they change: a counter's increments as one
// IncrCounter of their sum, a gauge's last value as one SetGauge. A timer's samples cannot
// be summed, and go to SPIRE at once.
type Telemetry struct {
	mu     sync.RWMutex
	client metricsv1.MetricsClient
	log    hclog.Logger

	// pmu guards what waits for the next flush, scheduled when set.
	pmu       sync.Mutex
	counters  map[string]*pendingCounter
	gauges    map[string]*pendingGauge
	scheduled bool
}

// flushInterval is the longest a counter increment or a gauge value waits before it
// reaches SPIRE.
const flushInterval = time.Second

type pendingCounter struct {
	key    string
	labels []Label
	val    float32
}

type pendingGauge struct {
	key    string
	labels []Label
	val    float32
}

// series names a metric and its labels in the pending maps.
func series(key string, ls []Label) string {
	var b strings.Builder
	b.WriteString(key)
	for _, l := range ls {
		b.WriteByte(0)
		b.WriteString(l.Name)
		b.WriteByte(0)
		b.WriteString(l.Value)
	}
	return b.String()
}

// Broker asks SPIRE for the metrics host service; it is the body of a plugin's
// BrokerHostServices. It never fails: a SPIRE without the service gets no metrics.
func (t *Telemetry) Broker(b pluginsdk.ServiceBroker) error {
	c := new(metricsv1.MetricsServiceClient)
	ok := b.BrokerClient(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		if t.log != nil {
			t.log.Warn("SPIRE offers no metrics host service: tpm metrics are off")
		}
		return nil
	}
	t.client = c
	return nil
}

// SetLogger sets the logger of failed calls (SPIRE's, from the plugin's SetLogger).
func (t *Telemetry) SetLogger(l hclog.Logger) {
	t.mu.Lock()
	t.log = l
	t.mu.Unlock()
}

// Label is one name and value; both come from package metrics' bounded sets.
type Label struct{ Name, Value string }

func (t *Telemetry) get() (metricsv1.MetricsClient, hclog.Logger) {
	if t == nil {
		return nil, nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.client, t.log
}

func labels(ls []Label) []*metricsv1.Label {
	out := make([]*metricsv1.Label, len(ls))
	for i, l := range ls {
		out[i] = &metricsv1.Label{Name: l.Name, Value: l.Value}
	}
	return out
}

// callTimeout bounds one call to SPIRE's host service.
const callTimeout = 2 * time.Second

func (t *Telemetry) call(key string, f func(context.Context, metricsv1.MetricsClient) error) {
	c, log := t.get()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := f(ctx, c); err != nil && log != nil {
		log.Debug("metrics host service call failed", "metric", key, "error", err)
	}
}

// hold records a counter increment (gauge false) or a gauge value for the next flush.
func (t *Telemetry) hold(key string, ls []Label, v float32, gauge bool) {
	if c, _ := t.get(); c == nil {
		return
	}
	id := series(key, ls)
	t.pmu.Lock()
	defer t.pmu.Unlock()
	if gauge {
		if t.gauges == nil {
			t.gauges = map[string]*pendingGauge{}
		}
		t.gauges[id] = &pendingGauge{key: key, labels: ls, val: v}
	} else {
		if t.counters == nil {
			t.counters = map[string]*pendingCounter{}
		}
		if p := t.counters[id]; p != nil {
			p.val += v
		} else {
			t.counters[id] = &pendingCounter{key: key, labels: ls, val: v}
		}
	}
	if !t.scheduled {
		t.scheduled = true
		time.AfterFunc(flushInterval, t.Flush)
	}
}

// Flush sends the counters and gauges held, one call per series.
func (t *Telemetry) Flush() {
	t.pmu.Lock()
	counters, gauges := t.counters, t.gauges
	t.counters, t.gauges, t.scheduled = nil, nil, false
	t.pmu.Unlock()
	for _, p := range counters {
		t.call(p.key, func(ctx context.Context, c metricsv1.MetricsClient) error {
			_, err := c.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: []string{p.key}, Val: p.val, Labels: labels(p.labels)})
			return err
		})
	}
	for _, p := range gauges {
		t.call(p.key, func(ctx context.Context, c metricsv1.MetricsClient) error {
			_, err := c.SetGauge(ctx, &metricsv1.SetGaugeRequest{Key: []string{p.key}, Val: p.val, Labels: labels(p.labels)})
			return err
		})
	}
}

// Count adds one to counter key (sent at the next flush).
func (t *Telemetry) Count(key string, ls ...Label) {
	t.hold(key, ls, 1, false)
}

// Zero creates counter key at zero, so that its first increase is one Prometheus sees
// (a series that appears at 1 has no increase to compute). It is sent at once, before
// any increment held: a plugin zeroes its counters when configured, a few calls.
func (t *Telemetry) Zero(key string, ls ...Label) {
	t.call(key, func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: []string{key}, Val: 0, Labels: labels(ls)})
		return err
	})
}

// Gauge sets gauge key to v (sent at the next flush).
func (t *Telemetry) Gauge(key string, v float64, ls ...Label) {
	t.hold(key, ls, float32(v), true)
}

// Since records the time elapsed since start under timer key (SPIRE reports it in
// milliseconds).
func (t *Telemetry) Since(key string, start time.Time, ls ...Label) {
	t.call(key, func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.MeasureSince(ctx, &metricsv1.MeasureSinceRequest{Key: []string{key}, Time: start.UnixNano(), Labels: labels(ls)})
		return err
	})
}
