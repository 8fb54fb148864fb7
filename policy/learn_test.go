package policy_test

import (
	"crypto/x509"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/policy"
)

// A boot block learned from a boot allows that boot and refuses another kernel; a kernel
// approved with AddKernel is allowed then, and the rest of the file stays as it was.
func TestLearnBootAndAddKernel(t *testing.T) {
	c := newBootCerts(t)
	sb := func(kernel string) eventlogtest.SecureBoot {
		return eventlogtest.SecureBoot{Enabled: true, PK: c.pk, KEK: c.kek, DB: []*x509.Certificate{c.authority, c.other},
			DBX: [][32]byte{sum("old"), sum("revoked-shim")}, Authority: c.authority,
			Chain: [][32]byte{sum("shim"), sum("grub"), sum(kernel)}}
	}
	rules, err := policy.LearnBoot("group tower", bootFacts(t, sb("kernel-1")))
	if err != nil {
		t.Fatal(err)
	}
	block := rules.HCL("  ")
	for _, want := range []string{
		`secure_boot    = "required"`,
		`boot_loaders   = ["` + hexOf("shim") + `", "` + hexOf("grub") + `"]`,
		`kernels        = ["` + hexOf("kernel-1") + `"]`,
		`authorities    = ["` + fingerprint(c.authority) + `"]`,
		`pk             = ["` + fingerprint(c.pk) + `"]`,
		`kek            = ["` + fingerprint(c.kek) + `"]`,
		`db             = ["` + fingerprint(c.authority) + `", "` + fingerprint(c.other) + `"]`,
		`dbx_includes   = ["` + hexOf("old") + `", "` + hexOf("revoked-shim") + `"]`,
	} {
		if !strings.Contains(block, "  "+want+"\n") {
			t.Errorf("learned block\n%s\nlacks the line %q", block, want)
		}
	}
	src := "# the fleet\ngroup \"tower\" {\n" + block + "}\n\n# the SPIRE host\nhost \"{ek:spire}\" {\n  group = \"tower\" # its group\n}\n"
	path := writePolicy(t, t.TempDir(), src)
	s, err := policy.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	const allowedRule = "boot of group tower (secure_boot, pk, kek, db, dbx_includes, authorities, boot_loaders, kernels)"
	dec, rule, err := s.EvaluateBoot(ekHash("spire"), "sha256", fw10, bootFacts(t, sb("kernel-1")), t0)
	if err != nil || !dec.Allowed || rule != allowedRule {
		t.Fatalf("the learned boot: %+v, rule %q, %v; want allowed by %s", dec, rule, err, allowedRule)
	}
	wantErr := "policy: boot rule kernels of group tower: PCR 4 event #" + strconv.Itoa(appEvents(t, sb("kernel-2"))[2]) + " of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 3 of 3, the kernel) digest " +
		hexOf("kernel-2") + " is not approved (approved: " + hexOf("kernel-1") + ")"
	_, rule, err = s.EvaluateBoot(ekHash("spire"), "sha256", fw10, bootFacts(t, sb("kernel-2")), t0)
	if err == nil || err.Error() != wantErr || rule != "kernels" {
		t.Fatalf("another kernel: rule %q, %v; want rule kernels, %s", rule, err, wantErr)
	}

	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := policy.AddKernel("pcr-policy.hcl", old, "tower", "", strings.ToUpper(hexOf("kernel-2")))
	if err != nil {
		t.Fatal(err)
	}
	wantOut := strings.Replace(string(old), `"`+hexOf("kernel-1")+`"]`, `"`+hexOf("kernel-1")+`", "`+hexOf("kernel-2")+`"]`, 1)
	if string(out) != wantOut {
		t.Errorf("AddKernel wrote\n%s\nwant\n%s", out, wantOut)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if dec, _, err := s.EvaluateBoot(ekHash("spire"), "sha256", fw10, bootFacts(t, sb("kernel-2")), t0); err != nil || !dec.Allowed {
		t.Errorf("the approved kernel: %+v, %v; want allowed", dec, err)
	}

	// A multi-line list keeps its layout and comments.
	k1, k2 := hexOf("kernel-1"), hexOf("kernel-2")
	multi := "host \"" + ekHash("a") + "\" {\n  boot {\n    kernels = [\n      \"" + k1 + "\", # running\n    ]\n  }\n}\n"
	out, err = policy.AddKernel("p.hcl", []byte(multi), "", strings.ToUpper(ekHash("a")), k2)
	if want := strings.Replace(multi, "# running\n", "# running\n      \""+k2+"\",\n", 1); err != nil || string(out) != want {
		t.Errorf("AddKernel to a multi-line list: %v\n%s\nwant\n%s", err, out, want)
	}
	noComma := "group \"g\" {\n  boot {\n    kernels = [\n        \"" + k1 + "\" # running\n    ]\n  }\n}\n"
	out, err = policy.AddKernel("p.hcl", []byte(noComma), "g", "", k2)
	if want := strings.Replace(noComma, "\" # running\n", "\", # running\n        \""+k2+"\",\n", 1); err != nil || string(out) != want {
		t.Errorf("AddKernel to a multi-line list without a trailing comma: %v\n%s\nwant\n%s", err, out, want)
	}

	// The example file: the new kernel under the others, nothing else changed.
	example, err := os.ReadFile("example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	out, err = policy.AddKernel("example.hcl", example, "tower", "", k2)
	const last = `"1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809", # 6.8.0-50` + "\n"
	if want := strings.Replace(string(example), last, last+"      \""+k2+"\",\n", 1); err != nil || string(out) != want || want == string(example) {
		t.Errorf("AddKernel to example.hcl: %v\n%s", err, out)
	}
}

func TestAddKernelErrors(t *testing.T) {
	k1, k2 := hexOf("kernel-1"), hexOf("kernel-2")
	src := "group \"tower\" {\n  boot { kernels = [\"" + k1 + "\"] }\n}\ngroup \"lab\" {\n  boot { secure_boot = \"required\" }\n}\nhost \"" + ekHash("a") + "\" {\n  group = \"tower\"\n}\n"
	for _, tc := range []struct{ name, group, host, digest, err string }{
		{"not hex", "tower", "", "xyz", `policy: kernel digest "xyz": want 40, 64 or 96 hex digits`},
		{"a short digest", "tower", "", k2[:10], `policy: kernel digest "` + k2[:10] + `": want 40, 64 or 96 hex digits`},
		{"another bank", "tower", "", sha1Hex("kernel-2"), "policy: kernel digest " + sha1Hex("kernel-2") + " has 40 hex digits, the kernels of group \"tower\" have 64 (the bank the server quotes)"},
		{"no such group", "web", "", k2, `policy: p.hcl has no group "web"`},
		{"no such host", "", ekHash("b"), k2, "policy: p.hcl has no host " + ekHash("b")},
		{"neither", "", "", k2, "policy: name a group or a host, not both"},
		{"no kernels rule", "lab", "", k2, `policy: p.hcl: group "lab" has no kernels rule in a boot block to add the kernel to (write one first, e.g. from omens pcr policy learn)`},
		{"a host without boot rules", "", ekHash("a"), k2, "policy: p.hcl: host " + ekHash("a") + " has no kernels rule in a boot block to add the kernel to (write one first, e.g. from omens pcr policy learn)"},
		{"already approved", "tower", "", k1, "policy: p.hcl: kernel " + k1 + " is already approved in group \"tower\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := policy.AddKernel("p.hcl", []byte(src), tc.group, tc.host, tc.digest)
			if err == nil || err.Error() != tc.err {
				t.Errorf("AddKernel: %v (%d bytes), want %s", err, len(out), tc.err)
			}
		})
	}
}

// The state records what the log proved; a state file without it (written before) reads.
func TestStateBootSummary(t *testing.T) {
	c := newBootCerts(t)
	dir := t.TempDir()
	path := writePolicy(t, dir, "host \"{ek:spire}\" {\n  boot { kernels = [\"{kernel-1}\"] }\n}\n")
	old := `{"version": 1, "hosts": {"` + ekHash("spire") + `": {"last": {"time": "2026-11-29T09:00:00Z", "bank": "sha256", "pcrs": {}, "result": "allowed"}}}}`
	if err := os.WriteFile(path+".state.json", []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := policy.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Report(t0)
	if err != nil || len(r.Hosts) != 1 || r.Hosts[0].Last == nil || r.Hosts[0].Last.Boot != nil {
		t.Fatalf("report of an old state file: %+v, %v", r, err)
	}
	facts := bootFacts(t, eventlogtest.SecureBoot{Enabled: true, PK: c.pk, KEK: c.kek, DB: []*x509.Certificate{c.authority}, Authority: c.authority,
		Chain: [][32]byte{sum("shim"), sum("kernel-1")}})
	if dec, _, err := s.EvaluateBoot(ekHash("spire"), "sha256", fw10, facts, t0); err != nil || !dec.Allowed {
		t.Fatalf("EvaluateBoot: %+v, %v", dec, err)
	}
	if r, err = s.Report(t0); err != nil {
		t.Fatal(err)
	}
	want := &policy.BootSummary{SecureBoot: "enabled", Kernel: hexOf("kernel-1"), BootLoaders: []string{hexOf("shim")}, Authorities: []string{fingerprint(c.authority)}}
	if got := r.Hosts[0].Last.Boot; !reflect.DeepEqual(got, want) {
		t.Errorf("last boot %+v, want %+v", got, want)
	}
}
