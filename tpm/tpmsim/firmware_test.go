//go:build cgo

package tpmsim_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpmrules"
)

// checkBoot compares the simulator's PCRs 0-7 with a real machine's read-out and replays
// the log the host serves against them.
func checkBoot(t *testing.T, sim *tpmsim.Sim, ref realworld.PCRReference, banks []string) {
	t.Helper()
	for _, name := range banks {
		bank, _ := tpm.ParseBank(name)
		got, err := tpm.ReadPCRs(sim, bank, []int{0, 1, 2, 3, 4, 5, 6, 7})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			if !bytes.Equal(got[i], ref.Banks[name][i]) {
				t.Errorf("PCR %d (%s) = %x, the real machine read %x", i, name, got[i], ref.Banks[name][i])
			}
		}
	}
	raw, err := os.ReadFile(sim.EventLogPath())
	if err != nil {
		t.Fatal(err)
	}
	testtpm.ReplayLog(t, sim, raw, tpmrules.Banks...)
}

// A host booted from a real machine's boot log has that machine's PCRs: a GCE Shielded VM
// with Secure Boot on (sha1, sha256 and sha384 banks), compared with the PCR values of a
// quote its TPM signed; and the log it serves replays against its PCRs. A restart and a
// reboot reset the PCRs and play the log again.
func TestBootLogRealMachine(t *testing.T) {
	const name = "go-tpm-tools_gce-cos-85-no-nonce_attestation-event_log"
	ref := realworld.PCRReferences(t, name)[0]
	if !strings.HasPrefix(ref.Kind, "TPM quote") {
		t.Fatalf("reference of %s is %q, want the PCR values of a TPM quote", name, ref.Kind)
	}
	log := realworld.EventLogPath(t, name)
	dir := t.TempDir()
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: dir, BootLog: log})
	if err != nil {
		t.Fatal(err)
	}
	banks := []string{"sha1", "sha256", "sha384"}
	checkBoot(t, sim, ref, banks)
	st := sim.Status()
	if st.EventLog != sim.EventLogPath() || st.BootLog == nil || !slices.Equal(st.BootLog.Banks, banks) || st.BootProfile != nil {
		t.Errorf("status %+v, want event log %s played in banks %v and no boot profile", st, sim.EventLogPath(), banks)
	}
	raw, _ := os.ReadFile(log)
	served, _ := os.ReadFile(sim.EventLogPath())
	if !bytes.Equal(raw, served) {
		t.Error("the served event log differs from the boot log")
	}
	if err := sim.Reboot(nil); err != nil {
		t.Fatal(err)
	}
	checkBoot(t, sim, ref, banks)
	want := "tpmsim: this host boots from its event log " + sim.EventLogPath() + "; a boot profile change (set) does not apply to it"
	if err := sim.Reboot(tpmsim.Profile{0: {"firmware 2.0"}}); err == nil || err.Error() != want {
		t.Errorf("Reboot(set): %v, want %s", err, want)
	}
	sim.Close()

	// A later start without --boot-log boots the log kept in the state directory.
	sim, err = tpmsim.Start(tpmsim.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	checkBoot(t, sim, ref, banks)
}

// A log whose CRTM ran at locality 3 (a Lenovo laptop; StartupLocality event) starts PCR 0
// at 3, so its PCR 0 matches only if the simulator starts it there too.
func TestBootLogStartupLocality(t *testing.T) {
	const name = "go-tpm-tools_glinux-alex"
	ref := realworld.PCRReferences(t, name)[0]
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: t.TempDir(), BootLog: realworld.EventLogPath(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if got := sim.Status().BootLog.StartupLocality; got != 3 {
		t.Errorf("startup locality %d, want 3", got)
	}
	checkBoot(t, sim, ref, []string{"sha1", "sha256"})
}

func TestBootLogRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.bin"
	if err := os.WriteFile(bad, []byte("not an event log"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tpmsim.Start(tpmsim.Options{StateDir: dir + "/host", BootLog: bad})
	if err == nil || !strings.HasPrefix(err.Error(), "tpmsim: boot log "+bad+": ") {
		t.Fatalf("Start: %v, want a boot log error", err)
	}
}

// A reboot into another log boots that log from then on (here: a real machine whose CRTM
// ran at locality 3); one that does not parse changes nothing.
func TestRebootFromLog(t *testing.T) {
	const first, second = "go-tpm-tools_gce-cos-85-no-nonce_attestation-event_log", "go-tpm-tools_glinux-alex"
	dir := t.TempDir()
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: dir, BootLog: realworld.EventLogPath(t, first)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.RebootFromLog(realworld.EventLogPath(t, second)); err != nil {
		t.Fatal(err)
	}
	banks := []string{"sha1", "sha256"}
	checkBoot(t, sim, realworld.PCRReferences(t, second)[0], banks)
	bad := filepath.Join(t.TempDir(), "bad.bin")
	if err := os.WriteFile(bad, []byte("not an event log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sim.RebootFromLog(bad); err == nil || !strings.HasPrefix(err.Error(), "tpmsim: boot log "+bad+": ") {
		t.Errorf("RebootFromLog(garbage): %v, want a boot log error", err)
	}
	checkBoot(t, sim, realworld.PCRReferences(t, second)[0], banks)
	sim.Close()
	sim, err = tpmsim.Start(tpmsim.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	checkBoot(t, sim, realworld.PCRReferences(t, second)[0], banks)
}

// Every real log of the shared set boots a simulated host whose PCRs it then replays
// against, and whose PCRs 0-7 are those of the log's reference where it has one; or it is
// refused when the host starts, with go-attestation's reason. The HP log's firmware
// extended two ExitBootServices events into PCR 5 that it never logged, so its reference
// differs there (and only there).
func TestBootLogEveryRealLog(t *testing.T) {
	refused := map[string]bool{
		"intel-secl_txt-logs":                true, // a TXT heap log with a zero-filled tail
		"intel-secl_uefi_event_log":          true, // a 64 KiB buffer with a zero-filled tail
		"tpm2-tss_binary_measurements_hcrtm": true, // an SM3-256 bank
	}
	differs := map[string]int{"go-attestation_ebs_event_missing_eventlog": 5}
	logs, err := filepath.Glob(filepath.Join(realworld.Dir(t), "eventlogs", "*.bin"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no event logs in the real-world data (%v)", err)
	}
	for _, path := range logs {
		name := strings.TrimSuffix(filepath.Base(path), ".bin")
		t.Run(name, func(t *testing.T) {
			sim, err := tpmsim.Start(tpmsim.Options{StateDir: t.TempDir(), BootLog: path})
			if refused[name] {
				if err == nil || !strings.HasPrefix(err.Error(), "tpmsim: boot log "+path+": ") {
					t.Fatalf("Start: %v, want the log refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			raw, _ := os.ReadFile(path)
			testtpm.ReplayLog(t, sim, raw, tpmrules.Banks...)
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), name+".pcrs.json")); err != nil {
				return
			}
			for bankName, want := range realworld.PCRReferences(t, name)[0].Banks {
				bank, err := tpm.ParseBank(bankName)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tpm.ReadPCRs(sim, bank, []int{0, 1, 2, 3, 4, 5, 6, 7})
				if err != nil {
					t.Fatal(err)
				}
				for i := range 8 {
					w, ok := want[i]
					if !ok {
						continue
					}
					if d, ok := differs[name]; ok && d == i {
						if bytes.Equal(got[i], w) {
							t.Errorf("PCR %d (%s) matches the reference, which holds events the log lacks", i, bankName)
						}
						continue
					}
					if !bytes.Equal(got[i], w) {
						t.Errorf("PCR %d (%s) = %x, reference %x", i, bankName, got[i], w)
					}
				}
			}
		})
	}
}
