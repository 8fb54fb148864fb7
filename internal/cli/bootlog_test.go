package cli_test

import (
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm/tpmsim"
)

// A host booted from a real machine's event log reads back, with `omens pcr read`, the
// PCR values that machine's TPM quoted; `omens tpm reboot` plays the log again and refuses
// a boot profile change.
func TestPCRReadBootLog(t *testing.T) {
	const name = "go-tpm-tools_gce-cos-85-no-nonce_attestation-event_log"
	ref := realworld.PCRReferences(t, name)[0]
	sim, socket := testtpm.ServeSim(t, tpmsim.Options{BootLog: realworld.EventLogPath(t, name)})
	check := func() {
		t.Helper()
		for _, bank := range []string{"sha1", "sha256", "sha384"} {
			got := readPCRs(t, &simHost{sim: sim, socket: socket}, bank, "0-7")
			for i := range 8 {
				if want := hex.EncodeToString(ref.Banks[bank][i]); got[strconv.Itoa(i)] != want {
					t.Errorf("PCR %d (%s) = %s, the real machine quoted %s", i, bank, got[strconv.Itoa(i)], want)
				}
			}
		}
	}
	check()
	var st tpmsim.Status
	omensJSON(t, 0, &st, "tpm", "reboot", "--socket", socket, "--json")
	if st.Boots != 2 || st.EventLog != sim.EventLogPath() || st.BootLog == nil || st.BootLog.Events == 0 {
		t.Errorf("reboot status %+v, want boot 2 from %s", st, sim.EventLogPath())
	}
	check()
	code, _, stderr := omens(t, "tpm", "reboot", "--socket", socket, "--set", "0=firmware 2.0")
	if want := "boots from its event log"; code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("reboot --set: exit %d, stderr %q, want an error containing %q", code, stderr, want)
	}

	// A reboot into another machine's log: its PCRs from then on.
	const other = "go-tpm-tools_glinux-alex"
	omensJSON(t, 0, &st, "tpm", "reboot", "--socket", socket, "--boot-log", realworld.EventLogPath(t, other), "--json")
	if st.BootLog == nil || st.BootLog.StartupLocality != 3 {
		t.Errorf("reboot --boot-log status %+v, want the locality-3 log", st)
	}
	got := readPCRs(t, &simHost{sim: sim, socket: socket}, "sha256", "0-7")
	for i, want := range realworld.PCRReferences(t, other)[0].Banks["sha256"] {
		if got[strconv.Itoa(i)] != hex.EncodeToString(want) {
			t.Errorf("after reboot --boot-log: PCR %d = %s, want %x", i, got[strconv.Itoa(i)], want)
		}
	}
	code, _, stderr = omens(t, "tpm", "reboot", "--socket", socket, "--set", "0=x", "--boot-log", "x.bin")
	if want := "--boot-log and --set do not go together"; code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("reboot --set --boot-log: exit %d, stderr %q, want an error containing %q", code, stderr, want)
	}
}
