package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/status"

	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/bootlog"
)

// simBootLog measures a boot into the simulated TPM, after its default boot profile, and
// returns the log of the whole boot: the profile's events, a separator in each of PCRs
// 0-7, a boot loader and a kernel in PCR 4. Every digest is the hash of its event's data,
// as tpm.ExtendPCR measures it.
func simBootLog(t *testing.T, h *simHost) *eventlogtest.Log {
	t.Helper()
	l := &eventlogtest.Log{Banks: []tpm2.TPMIAlgHash{tpm2.TPMAlgSHA1, tpm2.TPMAlgSHA256}}
	for pcr, events := range tpmsim.DefaultProfile() {
		for _, e := range events {
			l.Events = append(l.Events, eventlogtest.Measured(pcr, bootlog.EvPostCode, []byte(e)))
		}
	}
	slices.SortStableFunc(l.Events, func(a, b eventlogtest.Event) int { return a.PCR - b.PCR })
	var boot []eventlogtest.Event
	for pcr := 0; pcr <= 7; pcr++ {
		boot = append(boot, eventlogtest.Separator(pcr))
	}
	boot = append(boot, eventlogtest.Measured(4, bootlog.EvEFIBootServicesApplication, []byte("grub")),
		eventlogtest.Measured(4, bootlog.EvEFIBootServicesApplication, []byte("kernel")))
	for _, e := range boot {
		if err := tpm.ExtendPCR(h.sim, e.PCR, e.Data); err != nil {
			t.Fatal(err)
		}
	}
	l.Events = append(l.Events, boot...)
	return l
}

// TestEventLogThroughPlugins: with event_log = "verify", the agent's log replays to its
// quote; a tampered log is refused naming the check, the PCR and both values.
func TestEventLogThroughPlugins(t *testing.T) {
	h := startSimHost(t)
	l := simBootLog(t, h)
	logPath := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(logPath, l.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	// PCR 7 holds the default profile's event, which is no Secure Boot variable: the
	// quote leaves it out.
	p.configure(t,
		`ca_path = "`+h.sim.BundlePath()+`"
		 pcr_selection = [0, 2, 4]
		 event_log = "verify"`,
		`tpm_path = "`+h.socket+`"
		 pcr_selection = [0, 2, 4]
		 event_log_path = "`+logPath+`"`)
	if _, err := p.attest(t); err != nil {
		t.Fatalf("attestation with a log that replays: %v", err)
	}

	tampered := l.Clone()
	tampered.Events = append(tampered.Events, eventlogtest.Measured(4, bootlog.EvEFIBootServicesApplication, []byte("another kernel")))
	if err := os.WriteFile(logPath, tampered.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := p.attest(t)
	st, _ := status.FromError(err)
	want := fmt.Sprintf("tpm: verify: event_log_replay: sha256 PCR 4: the log replays to %x, the quote says %x",
		tampered.PCRs(tpm2.TPMAlgSHA256, 4)[4], l.PCRs(tpm2.TPMAlgSHA256, 4)[4])
	if st.Code().String() != "PermissionDenied" || !strings.Contains(st.Message(), want) {
		t.Errorf("tampered log: %v\nwant PermissionDenied with %q", err, want)
	}
	if !strings.Contains(p.log.String(), "check=event_log_replay") {
		t.Errorf("the server did not log check=event_log_replay:\n%s", p.log.String())
	}

	// The same tampered log under "ignore" (the default) is not read.
	p2 := loadPlugins(t)
	p2.configure(t, `ca_path = "`+h.sim.BundlePath()+`"
		 pcr_selection = [0, 2, 4]`,
		`tpm_path = "`+h.socket+`"
		 pcr_selection = [0, 2, 4]
		 event_log_path = "`+logPath+`"`)
	if _, err := p2.attest(t); err != nil {
		t.Errorf("event_log ignored: %v", err)
	}
}

func TestEventLogConfig(t *testing.T) {
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `
		allow_insecure = true
		event_log = "sometimes"
	`})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`event_log "sometimes": want "ignore", "verify" or "require"`}
	if resp.Valid || !slices.Equal(resp.Notes, want) {
		t.Errorf("Validate notes %q, want %q", resp.Notes, want)
	}
	resp, err = p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `
		allow_insecure = true
		event_log_allow_sha1 = true
	`})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{`event_log_allow_sha1 is set, but event_log is "ignore": set event_log = "verify" or "require"`}
	if resp.Valid || !slices.Equal(resp.Notes, want) {
		t.Errorf("Validate notes %q, want %q", resp.Notes, want)
	}
}
