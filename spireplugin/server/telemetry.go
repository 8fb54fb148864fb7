package server

// This file is what the plugin reports through SPIRE's telemetry (names in package
// metrics): a count and a time per decision, a count per pinned boot state, and gauges
// refreshed every reportInterval (open windows, the DevID CRL's age, the soonest EK and
// DevID certificate expiry among the agents accepted lately).

import (
	"context"
	"crypto/x509"
	"slices"
	"sync"
	"time"

	"omens.dev/omens/metrics"
	"omens.dev/omens/spireplugin"
	"omens.dev/omens/verify"
)

// reportInterval is how often the gauges are refreshed.
const reportInterval = 15 * time.Second

// countDecision reports one attestation: its result, the check that refused it, its mode
// and its time; a pinned boot state; the certificates of an accepted agent.
func (p *Plugin) countDecision(rt *runtime, a audit, start time.Time, err error) {
	result, check := metrics.ResultAccepted, metrics.CheckNone
	if err != nil {
		result, check = metrics.ResultRejected, a.check
		if check == "" {
			check = "internal"
		}
	}
	p.tel.Count(metrics.Attestation,
		spireplugin.Label{Name: metrics.LabelResult, Value: result},
		spireplugin.Label{Name: metrics.LabelCheck, Value: check},
		spireplugin.Label{Name: metrics.LabelMode, Value: a.mode})
	p.tel.Since(metrics.VerificationTime, start, spireplugin.Label{Name: metrics.LabelResult, Value: result})
	if err != nil {
		return
	}
	if a.pinned {
		p.tel.Count(metrics.BootStatePinned)
		p.reportWindows(rt)
	}
	if r := a.result; r != nil {
		var ek, devid time.Time
		if r.EKCert != nil && r.EKCert.Cert != nil {
			ek = r.EKCert.Cert.NotAfter
		}
		if r.DevID != nil && r.DevID.Cert != nil {
			devid = r.DevID.Cert.NotAfter
		}
		p.expiry.seen(r.EKHash, ek, devid, p.now())
		// The soonest expiry is a walk over every TPM tracked: once per flushInterval,
		// not once per attestation.
		if p.expiryDue.CompareAndSwap(false, true) {
			time.AfterFunc(expiryDelay, func() {
				p.expiryDue.Store(false)
				p.reportExpiry()
			})
		}
	}
}

// expiryDelay is how long after an accepted attestation the expiry gauges are computed;
// they reach SPIRE at most a second (spireplugin's flush) later.
const expiryDelay = time.Second

// serverChecks are the checks the plugin names besides the verifier's (verify.Checks):
// the PCR policy's refusal, a configuration that cannot be loaded, and an error that is
// no check's.
var serverChecks = []string{"pcr_policy", "configuration", "internal"}

// zeroCounters creates the attestation counters of this mode at zero, one per check, so
// that an alert on their increase sees the first rejection.
func (p *Plugin) zeroCounters(rt *runtime) {
	mode := spireplugin.Label{Name: metrics.LabelMode, Value: rt.cfg.DevIDMode}
	p.tel.Zero(metrics.Attestation, spireplugin.Label{Name: metrics.LabelResult, Value: metrics.ResultAccepted},
		spireplugin.Label{Name: metrics.LabelCheck, Value: metrics.CheckNone}, mode)
	for _, c := range append(slices.Clone(verify.Checks), serverChecks...) {
		p.tel.Zero(metrics.Attestation, spireplugin.Label{Name: metrics.LabelResult, Value: metrics.ResultRejected},
			spireplugin.Label{Name: metrics.LabelCheck, Value: c}, mode)
	}
	p.tel.Zero(metrics.BootStatePinned)
}

// reportLoop refreshes the gauges until ctx ends (a new Configure).
func (p *Plugin) reportLoop(ctx context.Context, rt *runtime) {
	for {
		p.reportWindows(rt)
		p.reportCRL(rt)
		p.reportExpiry()
		select {
		case <-ctx.Done():
			return
		case <-time.After(reportInterval):
		}
	}
}

// reportWindows sets the number of open allow-next windows.
func (p *Plugin) reportWindows(rt *runtime) {
	if rt.policy == nil {
		return
	}
	rep, err := rt.policy.Report(p.now())
	if err != nil {
		p.log.Debug("boot-state report for metrics failed", "error", err)
		return
	}
	open := 0
	for _, h := range rep.Hosts {
		if h.Window != nil && h.Window.Open {
			open++
		}
	}
	p.tel.Gauge(metrics.WindowsOpen, float64(open))
}

// reportCRL sets the age of the DevID CRL held and the time to its nextUpdate. It reads
// what the plugin holds (the CRL file, the CRL last fetched) and fetches nothing: the
// CRL is fetched when an attestation needs it, and a report must not change that.
func (p *Plugin) reportCRL(rt *runtime) {
	var crl *x509.RevocationList
	if rt.crlFile != nil {
		rt.mu.Lock()
		crl, _ = rt.crlFile.get()
		rt.mu.Unlock()
	}
	if rt.crlURL != nil {
		if c := rt.crlURL.held(); c != nil && newerCRL(c, crl) {
			crl = c
		}
	}
	if crl == nil {
		return
	}
	now := p.now()
	p.tel.Gauge(metrics.CRLAge, now.Sub(crl.ThisUpdate).Seconds())
	if !crl.NextUpdate.IsZero() {
		p.tel.Gauge(metrics.CRLNextUpdate, crl.NextUpdate.Sub(now).Seconds())
	}
}

// reportExpiry sets the seconds left to the soonest EK and DevID certificate expiry.
func (p *Plugin) reportExpiry() {
	now := p.now()
	ek, devid := p.expiry.soonest(now)
	if !ek.IsZero() {
		p.tel.Gauge(metrics.EKCertExpiry, ek.Sub(now).Seconds())
	}
	if !devid.IsZero() {
		p.tel.Gauge(metrics.DevIDCertExpiry, devid.Sub(now).Seconds())
	}
}

// expiryTracker remembers, per EK hash, the notAfter of the EK and DevID certificates of
// the last accepted attestation, for expiryMemory and for at most maxTracked TPMs: the
// gauges carry only the soonest, never a per-agent label.
type expiryTracker struct {
	mu    sync.Mutex
	certs map[string]certExpiry
}

type certExpiry struct{ ek, devid, seen time.Time }

const (
	// expiryMemory is how long an agent's certificates count after its last attestation:
	// agents re-attest well within it, and a decommissioned one stops counting.
	expiryMemory = 24 * time.Hour
	// maxTracked bounds the memory of a server that sees very many TPMs.
	maxTracked = 100000
)

func (t *expiryTracker) seen(ekHash string, ek, devid, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.certs == nil {
		t.certs = map[string]certExpiry{}
	}
	if _, ok := t.certs[ekHash]; !ok && len(t.certs) >= maxTracked {
		t.forget(now)
		if len(t.certs) >= maxTracked {
			return
		}
	}
	t.certs[ekHash] = certExpiry{ek: ek, devid: devid, seen: now}
}

// forget drops the TPMs not seen within expiryMemory.
func (t *expiryTracker) forget(now time.Time) {
	for h, c := range t.certs {
		if now.Sub(c.seen) > expiryMemory {
			delete(t.certs, h)
		}
	}
}

// soonest returns the earliest EK and DevID notAfter among the TPMs seen lately; zero
// when there is none.
func (t *expiryTracker) soonest(now time.Time) (ek, devid time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(now)
	for _, c := range t.certs {
		if !c.ek.IsZero() && (ek.IsZero() || c.ek.Before(ek)) {
			ek = c.ek
		}
		if !c.devid.IsZero() && (devid.IsZero() || c.devid.Before(devid)) {
			devid = c.devid
		}
	}
	return ek, devid
}
