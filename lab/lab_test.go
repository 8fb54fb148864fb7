package lab_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/lab"
)

// buildOmens builds the omens binary that the lab runs its parts with, and the SPIRE
// plugins beside it. Without the engines of `make tools` the test skips (fails when
// CI=true).
func buildOmens(t *testing.T) string {
	t.Helper()
	enginetest.Require(t, engines.All...)
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "omens.dev/omens/cmd/omens",
		"omens.dev/omens/cmd/omens-attestor-server", "omens.dev/omens/cmd/omens-attestor-agent", "omens.dev/omens/cmd/omens-demo").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "omens")
}

func TestUpResumeDown(t *testing.T) {
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := &lab.Lab{Dir: dir, Omens: buildOmens(t)}
	t.Cleanup(func() { l.Down() })

	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := l.Status()
	for _, h := range first {
		if !strings.HasPrefix(h.TPM, "up (pid ") || h.Error != "" {
			t.Fatalf("%s: TPM %q error %q, want up", h.Host, h.TPM, h.Error)
		}
		if !strings.HasPrefix(h.EKCert, "verified (RSA-2048, Microsoft omens-sim)") {
			t.Errorf("%s: EK certificate %q, want verified", h.Host, h.EKCert)
		}
		if len(h.EKHash) != 64 || len(h.BootState) != 4 {
			t.Errorf("%s: EK hash %q, boot state %v", h.Host, h.EKHash, h.BootState)
		}
		// Every host boots the same synthetic Secure Boot log at first.
		if fmt.Sprint(h.BootState) != fmt.Sprint(first[0].BootState) {
			t.Errorf("%s: boot state %v, want %s's %v", h.Host, h.BootState, first[0].Host, first[0].BootState)
		}
		// The Tower as it runs today: every host's agent on a join token, aliased to the
		// plan's node name.
		if h.Attestation != "join_token" || !strings.HasPrefix(h.AgentID, "spiffe://funlab.casa/spire/agent/join_token/") {
			t.Errorf("%s: attestation %q agent %q, want a join-token agent", h.Host, h.Attestation, h.AgentID)
		}
	}
	for _, h := range lab.Hosts {
		checkTable(t, l, "up", map[string]map[string]string{h: {
			"ATTESTATION": "=join_token", "AGENT": "spiffe://funlab.casa/spire/agent/join_token/", "TPM": "=up",
			"EK": "=verified", "BOOT": "0:", "DEVID": "=-", "WORKLOADS": "=-",
		}})
	}

	// A second Up on the same directory resumes: same processes, same EKs.
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := l.Status()
	for i := range first {
		if first[i].TPM != second[i].TPM || first[i].EKHash != second[i].EKHash || first[i].AgentID != second[i].AgentID {
			t.Errorf("second up: %+v, want the running lab %+v", second[i], first[i])
		}
	}

	// The plan's migration: every host's agent moves to its TPM, join_token goes.
	var steps []string
	if err := l.Migrate(context.Background(), func(step string, _ []lab.HostStatus) { steps = append(steps, step) }); err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 || steps[3] != "migration finished: join_token removed" {
		t.Errorf("migration steps %q", steps)
	}
	migrated := l.Status()
	for _, h := range migrated {
		if h.Attestation != "tpm-devid" || h.AgentID != "spiffe://funlab.casa/spire/agent/tpm/"+h.EKHash {
			t.Errorf("%s after the migration: attestation %q agent %q, want tpm-devid with the EK-hash ID", h.Host, h.Attestation, h.AgentID)
		}
		// The RA's profile: DevIDs for 2160h.
		if left := time.Until(h.DevIDExpiry); left < 2159*time.Hour || left > 2161*time.Hour {
			t.Errorf("%s: DevID expires %s, want in 2160h", h.Host, h.DevIDExpiry)
		}
	}
	for _, h := range migrated {
		checkTable(t, l, "migration", map[string]map[string]string{h.Host: {
			"ATTESTATION": "=tpm-devid", "AGENT": "spiffe://funlab.casa/spire/agent/tpm/" + h.EKHash[:15],
			"DEVID": "=" + h.DevIDExpiry.Local().Format("2006-01-02 15:04"),
		}})
	}
	first = migrated

	// The demo workloads: step-ca's stand-in calls OpenBao's over mTLS; a process without
	// a registration entry gets no SVID.
	call, refused, err := l.Demo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(call, "server  spiffe://funlab.casa/openbao") || !strings.Contains(call, "client  spiffe://funlab.casa/step-ca") {
		t.Errorf("demo call:\n%s", call)
	}
	if !strings.Contains(refused, "is there a registration entry for this process?") {
		t.Errorf("demo call without an entry:\n%s", refused)
	}
	// The workloads run, each as the plan's user when the lab runs as root, and hold SVIDs.
	holding := map[string]string{}
	for _, h := range l.Status() {
		for _, w := range h.Workloads {
			if w.Holding && time.Until(w.SVIDExpiry) > 0 {
				holding[w.Name] = h.Host + " " + w.SPIFFEID
			}
		}
	}
	if holding["openbao"] != "spire spiffe://funlab.casa/openbao" || holding["step-ca"] != "ca spiffe://funlab.casa/step-ca" || len(holding) != 2 {
		t.Errorf("workloads holding SVIDs: %v", holding)
	}
	checkTable(t, l, "demo", map[string]map[string]string{
		"spire": {"ATTESTATION": "=tpm-devid", "WORKLOADS": "openbao ("},
		"auth":  {"ATTESTATION": "=tpm-devid", "WORKLOADS": "=-"},
		"ca":    {"ATTESTATION": "=tpm-devid", "WORKLOADS": "step-ca ("},
	})
	if os.Geteuid() == 0 {
		inv, err := os.ReadFile(l.InventoryPath())
		if err != nil {
			t.Fatal(err)
		}
		for _, sel := range []string{`"unix:user:openbao"`, `"unix:user:step"`} {
			if !strings.Contains(string(inv), sel) {
				t.Errorf("as root the inventory registers by %s:\n%s", sel, inv)
			}
		}
		for _, w := range []string{"openbao-demo", "step-ca-demo"} {
			if u := processUser(t, dir, w); u != strings.TrimSuffix(strings.TrimSuffix(w, "-demo"), "-ca") {
				t.Errorf("%s runs as %q", w, u)
			}
		}
	}

	// A BIOS update on auth is rejected, naming PCR 0, then accepted and pinned in a window.
	var sb strings.Builder
	if err := lab.ScenarioBIOSUpdate.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("bios-update: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "(auth) PCR 0 is ") || !strings.Contains(out, "accepted and pinned") {
		t.Errorf("bios-update scenario:\n%s", out)
	}
	afterBIOS := l.Status()
	if afterBIOS[1].Host != "auth" || afterBIOS[1].BootState["0"] == afterBIOS[0].BootState["0"] || afterBIOS[1].BootState["7"] != afterBIOS[0].BootState["7"] {
		t.Errorf("boot state after auth's BIOS update: spire %v, auth %v; want PCR 0 alone to differ", afterBIOS[0].BootState, afterBIOS[1].BootState)
	}
	checkTable(t, l, "bios-update", map[string]map[string]string{
		"auth": {"ATTESTATION": "=tpm-devid", "BOOT": "0:" + afterBIOS[1].BootState["0"][:8]},
	})

	// A kernel update on auth, approved in the policy beforehand, re-attests without a
	// window; a kernel nobody approved is refused naming the event.
	sb.Reset()
	if err := lab.ScenarioKernelUpdate.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("kernel-update: %v\n%s", err, sb.String())
	}
	kernel := func(version string) string { return sha256Hex([]byte("linux " + version)) }
	// The refusal names the kernel's event by its number in the log, as omens eventlog show
	// numbers it; the lab's logs differ in the kernel only, so the log auth serves now (the
	// approved kernel) has it where the refused one had it.
	served, err := os.ReadFile(l.EventLogPath("auth"))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := eventlogtest.ApplicationEvents(served)
	if err != nil || len(apps) != 3 {
		t.Fatalf("boot applications of auth's log at %v (%v), want 3", apps, err)
	}
	if out := sb.String(); !strings.Contains(out, "kernels gains "+kernel("6.12.10-omens")+"\n") ||
		!strings.Contains(out, "2. auth reboots into 6.12.10-omens and attests again, without a window\n") ||
		!strings.Contains(out, "it is refused:\n   tpm: policy: boot rule kernels of group tower: PCR 4 event #"+strconv.Itoa(apps[2])+" of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 3 of 3, the kernel) digest "+
			kernel("6.13.0-unapproved")+" is not approved (approved: "+kernel("6.12.9-omens")+", "+kernel("6.12.10-omens")+")\n") ||
		!strings.Contains(out, "4. auth reboots into 6.12.10-omens again and attests with its TPM") {
		t.Errorf("kernel-update scenario:\n%s", out)
	}
	t.Log(sb.String())
	afterKernel := l.Status()
	if afterKernel[1].BootState["4"] == afterKernel[0].BootState["4"] || afterKernel[1].BootState["7"] != afterKernel[0].BootState["7"] {
		t.Errorf("boot state after auth's kernel update: spire %v, auth %v; want PCR 4 to differ, PCR 7 not", afterKernel[0].BootState, afterKernel[1].BootState)
	}
	checkTable(t, l, "kernel-update", map[string]map[string]string{
		"auth": {"ATTESTATION": "=tpm-devid", "BOOT": "0:" + afterBIOS[1].BootState["0"][:8] + " 2:" + afterKernel[1].BootState["2"][:8] + " 4:" + afterKernel[1].BootState["4"][:8]},
	})

	// Secure Boot off on auth is refused naming the rule; back on, auth attests again.
	sb.Reset()
	if err := lab.ScenarioSecureBootOff.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("secure-boot-off: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "2. its attestation is refused:\n   tpm: policy: boot rule secure_boot of group tower: Secure Boot is off, the rule requires it on\n") ||
		!strings.Contains(out, "3. Secure Boot is back on; auth reboots and attests again with its TPM") {
		t.Errorf("secure-boot-off scenario:\n%s", out)
	}
	t.Log(sb.String())
	if after := l.Status(); after[1].BootState["7"] != after[0].BootState["7"] || after[1].BootState["4"] != afterKernel[1].BootState["4"] {
		t.Errorf("boot state after Secure Boot back on: spire %v, auth %v; want auth's PCR 7 as spire's again", after[0].BootState, after[1].BootState)
	}
	checkTable(t, l, "secure-boot-off", map[string]map[string]string{"auth": {"ATTESTATION": "=tpm-devid"}})

	// A join token is refused once the migration removed join_token.
	sb.Reset()
	if err := lab.ScenarioJoinTokenAfterMigration.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("join-token-after-migration: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "2. it is refused:\n   failed to attest: join token does not exist or has already been used\n") ||
		!strings.Contains(out, "SPIRE attests it whatever its config:\n   spiffe://funlab.casa/spire/agent/join_token/") ||
		!strings.Contains(out, "4. omens migrate status shows it: join_token, no host;") || !strings.Contains(out, "5. it is banned") {
		t.Errorf("join-token-after-migration scenario:\n%s", out)
	}
	t.Log(sb.String())

	// The SPIRE server goes down: the workloads keep their SVIDs; it comes back.
	sb.Reset()
	if err := lab.ScenarioServerDown.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("server-down: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "2. spire's agent cannot re-attest, and keeps running:\n   ") ||
		!strings.Contains(out, "3. step-ca's stand-in still calls OpenBao's") ||
		!strings.Contains(out, "4. the server is back; spire's agent re-attests:\n   Successfully reattested node spiffe://funlab.casa/spire/agent/tpm/"+migrated[0].EKHash) {
		t.Errorf("server-down scenario:\n%s", out)
	}
	t.Log(sb.String())
	checkTable(t, l, "server-down", map[string]map[string]string{
		"spire": {"ATTESTATION": "=tpm-devid", "WORKLOADS": "openbao ("},
		"auth":  {"ATTESTATION": "=tpm-devid"},
		"ca":    {"ATTESTATION": "=tpm-devid", "WORKLOADS": "step-ca ("},
	})

	// spire's TPM disappears: the agent reports it, keeps serving, re-attests when it is back.
	sb.Reset()
	if err := lab.ScenarioTPMFailure.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("tpm-failure: %v\n%s", err, sb.String())
	}
	if out := sb.String(); !strings.Contains(out, "2. at its next re-attestation the agent reports it, and keeps running:\n   nodeattestor(tpm): tpm: open ") ||
		!strings.Contains(out, "Successfully reattested node spiffe://funlab.casa/spire/agent/tpm/"+migrated[0].EKHash) {
		t.Errorf("tpm-failure scenario:\n%s", out)
	}
	t.Log(sb.String())
	checkTable(t, l, "tpm-failure", map[string]map[string]string{
		"spire": {"ATTESTATION": "=tpm-devid", "TPM": "=up", "WORKLOADS": "openbao ("},
		"ca":    {"ATTESTATION": "=tpm-devid", "WORKLOADS": "step-ca ("},
	})

	// spire's agent, in a network namespace of its own, loses its link to the server: it
	// keeps serving valid SVIDs and re-attests when the link returns. Root only (CI runs
	// as root: there it must run).
	sb.Reset()
	if os.Geteuid() != 0 {
		err := lab.ScenarioNetworkPartition.Run(context.Background(), l, &sb)
		if err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Errorf("network-partition as uid %d: %v, want a refusal saying it needs root", os.Geteuid(), err)
		}
		if os.Getenv("CI") == "true" {
			t.Errorf("network-partition did not run: CI runs the lab test as root, this run is uid %d", os.Geteuid())
		}
	} else {
		if err := lab.ScenarioNetworkPartition.Run(context.Background(), l, &sb); err != nil {
			t.Fatalf("network-partition: %v\n%s", err, sb.String())
		}
		out := sb.String()
		for _, want := range []string{
			"2. the link is dropped",
			"3. at its next re-attestation the agent cannot reach the server, and keeps running:\n   ",
			"4. it still serves valid SVIDs: fetched from its Workload API as user openbao, spiffe://funlab.casa/openbao, valid until ",
			"and step-ca's stand-in calls OpenBao's over mTLS with it",
			"the agent re-attests:\n   Successfully reattested node spiffe://funlab.casa/spire/agent/tpm/" + migrated[0].EKHash,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("network-partition printed no %q:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`cannot reach the server, and keeps running:\n   .*dial tcp 10\.254\.[0-9.]+:[0-9]+: connect: network is unreachable`).MatchString(out) {
			t.Errorf("network-partition: the agent's failure does not name the unreachable server:\n%s", out)
		}
		ns := regexp.MustCompile(`network namespace (omens-[0-9a-f]+-spire) `).FindStringSubmatch(out)
		if ns == nil {
			t.Fatalf("network-partition named no namespace:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", ns[1])); err == nil {
			t.Errorf("namespace %s left after the scenario", ns[1])
		}
		if links, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(links), "om"+strings.TrimPrefix(ns[1], "omens-")[:6]) {
			t.Errorf("a veth of the scenario left after it:\n%s", links)
		}
		t.Log(out)
		checkTable(t, l, "network-partition", map[string]map[string]string{
			"spire": {"ATTESTATION": "=tpm-devid", "WORKLOADS": "openbao ("},
			"ca":    {"ATTESTATION": "=tpm-devid", "WORKLOADS": "step-ca ("},
		})
	}

	// spire's DevID breaks: it falls back to EK mode, its workloads keep their SVIDs, and
	// it returns to DevID mode once the RA is back.
	sb.Reset()
	if err := lab.ScenarioRollback.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("rollback: %v\n%s", err, sb.String())
	}
	spireID := "spiffe://funlab.casa/spire/agent/tpm/" + migrated[0].EKHash
	for _, want := range []string{
		"2. at its next re-attestation its agent is refused in DevID mode, and keeps its SVID:\n   nodeattestor(tpm): verify: devid_revoked: DevID certificate serial 0x",
		"3. omens migrate rollback --host spire --to ek:\n   updated   node-alias                spiffe://funlab.casa/agent/spire (selectors tpm:pub_hash:" + migrated[0].EKHash + ")\n",
		"ek-mode-hosts             " + filepath.Join(dir, "spire", "ek-mode-hosts") + "\n",
		"4. the agent re-attests in EK mode, under the same agent ID, with tpm:mode:ek_cert:\n   Successfully reattested node " + spireID + "\n",
		"7. the agent re-attests in DevID mode with the new certificate; omens apply gives its alias the DevID selector again:\n   Successfully reattested node " + spireID + "\n",
		"8. throughout, openbao's SVID from its Workload API was valid at each of ",
	} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("rollback scenario lacks %q:\n%s", want, sb.String())
		}
	}
	t.Log(sb.String())
	checkTable(t, l, "rollback", map[string]map[string]string{
		"spire": {"ATTESTATION": "=tpm-devid", "AGENT": "spiffe://funlab.casa/spire/agent/tpm/" + migrated[0].EKHash[:15], "WORKLOADS": "openbao ("},
		"ca":    {"ATTESTATION": "=tpm-devid", "WORKLOADS": "step-ca ("},
	})

	// Decommissioning ca: its DevID is revoked and its agent banned.
	sb.Reset()
	if err := lab.ScenarioRevoke.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("revoke: %v\n%s", err, sb.String())
	}
	// ca enrolled once: one certificate to revoke.
	if !regexp.MustCompile(`(?m)^1\. omens devid revoke --host ca\.funlab\.casa: DevID serial [0-9a-f]+ revoked in step-ca \(in its CRL now\)$`).MatchString(sb.String()) {
		t.Errorf("revoke printed:\n%s", sb.String())
	}
	for _, h := range l.Status() {
		if h.Host == "ca" && (h.Attestation != "" || len(h.Workloads) != 0) {
			t.Errorf("ca after revoke still has a live agent or workloads: %q %q %v", h.Attestation, h.AgentID, h.Workloads)
		}
	}
	checkTable(t, l, "revoke", map[string]map[string]string{
		"spire": {"ATTESTATION": "=tpm-devid", "WORKLOADS": "openbao ("},
		"ca":    {"ATTESTATION": "=-", "AGENT": "=-", "DEVID": "=revoked", "WORKLOADS": "=-"},
	})
	revoked := l.Status()

	pids := pidsOf(t, dir)
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %s still runs after down", pid)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "hosts", "*", "*.sock*"))
	more, _ := filepath.Glob(filepath.Join(dir, "hosts", "*", "agent", "*", "*.sock"))
	socks = append(append(socks, more...), globOr(filepath.Join(dir, "spire", "api.sock"))...)
	socks = append(socks, globOr(l.RuntimeDir())...)
	if len(socks) != 0 {
		t.Errorf("sockets left after down: %v", socks)
	}
	for _, h := range l.Status() {
		if h.TPM != "down" {
			t.Errorf("%s: TPM %q after down", h.Host, h.TPM)
		}
	}

	first = revoked
	// Up after down brings back the same hosts with the same EKs.
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, h := range l.Status() {
		if h.EKHash != first[i].EKHash {
			t.Errorf("%s: EK hash after restart %s, want %s", h.Host, h.EKHash, first[i].EKHash)
		}
		// The agents come back with their SVIDs, not new join tokens.
		if h.AgentID != first[i].AgentID {
			t.Errorf("%s: agent after restart %q, want %q", h.Host, h.AgentID, first[i].AgentID)
		}
	}
}

// checkTable renders the status table and checks cells: want maps a host to column
// headers (their first word) and what the cell holds; "=" before a value asks for the
// whole cell.
// sha256Hex is the SHA-256 of b in hex: the digest of a stand-in boot image of the lab's
// logs, whose bytes are its name.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func checkTable(t *testing.T, l *lab.Lab, step string, want map[string]map[string]string) {
	t.Helper()
	var b strings.Builder
	if err := lab.WriteStatus(&b, l.Status()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	// Cells hold single spaces at most; tabwriter pads columns with two or more.
	split := regexp.MustCompile(`\s{2,}`).Split
	var header []string
	for _, h := range split(lines[0], -1) {
		header = append(header, strings.Fields(h)[0])
	}
	rows := map[string]map[string]string{}
	for _, line := range lines[1:] {
		cells := split(strings.TrimSpace(line), -1)
		if len(cells) != len(header) {
			t.Fatalf("after %s: row %q has %d cells, want %d:\n%s", step, line, len(cells), len(header), b.String())
		}
		rows[cells[0]] = map[string]string{}
		for i, c := range cells {
			rows[cells[0]][header[i]] = c
		}
	}
	for host, cols := range want {
		for col, v := range cols {
			got, ok := rows[host][col]
			if !ok {
				t.Fatalf("after %s: no column %s for %s:\n%s", step, col, host, b.String())
			}
			if exact, isExact := strings.CutPrefix(v, "="); (isExact && got != exact) || (!isExact && !strings.Contains(got, v)) {
				t.Errorf("after %s: %s's %s is %q, want %q:\n%s", step, host, col, got, v, b.String())
			}
		}
	}
}

// processUser is the user name a lab process runs as.
func processUser(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "run", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join("/proc", strings.TrimSpace(string(b))))
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.LookupId(fmt.Sprint(st.Sys().(*syscall.Stat_t).Uid))
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// running reports whether pid is a live process: not gone, and not a zombie waiting for
// its parent (this test process) to collect its exit status.
func running(pid string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func globOr(path string) []string {
	if _, err := os.Stat(path); err == nil {
		return []string{path}
	}
	return nil
}

func pidsOf(t *testing.T, dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "run", "*.pid"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	if len(out) == 0 {
		t.Fatal("no pid files")
	}
	return out
}

// TestUpAsAnotherUser runs the lab as a user other than root (nobody when the test runs as
// root): the plan's users cannot be created, so the workloads run as that user, registered
// by its uid, and the lab says so.
func TestUpAsAnotherUser(t *testing.T) {
	omens := buildOmens(t)
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The binaries and engines, where the user may run them.
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"omens", "omens-attestor-server", "omens-attestor-agent", "omens-demo"} {
		linkOrCopy(t, filepath.Join(filepath.Dir(omens), name), filepath.Join(bin, name))
	}
	for _, name := range engines.All {
		p, _ := engines.Path(name)
		linkOrCopy(t, p, filepath.Join(bin, name))
	}
	labDir := filepath.Join(dir, "lab")
	cred, uid := (*syscall.Credential)(nil), os.Getuid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(labDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(labDir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "omens"), append(args, "--dir", labDir)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(os.Environ(), "OMENS_TOOLS="+bin, "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("omens %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { run("lab", "down") })

	out := run("lab", "up", "--detach")
	sel := fmt.Sprintf("unix:uid:%d", uid)
	for _, want := range []string{
		fmt.Sprintf("lab: not root: the demo workloads run as uid %d and are registered by %s", uid, sel),
		"server  spiffe://funlab.casa/openbao\nclient  spiffe://funlab.casa/step-ca\n",
		"the lab runs in the background",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}
	inv, err := os.ReadFile(filepath.Join(labDir, "tower.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(inv), `selectors = ["`+sel+`"]`); n != 2 {
		t.Errorf("tower.hcl registers %d workloads by %s, want 2:\n%s", n, sel, inv)
	}
	for _, w := range []string{"openbao-demo", "step-ca-demo"} {
		if u := processUser(t, labDir, w); u != "nobody" && os.Geteuid() == 0 {
			t.Errorf("%s runs as %q, want nobody", w, u)
		}
	}
	pids := pidsOf(t, labDir)
	run("lab", "down")
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %s still runs after down", pid)
		}
	}
}

func linkOrCopy(t *testing.T, from, to string) {
	t.Helper()
	if os.Link(from, to) == nil {
		return
	}
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// The ek-expired scenario on a migrated lab: auth's EK certificate expires; the server
// refuses it under expired_ek_cert = "reject", accepts it with tpm:ek_cert:expired under
// "warn", and the lab gets its valid certificate and "reject" back.
func TestScenarioEKExpired(t *testing.T) {
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := &lab.Lab{Dir: dir, Omens: buildOmens(t)}
	t.Cleanup(func() { l.Down() })
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Migrate(context.Background(), func(string, []lab.HostStatus) {}); err != nil {
		t.Fatal(err)
	}
	before := l.Status()
	auth := before[1]
	if auth.Host != "auth" {
		t.Fatalf("second host %q, want auth", auth.Host)
	}
	var sb strings.Builder
	if err := lab.ScenarioEKExpired.Run(context.Background(), l, &sb); err != nil {
		t.Fatalf("ek-expired: %v\n%s", err, sb.String())
	}
	out := sb.String()
	t.Log(out)
	id := "spiffe://funlab.casa/spire/agent/tpm/" + auth.EKHash
	notAfter := regexp.MustCompile(`\(notAfter ([0-9TZ:-]+)\)`).FindStringSubmatch(out)
	if notAfter == nil {
		t.Fatalf("ek-expired named no notAfter:\n%s", out)
	}
	if na, err := time.Parse(time.RFC3339, notAfter[1]); err != nil || !na.Before(time.Now()) {
		t.Errorf("the scenario's EK certificate is valid until %s (%v): not expired", notAfter[1], err)
	}
	for _, want := range []string{
		"2. at its next attestation the server refuses it under expired_ek_cert = \"reject\" (its default):\n   check=ek_cert_expired tpm: verify: ek_cert_expired: ",
		"notAfter " + notAfter[1] + " is before the verification time",
		"(ek_hash=" + auth.EKHash + ")",
		"3. the lab's inventory sets expired_ek_cert = \"warn\"",
		"4. the agent attests: the server's API shows " + id + "\n   with the selectors tpm:ek_cert:expired and tpm:ek_cert:serial:",
		"EK certificate expired on " + notAfter[1] + ", accepted by expired_ek_cert = \"warn\"",
		"5. restored: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ek-expired printed no %q:\n%s", want, out)
		}
	}
	// Restored: auth's TPM holds its valid certificate again, the server's configuration
	// is the default's, and auth attests on its TPM.
	conf, err := os.ReadFile(filepath.Join(dir, "spire", "server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), "expired_ek_cert") {
		t.Errorf("the server's configuration keeps expired_ek_cert after the scenario:\n%s", conf)
	}
	after := l.Status()[1]
	if after.EKCert != auth.EKCert || !strings.HasPrefix(after.EKCert, "verified") || after.AgentID != id || after.Attestation != "tpm-devid" {
		t.Errorf("auth after ek-expired: EK certificate %q agent %q %s; want %q, %s on tpm-devid", after.EKCert, after.AgentID, after.Attestation, auth.EKCert, id)
	}
}
