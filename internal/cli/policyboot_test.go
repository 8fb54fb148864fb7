package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/policy"
	"omens.dev/omens/tpm/tpmsim/bootlog"
	"omens.dev/omens/verify"
)

// kernelLog writes a copy of log l whose last boot application is kernel.
func kernelLog(t *testing.T, l *eventlogtest.Log, kernel string) (string, *eventlogtest.Log) {
	t.Helper()
	c := l.Clone()
	last := -1
	for i, e := range c.Events {
		if e.PCR == 4 && e.Type == bootlog.EvEFIBootServicesApplication {
			last = i
		}
	}
	d := sha256.Sum256([]byte(kernel))
	c.Events[last] = eventlogtest.Image(4, c.Events[last].Type, "kernel", d)
	path := filepath.Join(t.TempDir(), kernel+".bin")
	if err := os.WriteFile(path, c.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, c
}

// facts replays l against its own sha256 PCRs 0-7, as the server does.
func facts(t *testing.T, l *eventlogtest.Log) *verify.BootFacts {
	t.Helper()
	f, err := verify.ReplayEventLog(l.Bytes(), []verify.PCRBank{{Alg: tpm2.TPMAlgSHA256, PCRs: l.PCRs(tpm2.TPMAlgSHA256, 0, 1, 2, 3, 4, 5, 6, 7)}}, verify.EventLogPolicy{Mode: verify.EventLogVerify})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// learn prints a group block that allows the log's boot; add-kernel approves a new
// kernel from its boot log, keeping the rest of the file.
func TestPolicyLearnAndAddKernel(t *testing.T) {
	logPath, l := eventLogFiles(t)
	var learned cli.PolicyLearned
	omensJSON(t, 0, &learned, "pcr", "policy", "learn", "--log", logPath, "--group", "tower", "--json")
	code, fragment, stderr := omens(t, "pcr", "policy", "learn", "--log", logPath, "--group", "tower")
	if code != 0 || fragment != learned.HCL || !strings.HasPrefix(fragment, "group \"tower\" {\n  boot {\n    secure_boot    = \"required\"\n") {
		t.Fatalf("learn: exit %d, stderr %q\n%s\nwant the --json hcl\n%s", code, stderr, fragment, learned.HCL)
	}
	kernel := sha256.Sum256([]byte("kernel"))
	if b := learned.Boot; b == nil || len(b.Kernels) != 1 || b.Kernels[0] != hex.EncodeToString(kernel[:]) || len(b.BootLoaders) != 2 || len(b.DBXIncludes) != 1 {
		t.Errorf("learned %+v, want the kernel, two boot loaders, one dbx entry", learned.Boot)
	}
	ek := policyHex("ek spire")
	src := "# fleet policy\n" + fragment + "\nhost \"" + ek + "\" {\n  name  = \"spire\"\n  group = \"tower\" # keep\n}\n"
	pol := filepath.Join(t.TempDir(), "pcr-policy.hcl")
	if err := os.WriteFile(pol, []byte(src), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := policy.Open(pol, "")
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{0: policyDigest("fw")}
	now := time.Now()
	if dec, _, err := s.EvaluateBoot(ek, "sha256", pcrs, facts(t, l), now); err != nil || !dec.Allowed {
		t.Fatalf("the learned boot: %+v, %v; want allowed", dec, err)
	}
	newPath, newLog := kernelLog(t, l, "kernel-2")
	if _, rule, err := s.EvaluateBoot(ek, "sha256", pcrs, facts(t, newLog), now); rule != "kernels" {
		t.Fatalf("kernel-2 before add-kernel: rule %q, %v; want refused by kernels", rule, err)
	}

	k2 := sha256.Sum256([]byte("kernel-2"))
	code, stdout, stderr := omens(t, "pcr", "policy", "add-kernel", "--policy", pol, "--host", "spire", "--from-log", newPath)
	if code != 1 || !strings.Contains(stderr, "has no kernels rule") {
		t.Errorf("add-kernel to host spire (no boot block): exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = omens(t, "pcr", "policy", "add-kernel", "--policy", pol, "--group", "tower", "--from-log", newPath)
	want := "approved kernel " + hex.EncodeToString(k2[:]) + " in the boot rules of group tower in " + pol + "\n"
	if code != 0 || stdout != want {
		t.Fatalf("add-kernel --from-log: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
	}
	got, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	k1 := hex.EncodeToString(kernel[:])
	if wantSrc := strings.Replace(src, `"`+k1+`"]`, `"`+k1+`", "`+hex.EncodeToString(k2[:])+`"]`, 1); string(got) != wantSrc {
		t.Errorf("policy file after add-kernel:\n%s\nwant\n%s", got, wantSrc)
	}
	if fi, err := os.Stat(pol); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("policy file mode %v, %v; want 0640 kept", fi.Mode(), err)
	}
	if dec, _, err := s.EvaluateBoot(ek, "sha256", pcrs, facts(t, newLog), now); err != nil || !dec.Allowed {
		t.Errorf("kernel-2 after add-kernel: %+v, %v; want allowed", dec, err)
	}

	// show: what the host's log proved last.
	var r policy.Report
	omensJSON(t, 0, &r, "pcr", "policy", "show", "--policy", pol, "--json")
	k2hex := hex.EncodeToString(k2[:])
	if len(r.Hosts) != 1 || r.Hosts[0].Last == nil || r.Hosts[0].Last.Boot == nil {
		t.Fatalf("show --json: %+v, want the last boot of host spire", r.Hosts)
	}
	b := r.Hosts[0].Last.Boot
	if b.SecureBoot != "enabled" || b.Kernel != k2hex || len(b.BootLoaders) != 2 || len(b.Authorities) != 1 || b.Authorities[0] != learned.Boot.Authorities[0] {
		t.Errorf("show --json: last boot %+v, want Secure Boot enabled, kernel %s, 2 boot loaders, authority %v", b, k2hex, learned.Boot.Authorities)
	}
	code, stdout, _ = omens(t, "pcr", "policy", "show", "--policy", pol)
	squeezed := strings.Join(strings.Fields(stdout), " ")
	shim, grub := sha256.Sum256([]byte("shim")), sha256.Sum256([]byte("grub"))
	for _, want := range []string{
		"Last proven boot (event log) HOST SECURE BOOT KERNEL BOOT LOADERS AUTHORITIES",
		"spire enabled " + k2hex[:8] + "… " + hex.EncodeToString(shim[:4]) + "…, " + hex.EncodeToString(grub[:4]) + "… " + learned.Boot.Authorities[0][:8] + "…",
	} {
		if code != 0 || !strings.Contains(squeezed, want) {
			t.Errorf("show: exit %d, no %q in\n%s", code, want, stdout)
		}
	}

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--group", "tower", "zz"}, `policy: kernel digest "zz": want 40, 64 or 96 hex digits`},
		{[]string{"--group", "tower", hex.EncodeToString(k2[:])}, "policy: " + pol + ": kernel " + hex.EncodeToString(k2[:]) + ` is already approved in group "tower"`},
		{[]string{"--group", "web", k1}, "policy: " + pol + ` has no group "web"`},
		{[]string{"--group", "tower"}, "the kernel digest is required: an argument or --from-log FILE"},
		{[]string{"--group", "tower", "--from-log", newPath, k1}, "give the kernel digest or --from-log, not both"},
		{[]string{"--group", "tower", "--host", "spire", k1}, "name one of --group NAME or --host HASH|NAME"},
	} {
		before, _ := os.ReadFile(pol)
		code, _, stderr := omens(t, append([]string{"pcr", "policy", "add-kernel", "--policy", pol}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.err) {
			t.Errorf("add-kernel %v: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.err)
		}
		if after, _ := os.ReadFile(pol); string(after) != string(before) {
			t.Errorf("add-kernel %v changed the file", tc.args)
		}
	}
	code, _, stderr = omens(t, "pcr", "policy", "learn", "--log", logPath, "--group", "a", "--host", ek)
	if want := "--group and --host do not go together"; code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("learn --group --host: exit %d, stderr %q, want %q", code, stderr, want)
	}
}
