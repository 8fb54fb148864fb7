package ra_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"omens.dev/omens/internal/test/promtest"
	"omens.dev/omens/metrics"
	"omens.dev/omens/ra"
)

// TestMetrics: the RA's /metrics counts a refused enrollment by its check, an accepted
// enrollment, a renewal, the revocation of the superseded certificate, and step-ca's
// requests, against real step-ca.
func TestMetrics(t *testing.T) {
	m := ra.NewMetrics()
	r := newRigWith(t, nil, func(c *ra.Config) { c.Metrics = m })
	hs := httptest.NewServer(m.Handler())
	t.Cleanup(hs.Close)
	scrape := func() string {
		resp, err := http.Get(hs.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	want := func(text, name string, labels map[string]string, n float64) {
		t.Helper()
		if v, _ := promtest.Sample(t, text, name, labels); v != n {
			t.Errorf("%s%v = %v, want %v", name, labels, v, n)
		}
	}

	dir := t.TempDir()
	if _, err := r.enroll(t, dir, 0x81010002); err == nil {
		t.Fatal("an unbound host was enrolled")
	}
	text := scrape()
	want(text, metrics.RAEnrollments, map[string]string{"result": "refused", "check": ra.CheckPending}, 1)
	want(text, metrics.RARequests, map[string]string{"path": "begin", "result": "accepted", "check": "none"}, 1)
	want(text, metrics.StepCADuration, map[string]string{"op": "sign"}, 0)

	if _, err := r.store.Approve(host, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.enroll(t, dir, 0x81010002); err != nil {
		t.Fatal(err)
	}
	if _, err := r.enroll(t, dir, 0x81010002); err != nil {
		t.Fatal(err)
	}
	r.clock.advance(2 * ra.DefaultSupersedeGrace)
	if err := r.srv.RevokeSuperseded(context.Background()); err != nil {
		t.Fatal(err)
	}
	text = scrape()
	want(text, metrics.RAEnrollments, map[string]string{"result": "accepted", "check": "none"}, 1)
	want(text, metrics.RARenewals, map[string]string{"result": "accepted", "check": "none"}, 1)
	want(text, metrics.RARevocations, map[string]string{"result": "revoked", "reason": "superseded"}, 1)
	want(text, metrics.StepCADuration, map[string]string{"op": "sign"}, 2)
	want(text, metrics.StepCADuration, map[string]string{"op": "revoke"}, 1)
	if _, ok := promtest.Sample(t, text, metrics.StepCAErrors, nil); ok {
		t.Errorf("step-ca errors counted where none happened")
	}
}
