package stepcaproc_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/stepcaproc"
	"omens.dev/omens/internal/test/enginetest"
)

// TestInitRun drives the non-test API, as the lab does: a CA in a directory of the
// caller's, named only localhost, started and stopped with Run.
func TestInitRun(t *testing.T) {
	enginetest.Require(t, engines.Step, engines.StepCA)
	dir := t.TempDir()
	ca, err := stepcaproc.Init(filepath.Join(dir, "ca"), stepcaproc.Config{Name: "Lab CA", DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, port, _ := net.SplitHostPort(ca.Address); ca.URL != "https://localhost:"+port {
		t.Errorf("URL %s for address %s, want https://localhost:PORT", ca.URL, ca.Address)
	}
	if _, err := stepcaproc.Init(filepath.Join(dir, "ca"), stepcaproc.Config{}); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Errorf("second Init in the same directory: %v, want already holds a CA", err)
	}
	stop, err := ca.Run()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Run(); err == nil || err.Error() != "stepcaproc: step-ca already running" {
		t.Errorf("second Run: %v", err)
	}
	if got := ca.Root.Subject.CommonName; got != "Lab CA Root CA" {
		t.Errorf("root CN %q", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ca.Running() {
		t.Fatal("step-ca still running after stop")
	}
	if err := ca.Healthy(context.Background()); err == nil {
		t.Fatal("stopped CA answers /health")
	}
}
