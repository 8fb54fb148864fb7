package e2e_test

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/policy"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/bootlog"
)

// bootLogs writes the event logs of one platform booting shim, grub and each kernel, in
// that order, and returns their paths.
func bootLogs(t *testing.T, dir string, kernels ...string) []string {
	t.Helper()
	keys, err := bootlog.NewPlatformKeys("omens e2e")
	if err != nil {
		t.Fatal(err)
	}
	img := func(path, content string) bootlog.Image {
		return bootlog.Image{Path: path, Digests: bootlog.ImageDigests([]byte(content), crypto.SHA1, crypto.SHA256)}
	}
	var out []string
	for _, k := range kernels {
		b := bootlog.Boot{SecureBoot: true, Keys: keys, Shim: img(`\EFI\BOOT\BOOTX64.EFI`, "shim 15.8"),
			Grub: img(`\EFI\debian\grubx64.efi`, "grub 2.12"), Kernel: img(`\vmlinuz`, k)}
		log, err := b.Write()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, k+".bin")
		if err := os.WriteFile(p, log, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestBootPolicyWithRealSPIRE: an agent attests with its event log under event_log =
// "require" and boot rules learned from its boot (`omens pcr policy learn`); a kernel
// approved beforehand (`omens pcr policy add-kernel --from-log`) passes after the reboot
// into it, without a window; `omens pcr policy show` names what the host proved; a kernel
// not approved is refused by the kernels rule; a log
// that does not replay to the quoted PCRs is refused (check=event_log_replay).
func TestBootPolicyWithRealSPIRE(t *testing.T) {
	requireEngines(t)
	logs := bootLogs(t, t.TempDir(), "linux 6.1.0", "linux 6.12.0", "linux 6.13.0")
	host := startSimHost(t, "web", "--boot-log", logs[0])
	ekHash := host.ekHash(t)

	dir := t.TempDir()
	policyPath := filepath.Join(dir, "pcr-policy.hcl")
	fragment := omens(t, "pcr", "policy", "learn", "--log", logs[0], "--group", "tower")
	src := "unknown_hosts = \"reject\"\n\n# learned from the host's first boot\n" + fragment +
		fmt.Sprintf("\nhost %q {\n  name  = \"web\"\n  group = \"tower\"\n}\n", ekHash)
	if err := os.WriteFile(policyPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		NodeAttestors: tpmServerAttestors(t, host.bundle(), policyPath, spireconf.Setting{Key: "event_log", Value: "require"}),
		AgentTTL:      "20s",
	})
	agentID := "spiffe://funlab.casa/spire/agent/tpm/" + ekHash
	spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "web", NodeAttestor: tpmAgentAttestor(t, host.socket,
		spireconf.Setting{Key: "event_log_path", Value: filepath.Join(host.dir, "state", tpmsim.EventLogFile)})})
	info := srv.Agent(t, agentID)
	for _, want := range []string{"tpm:secure_boot:enabled", "tpm:pcr_policy:tower"} {
		if !slices.Contains(info.Selectors, want) {
			t.Errorf("selector %s missing; agent has %v", want, info.Selectors)
		}
	}
	lastKernel := func() string {
		t.Helper()
		var r policy.Report
		if err := json.Unmarshal([]byte(omens(t, "pcr", "policy", "show", "--policy", policyPath, "--json")), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Hosts) != 1 || r.Hosts[0].Last == nil || r.Hosts[0].Last.Boot == nil {
			t.Fatalf("policy show: no last boot of the host: %+v", r.Hosts)
		}
		if b := r.Hosts[0].Last.Boot; b.SecureBoot != "enabled" || len(b.Authorities) != 1 {
			t.Errorf("policy show: last boot %+v, want Secure Boot enabled and one authority", b)
		}
		return r.Hosts[0].Last.Boot.Kernel
	}
	k1, k2 := bootlog.ImageDigests([]byte("linux 6.1.0"), crypto.SHA256)[crypto.SHA256], bootlog.ImageDigests([]byte("linux 6.12.0"), crypto.SHA256)[crypto.SHA256]
	if got := lastKernel(); got != hex.EncodeToString(k1) {
		t.Errorf("policy show: last kernel %s, want %x", got, k1)
	}

	// A kernel update, approved before the reboot: the next re-attestation passes.
	omens(t, "pcr", "policy", "add-kernel", "--policy", policyPath, "--group", "tower", "--from-log", logs[1])
	accepted := countLog(srv, "tpm attestation accepted")
	rejected := countLog(srv, "tpm attestation rejected")
	omens(t, "tpm", "reboot", "--socket", host.socket, "--boot-log", logs[1])
	deadline := time.Now().Add(90 * time.Second)
	for lastKernel() != hex.EncodeToString(k2) {
		if time.Now().After(deadline) {
			t.Fatalf("the host's boot into the approved kernel was not recorded in 90s; server log:\n%s", srv.Log())
		}
		time.Sleep(time.Second)
	}
	waitCount(t, srv, "tpm attestation accepted", accepted, 30*time.Second)
	if n := countLog(srv, "tpm attestation rejected"); n != rejected {
		t.Errorf("%d rejections after the reboot into the approved kernel:\n%s", n-rejected, srv.Log())
	}
	show := omens(t, "pcr", "policy", "show", "--policy", policyPath)
	if !strings.Contains(show, "Last proven boot") || !strings.Contains(show, hex.EncodeToString(k2)[:8]) {
		t.Errorf("policy show does not print the host's new kernel:\n%s", show)
	}

	// A kernel nobody approved: refused by the kernels rule.
	omens(t, "tpm", "reboot", "--socket", host.socket, "--boot-log", logs[2])
	k3 := bootlog.ImageDigests([]byte("linux 6.13.0"), crypto.SHA256)[crypto.SHA256]
	rogue, err := os.ReadFile(logs[2])
	if err != nil {
		t.Fatal(err)
	}
	apps, err := eventlogtest.ApplicationEvents(rogue) // numbered as omens eventlog show numbers events
	if err != nil {
		t.Fatal(err)
	}
	srv.WaitLog(t, fmt.Sprintf("boot rule kernels of group tower: PCR 4 event #%d of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 3 of 3, the kernel) digest %x is not approved (approved: %x, %x)",
		apps[len(apps)-1], k3, k1, k2), 90*time.Second)
	if !strings.Contains(srv.Log(), "rule=kernels") {
		t.Errorf("the refusal of the unapproved kernel does not name rule=kernels:\n%s", srv.Log())
	}

	// A tampered log: the agent sends a log that does not replay to the quoted PCRs.
	tampered, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host.dir, "state", tpmsim.EventLogFile), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	srv.WaitLog(t, "check=event_log_replay", 90*time.Second)
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(l, "check=event_log_replay") {
			if !strings.Contains(l, ekHash) {
				t.Errorf("the replay refusal does not name the host's EK hash: %s", l)
			}
			t.Log(l)
			break
		}
	}
}
