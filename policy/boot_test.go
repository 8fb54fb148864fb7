package policy_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/policy"
	"omens.dev/omens/tpm/tpmsim/bootlog"
	"omens.dev/omens/verify"
)

// bootPolicy lets host spire (group tower, no PCR set) boot shim and grub under Secure
// Boot, into kernel-1 or kernel-2: kernel-2 is approved before the hosts reboot into it.
const bootPolicy = `
group "tower" {
  boot {
    secure_boot  = "required"
    boot_loaders = ["{shim}", "{grub}"]
    kernels      = ["{kernel-1}", "{kernel-2}"]
    authorities  = ["AUTHORITY"]
    pk           = ["PK"]
    kek          = ["KEK"]
    db           = ["AUTHORITY", "OTHER"]
    dbx_includes = ["{revoked-shim}"]
  }
}

host "{ek:spire}" {
  name  = "spire"
  group = "tower"
}
`

// bootCerts are the Secure Boot certificates of the tests' platform.
type bootCerts struct{ pk, kek, authority, other *x509.Certificate }

func newBootCerts(t *testing.T) bootCerts {
	t.Helper()
	var c bootCerts
	for _, x := range []struct {
		p  **x509.Certificate
		cn string
	}{{&c.pk, "Test PK"}, {&c.kek, "Test KEK"}, {&c.authority, "Test UEFI CA"}, {&c.other, "Other UEFI CA"}} {
		cert, err := eventlogtest.Certificate(x.cn)
		if err != nil {
			t.Fatal(err)
		}
		*x.p = cert
	}
	return c
}

func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func sum(label string) [32]byte { return sha256.Sum256([]byte(label)) }

// bootFacts builds a boot log (eventlogtest.Standard) and replays it against the PCR
// values it gives, as the verifier does.
func bootFacts(t *testing.T, sb eventlogtest.SecureBoot) *verify.BootFacts {
	t.Helper()
	l := eventlogtest.Standard(sb)
	bank := verify.PCRBank{Alg: tpm2.TPMAlgSHA256, PCRs: l.PCRs(tpm2.TPMAlgSHA256, 0, 1, 2, 3, 4, 5, 6, 7)}
	facts, err := verify.ReplayEventLog(l.Bytes(), []verify.PCRBank{bank}, verify.EventLogPolicy{Mode: verify.EventLogVerify})
	if err != nil {
		t.Fatal(err)
	}
	return facts
}

// appEvents are the numbers of the PCR 4 boot applications of the log of sb, as omens
// eventlog show numbers its events.
func appEvents(t *testing.T, sb eventlogtest.SecureBoot) []int {
	t.Helper()
	out, err := eventlogtest.ApplicationEvents(eventlogtest.Standard(sb).Bytes())
	if err != nil || len(out) != len(sb.Chain) {
		t.Fatalf("the log lists boot applications at %v (%v), want %d", out, err, len(sb.Chain))
	}
	return out
}

func TestBootRules(t *testing.T) {
	c := newBootCerts(t)
	src := strings.NewReplacer("AUTHORITY", fingerprint(c.authority), "PK", fingerprint(c.pk), "KEK", fingerprint(c.kek), "OTHER", fingerprint(c.other)).Replace(bootPolicy)
	s, err := policy.Open(writePolicy(t, t.TempDir(), src), "")
	if err != nil {
		t.Fatal(err)
	}
	good := func(kernel string) eventlogtest.SecureBoot {
		return eventlogtest.SecureBoot{Enabled: true, PK: c.pk, KEK: c.kek, DB: []*x509.Certificate{c.authority},
			DBX: [][32]byte{sum("old"), sum("revoked-shim")}, Authority: c.authority,
			Chain: [][32]byte{sum("shim"), sum("grub"), sum(kernel)}}
	}
	ev := appEvents(t, good("kernel-1"))
	allowed := policy.Decision{Allowed: true, Policy: "tower"}
	allowedRule := "boot of group tower (secure_boot, pk, kek, db, dbx_includes, authorities, boot_loaders, kernels)"
	for _, tc := range []struct {
		name  string
		sb    func(*eventlogtest.SecureBoot)
		noLog bool
		want  policy.Decision
		rule  string
		err   string
	}{
		{name: "the running kernel", want: allowed, rule: allowedRule},
		{name: "a kernel approved before the reboot", sb: func(sb *eventlogtest.SecureBoot) { sb.Chain[2] = sum("kernel-2") }, want: allowed, rule: allowedRule},
		{
			name: "Secure Boot off",
			sb:   func(sb *eventlogtest.SecureBoot) { sb.Enabled = false },
			rule: "secure_boot",
			err:  "policy: boot rule secure_boot of group tower: Secure Boot is off, the rule requires it on",
		},
		{
			name: "a dbx missing a required entry",
			sb:   func(sb *eventlogtest.SecureBoot) { sb.DBX = [][32]byte{sum("old")} },
			rule: "dbx_includes",
			err:  "policy: boot rule dbx_includes of group tower: the dbx (1 entries) does not include " + hexOf("revoked-shim"),
		},
		{
			name: "an unapproved kernel",
			sb:   func(sb *eventlogtest.SecureBoot) { sb.Chain[2] = sum("kernel-3") },
			rule: "kernels",
			err: "policy: boot rule kernels of group tower: PCR 4 event #" + strconv.Itoa(ev[2]) + " of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 3 of 3, the kernel) digest " +
				hexOf("kernel-3") + " is not approved (approved: " + hexOf("kernel-1") + ", " + hexOf("kernel-2") + ")",
		},
		{
			name: "an unapproved boot loader",
			sb:   func(sb *eventlogtest.SecureBoot) { sb.Chain[1] = sum("grub-evil") },
			rule: "boot_loaders",
			err: "policy: boot rule boot_loaders of group tower: PCR 4 event #" + strconv.Itoa(ev[1]) + " of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 2 of 3, a boot loader) digest " +
				hexOf("grub-evil") + " is not approved (approved: " + hexOf("shim") + ", " + hexOf("grub") + ", " + hexOf("kernel-1") + ", " + hexOf("kernel-2") + ")",
		},
		{
			name: "an unknown authority",
			sb: func(sb *eventlogtest.SecureBoot) {
				sb.DB = []*x509.Certificate{c.authority, c.other}
				sb.Authority = c.other
			},
			rule: "authorities",
			err:  "policy: boot rule authorities of group tower: authority 1 " + fingerprint(c.other) + " (CN=Other UEFI CA) is not allowed (allowed: " + fingerprint(c.authority) + ")",
		},
		{
			name: "a db certificate not allowed",
			sb:   func(sb *eventlogtest.SecureBoot) { sb.DB = []*x509.Certificate{c.authority, c.kek} },
			rule: "db",
			err:  "policy: boot rule db of group tower: db certificate 2 " + fingerprint(c.kek) + " (CN=Test KEK) is not allowed (allowed: " + fingerprint(c.authority) + ", " + fingerprint(c.other) + ")",
		},
		{
			name:  "no verified log",
			noLog: true,
			rule:  "boot",
			err:   `policy: boot rules of group tower (secure_boot, pk, kek, db, dbx_includes, authorities, boot_loaders, kernels) need the facts of a verified event log, and there are none: the plugin must have event_log = "verify" or "require", and the agent must send its log`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := good("kernel-1")
			if tc.sb != nil {
				tc.sb(&sb)
			}
			var facts *verify.BootFacts
			if !tc.noLog {
				facts = bootFacts(t, sb)
			}
			dec, rule, err := s.EvaluateBoot(ekHash("spire"), "sha256", fw10, facts, t0)
			check(t, tc.name, dec, err, tc.want, tc.err)
			if rule != tc.rule {
				t.Errorf("rule %q, want %q", rule, tc.rule)
			}
			if err != nil && !errors.Is(err, policy.ErrRejected) {
				t.Errorf("%v does not match ErrRejected", err)
			}
		})
	}
}

func TestParseBootErrors(t *testing.T) {
	k := hexOf("kernel")
	for _, tc := range []struct{ name, src, err string }{
		{"unknown rule", "group \"g\" {\n  boot {\n    kernel = [\"" + k + "\"]\n  }\n}",
			`policy: p.hcl:3: unknown key "kernel" in boot in group "g" (want secure_boot, pk, kek, db, dbx_includes, authorities, boot_loaders, kernels, kernel_cmdline)`},
		{"secure_boot value", "group \"g\" {\n  boot { secure_boot = \"on\" }\n}",
			`policy: p.hcl:2: secure_boot = "on" in boot in group "g": want "required"`},
		{"not hex", "group \"g\" {\n  boot {\n    kernels = [\"xyz\"]\n  }\n}",
			`policy: p.hcl:3: kernels entry "xyz" in boot in group "g": want 40 or 64 or 96 hex digits`},
		{"short fingerprint", "group \"g\" {\n  boot {\n    authorities = [\"" + k[:40] + "\"]\n  }\n}",
			`policy: p.hcl:3: authorities entry "` + k[:40] + `" in boot in group "g": want 64 hex digits`},
		{"empty list", "group \"g\" {\n  boot {\n    dbx_includes = []\n  }\n}",
			`policy: p.hcl:3: dbx_includes in boot in group "g" is empty`},
		{"not a list", "group \"g\" {\n  boot {\n    kernels = \"" + k + "\"\n  }\n}",
			`policy: p.hcl:3: kernels in boot in group "g" must be a list: kernels = ["HEX", ...]`},
		{"listed twice", "group \"g\" {\n  boot {\n    kernels = [\"" + k + "\", \"" + strings.ToUpper(k) + "\"]\n  }\n}",
			`policy: p.hcl:3: kernels entry ` + k + ` is listed twice in boot in group "g"`},
		{"rule twice", "group \"g\" {\n  boot {\n    secure_boot = \"required\"\n    secure_boot = \"required\"\n  }\n}",
			`policy: p.hcl:4: secure_boot is set twice in boot in group "g" (first on line 3)`},
		{"boot twice", "group \"g\" {\n  boot { secure_boot = \"required\" }\n  boot { secure_boot = \"required\" }\n}",
			`policy: p.hcl:3: boot is set twice in group "g" (first on line 2)`},
		{"no rule", "group \"g\" {\n  boot {}\n}", `policy: p.hcl:2: boot in group "g" sets no rule`},
		{"a label", "group \"g\" {\n  boot \"x\" { secure_boot = \"required\" }\n}",
			`policy: p.hcl:2: boot in group "g" must be a block without a label: boot { ... }`},
		{"in a host", "host \"" + ekHash("a") + "\" {\n  boot { pk = [\"1\"] }\n}",
			`policy: p.hcl:2: pk entry "1" in boot in host ` + ekHash("a") + `: want 64 hex digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.ParsePolicy("p.hcl", []byte(tc.src))
			if err == nil || err.Error() != tc.err {
				t.Fatalf("error:\n got: %v\nwant: %s", err, tc.err)
			}
		})
	}
}

func TestParseBootRules(t *testing.T) {
	src := "group \"g\" {\n  boot {\n    kernels = [\"" + strings.ToUpper(hexOf("k")) + "\"]\n    kernel_cmdline = \"ro quiet\"\n  }\n}"
	pol, err := policy.ParsePolicy("p.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	b := pol.Group("g").Boot
	if b == nil || len(b.Kernels) != 1 || b.Kernels[0] != hexOf("k") || !b.HasKernelCmdline || b.KernelCmdline != "ro quiet" || b.Owner != "group g" {
		t.Fatalf("boot rules %+v", b)
	}
	if got := b.PCRs(); len(got) != 2 || got["kernels"] != 4 || got["kernel_cmdline"] != 8 {
		t.Fatalf("PCRs %v", got)
	}
}

// TestBootRulesOfHostAndGroup: a host's own boot block and its group's both apply; a set
// and the boot blocks that held are named as the rule; facts the verifier did not replay
// are refused.
func TestBootRulesOfHostAndGroup(t *testing.T) {
	src := `
group "tower" {
  boot { kernels = ["{kernel-1}"] }
  set "fw" {
    pcrs = { "0" = "{fw10-0}" }
  }
}
host "{ek:spire}" {
  group = "tower"
  boot  { kernel_cmdline = "ro quiet" }
}
`
	s, err := policy.Open(writePolicy(t, t.TempDir(), src), "")
	if err != nil {
		t.Fatal(err)
	}
	withCmdline := func(cmdline string) *verify.BootFacts {
		l := eventlogtest.Standard(eventlogtest.SecureBoot{Chain: [][32]byte{sum("shim"), sum("kernel-1")}})
		s1 := sha1.Sum([]byte(cmdline))
		s256 := sha256.Sum256([]byte(cmdline))
		l.Events = append(l.Events, eventlogtest.Event{PCR: 8, Type: bootlog.EvIPL, Data: []byte("kernel_cmdline: " + cmdline + "\x00"),
			Digests: map[tpm2.TPMIAlgHash][]byte{tpm2.TPMAlgSHA1: s1[:], tpm2.TPMAlgSHA256: s256[:]}})
		bank := verify.PCRBank{Alg: tpm2.TPMAlgSHA256, PCRs: l.PCRs(tpm2.TPMAlgSHA256, 0, 1, 2, 3, 4, 5, 6, 7, 8)}
		facts, err := verify.ReplayEventLog(l.Bytes(), []verify.PCRBank{bank}, verify.EventLogPolicy{Mode: verify.EventLogVerify})
		if err != nil {
			t.Fatal(err)
		}
		return facts
	}
	for _, tc := range []struct {
		name  string
		facts *verify.BootFacts
		pcrs  map[int][]byte
		want  policy.Decision
		rule  string
		err   string
	}{
		{
			name: "set and both boot blocks hold", facts: withCmdline("ro quiet"), pcrs: pcrs("0=fw10-0"),
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/fw"},
			rule: "tower/fw; boot of host " + ekHash("spire") + " (kernel_cmdline); boot of group tower (kernels)",
		},
		{
			name: "the host's command line rule", facts: withCmdline("ro quiet init=/bin/sh"), pcrs: pcrs("0=fw10-0"),
			rule: "kernel_cmdline",
			err:  `policy: boot rule kernel_cmdline of host ` + ekHash("spire") + `: the kernel command line is "ro quiet init=/bin/sh", the rule wants "ro quiet"`,
		},
		{
			name: "boot rules hold, the set does not", facts: withCmdline("ro quiet"), pcrs: pcrs("0=fw11-0"),
			rule: "pcr_sets",
			err:  "policy: host " + ekHash("spire") + " PCR 0 is " + hexOf("fw11-0") + ", allowed set tower/fw wants " + hexOf("fw10-0"),
		},
		{
			name: "facts no replay proved", pcrs: pcrs("0=fw10-0"),
			facts: &verify.BootFacts{KernelCmdline: "ro quiet", BootApplications: []verify.BootApplication{{Digest: hexOf("kernel-1")}}},
			rule:  "boot",
			err:   `policy: boot rules of host ` + ekHash("spire") + ` (kernel_cmdline) need the facts of a verified event log, and there are none: the plugin must have event_log = "verify" or "require", and the agent must send its log`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, rule, err := s.EvaluateBoot(ekHash("spire"), "sha256", tc.pcrs, tc.facts, t0)
			check(t, tc.name, dec, err, tc.want, tc.err)
			if rule != tc.rule {
				t.Errorf("rule %q, want %q", rule, tc.rule)
			}
		})
	}
}
