package ra

import (
	"context"
	"crypto/x509"
	"math/big"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"omens.dev/omens/metrics"
)

// Metrics are what the RA serves on /metrics (names in package metrics): requests,
// enrollments and renewals by result and check, revocations by result and reason, and
// step-ca's latency and errors by operation. Every label is from a bounded set: no host,
// EK or serial is a label.
type Metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	enrollments    *prometheus.CounterVec
	renewals       *prometheus.CounterVec
	revocations    *prometheus.CounterVec
	stepcaDuration *prometheus.HistogramVec
	stepcaErrors   *prometheus.CounterVec
}

// NewMetrics returns the RA's metrics on a registry of their own, with Go's process and
// runtime collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.RARequests,
			Help: "Requests to the enrollment endpoints, by path, result and the check that refused."},
			[]string{metrics.LabelPath, metrics.LabelResult, metrics.LabelCheck}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.RAEnrollments,
			Help: "Enrollments (finish) of hosts without a DevID certificate yet, by result and check."},
			[]string{metrics.LabelResult, metrics.LabelCheck}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.RARenewals,
			Help: "Enrollments (finish) of hosts that already hold a DevID certificate, by result and check."},
			[]string{metrics.LabelResult, metrics.LabelCheck}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.RARevocations,
			Help: "DevID certificate revocations through step-ca, by result and reason."},
			[]string{metrics.LabelResult, metrics.LabelReason}),
		stepcaDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metrics.StepCADuration,
			Help: "Latency of the RA's requests to step-ca, by operation.", Buckets: prometheus.DefBuckets},
			[]string{metrics.LabelOp}),
		stepcaErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.StepCAErrors,
			Help: "The RA's failed requests to step-ca, by operation."},
			[]string{metrics.LabelOp}),
	}
	m.reg.MustRegister(m.requests, m.enrollments, m.renewals, m.revocations, m.stepcaDuration, m.stepcaErrors,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Operations of step-ca, the op label.
const (
	opSign   = "sign"
	opRevoke = "revoke"
)

// kinds of enrollment, known once the session names the host.
const (
	kindEnrollment = "enrollment"
	kindRenewal    = "renewal"
)

// request counts one request and, at finish, its enrollment or renewal.
func (m *Metrics) request(a *audit, result, check string) {
	if m == nil {
		return
	}
	path := "other"
	switch a.path {
	case "/v1/enroll/begin":
		path = "begin"
	case "/v1/enroll/finish":
		path = "finish"
	}
	m.requests.WithLabelValues(path, result, check).Inc()
	switch a.kind {
	case kindEnrollment:
		m.enrollments.WithLabelValues(result, check).Inc()
	case kindRenewal:
		m.renewals.WithLabelValues(result, check).Inc()
	}
}

// revocation counts one revocation.
func (m *Metrics) revocation(reason string, err error) {
	if m == nil {
		return
	}
	result := metrics.ResultRevoked
	if err != nil {
		result = metrics.ResultError
	}
	m.revocations.WithLabelValues(result, reason).Inc()
}

// stepCA times one request to step-ca and counts its failure.
func (m *Metrics) stepCA(op string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.stepcaDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.stepcaErrors.WithLabelValues(op).Inc()
	}
}

// timedSigner and timedRevoker measure the calls to step-ca.
type timedSigner struct {
	Signer
	m *Metrics
}

func (s timedSigner) SignDevID(ctx context.Context, csr *x509.CertificateRequest, host string, lifetime time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
	start := time.Now()
	leaf, chain, err := s.Signer.SignDevID(ctx, csr, host, lifetime)
	s.m.stepCA(opSign, start, err)
	return leaf, chain, err
}

type timedRevoker struct {
	Revoker
	m *Metrics
}

func (r timedRevoker) Revoke(ctx context.Context, serial *big.Int, reasonCode int, reason string) error {
	start := time.Now()
	err := r.Revoker.Revoke(ctx, serial, reasonCode, reason)
	r.m.stepCA(opRevoke, start, err)
	return err
}

// kind says whether host's enrollment is a first one or a renewal: whether the RA issued
// the host a certificate before.
func (s *Server) kind(host string) string {
	b, err := s.cfg.Store.Read()
	if err != nil || b.Hosts[host] == nil || len(b.Hosts[host].Certificates) == 0 {
		return kindEnrollment
	}
	return kindRenewal
}
