package doctor_test

import (
	"crypto"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"omens.dev/omens/doctor"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/bootlog"
)

// bootLog writes a synthetic boot event log of shim, grub and a kernel, with Secure Boot
// on or off.
func bootLog(t *testing.T, dir string, secureBoot bool) string {
	t.Helper()
	keys, err := bootlog.NewPlatformKeys("omens doctor")
	if err != nil {
		t.Fatal(err)
	}
	img := func(path, content string) bootlog.Image {
		return bootlog.Image{Path: path, Digests: bootlog.ImageDigests([]byte(content), crypto.SHA1, crypto.SHA256)}
	}
	raw, err := bootlog.Boot{SecureBoot: secureBoot, Keys: keys, Shim: img(`\EFI\BOOT\BOOTX64.EFI`, "shim 15.8"),
		Grub: img(`\EFI\debian\grubx64.efi`, "grub 2.12"), Kernel: img(`\vmlinuz`, "linux 6.12.0")}.Write()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fmt.Sprintf("boot-sb-%v.bin", secureBoot))
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSimulatorHost runs the doctor on the reference simulator booted from a Secure Boot
// event log: the log replays to its PCRs and proves Secure Boot on; off after a reboot
// into a log with Secure Boot off; a log of another boot does not replay. Without an
// event log (the simulator's boot profile) the log is a warning, unless the agent is
// told to send one.
func TestSimulatorHost(t *testing.T) {
	dir := t.TempDir()
	sim, socket := testtpm.ServeSim(t, tpmsim.Options{BootLog: bootLog(t, dir, true)})
	r := doctor.Run(doctor.Options{TPMPath: socket, CAPath: sim.BundlePath(), EventLogPath: sim.EventLogPath()})
	wantStatus(t, r, "tpm_info", doctor.Pass, "TPM 2.0 revision 1.", "manufacturer MSFT (id:4D534654)")
	wantStatus(t, r, "ek_cert_rsa_2048", doctor.Pass, "NV 0x01C00002, EK hash ", "; trusted (omens Simulated TPM Manufacturer EK Intermediate CA <- omens Simulated TPM Manufacturer Root CA)")
	wantLine(t, r, "pcr_bank", doctor.Pass, "sha256 allocated with PCRs 0,2,4,7, the agent's pcr_selection")
	wantStatus(t, r, "event_log", doctor.Pass, sim.EventLogPath()+": ", "events (banks sha1, sha256), replays to the current sha256 PCRs 0,2,4,7")
	wantLine(t, r, "secure_boot", doctor.Pass, "on, as the event log proves it (PCR 7; 1 db certificate verified the boot chain)")
	if r.Failed() {
		t.Errorf("the doctor fails a simulated host:\n%s", dump(r))
	}

	// The log of another boot (Secure Boot off) against these PCRs does not replay.
	other := bootLog(t, dir, false)
	r = doctor.Run(doctor.Options{TPMPath: socket, EventLogPath: other})
	wantStatus(t, r, "event_log", doctor.Fail, other+": verify: event_log_replay: sha256 PCR 7: the log replays to ")
	wantLine(t, r, "secure_boot", doctor.Warn, "not known: the event log does not replay (see event_log)")

	// Rebooted into it, the host replays it and has Secure Boot off.
	if err := sim.RebootFromLog(other); err != nil {
		t.Fatal(err)
	}
	r = doctor.Run(doctor.Options{TPMPath: socket, EventLogPath: sim.EventLogPath()})
	wantStatus(t, r, "event_log", doctor.Pass, "replays to the current sha256 PCRs 0,2,4,7")
	wantLine(t, r, "secure_boot", doctor.Warn, "off, as the event log proves it (PCR 7)")

	// No event log: a warning; a missing log the agent is told to send: a failure.
	missing := filepath.Join(dir, "binary_bios_measurements")
	r = doctor.Run(doctor.Options{TPMPath: socket})
	wantLine(t, r, "event_log", doctor.Warn, "no event log at /sys/kernel/security/tpm0/binary_bios_measurements: the server can check PCR values only, no boot rules")
	conf := agentConf(t, dir, closedPort(t), "", "", spireconf.Setting{Key: "tpm_path", Value: socket}, spireconf.Setting{Key: "event_log_path", Value: missing})
	r = doctor.Run(doctor.Options{AgentConfigPath: conf})
	wantLine(t, r, "event_log", doctor.Fail, "no event log at "+missing+", which the agent's event_log_path names")
	wantLine(t, r, "plugin", doctor.Fail, `NodeAttestor "tpm" has no plugin_cmd: SPIRE has no built-in "tpm"`)
}

// TestSPIREServerReachable: the agent's server, a real SPIRE server, answers TLS as its
// trust domain's server.
func TestSPIREServerReachable(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.ServerConfig{TrustDomain: "funlab.casa"})
	_, port, err := net.SplitHostPort(srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	dir := t.TempDir()
	plugin, sum := pluginBinary(t, dir)
	r := doctor.Run(doctor.Options{AgentConfigPath: agentConf(t, dir, p, plugin, sum)})
	wantLine(t, r, "spire_server", doctor.Pass, srv.Address+" answers TLS as spiffe://funlab.casa/spire/server")
	srv.Stop(t)
	r = doctor.Run(doctor.Options{AgentConfigPath: agentConf(t, dir, p, plugin, sum)})
	wantLine(t, r, "spire_server", doctor.Fail, fmt.Sprintf("%s: dial tcp %s: connect: connection refused", srv.Address, srv.Address))
}
