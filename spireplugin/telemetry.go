package spireplugin

import (
	"context"
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
type Telemetry struct {
	mu     sync.RWMutex
	client metricsv1.MetricsClient
	log    hclog.Logger
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

// Count adds one to counter key.
func (t *Telemetry) Count(key string, ls ...Label) {
	t.call(key, func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: []string{key}, Val: 1, Labels: labels(ls)})
		return err
	})
}

// Zero creates counter key at zero, so that its first increase is one Prometheus sees
// (a series that appears at 1 has no increase to compute).
func (t *Telemetry) Zero(key string, ls ...Label) {
	t.call(key, func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: []string{key}, Val: 0, Labels: labels(ls)})
		return err
	})
}

// Gauge sets gauge key to v.
func (t *Telemetry) Gauge(key string, v float64, ls ...Label) {
	t.call(key, func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.SetGauge(ctx, &metricsv1.SetGaugeRequest{Key: []string{key}, Val: float32(v), Labels: labels(ls)})
		return err
	})
}

// Since records the time elapsed since start under timer key (SPIRE reports it in
// milliseconds).
func (t *Telemetry) Since(key string, start time.Time, ls ...Label) {
	t.call(key, func(ctx context.Context, c metricsv1.MetricsClient) error {
		_, err := c.MeasureSince(ctx, &metricsv1.MeasureSinceRequest{Key: []string{key}, Time: start.UnixNano(), Labels: labels(ls)})
		return err
	})
}
