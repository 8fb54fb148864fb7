package policy

// This file holds the boot rules: a boot block of a group or a host, read by the parser,
// and checked against what the verifier proved from the replayed event log
// (verify.BootFacts). The PCR sets decide over PCR values; the boot rules over facts.

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"

	"omens.dev/omens/verify"
)

// SecureBootRequired is the one value of the boot rule secure_boot.
const SecureBootRequired = "required"

// BootRules is a boot block: rules over the facts of a replayed event log. A rule that is
// not set is not checked; every rule that is set must hold.
type BootRules struct {
	// Owner names the block in messages: "group tower" or "host <EK hash>".
	Owner string `json:"owner"`
	// SecureBoot is SecureBootRequired or "".
	SecureBoot string `json:"secure_boot,omitempty"`
	// Kernels are the approved digests of the last PCR 4 boot application; BootLoaders
	// those of the applications before it (a kernel is also accepted there). Digests are
	// hex, in the bank the log was replayed in first (the quoted bank).
	Kernels     []string `json:"kernels,omitempty"`
	BootLoaders []string `json:"boot_loaders,omitempty"`
	// Authorities are SHA-256 fingerprints of the certificates that may have verified the
	// boot chain; every one that did must be listed.
	Authorities []string `json:"authorities,omitempty"`
	// PK, KEK and DB are the certificate fingerprints that may be enrolled; every enrolled
	// one must be listed.
	PK  []string `json:"pk,omitempty"`
	KEK []string `json:"kek,omitempty"`
	DB  []string `json:"db,omitempty"`
	// DBXIncludes are SHA-256 image hashes the dbx must hold (it may hold more).
	DBXIncludes []string `json:"dbx_includes,omitempty"`
	// KernelCmdline, when HasKernelCmdline, is the kernel command line the boot loader
	// must have measured (PCR 8).
	KernelCmdline    string `json:"kernel_cmdline,omitempty"`
	HasKernelCmdline bool   `json:"has_kernel_cmdline,omitempty"`
}

// Rule names of a boot block, in the order they are checked.
var bootRuleNames = []string{"secure_boot", "pk", "kek", "db", "dbx_includes", "authorities", "boot_loaders", "kernels", "kernel_cmdline"}

// PCRs returns the PCRs whose quoted values the rules reason over, with the rule that
// needs each: PCR 7 for the Secure Boot rules, 4 for kernels and boot_loaders, 8 for
// kernel_cmdline. The server must quote them, and replay the log.
func (r *BootRules) PCRs() map[string]int {
	out := map[string]int{}
	if r.SecureBoot != "" {
		out["secure_boot"] = 7
	}
	for name, l := range map[string][]string{"pk": r.PK, "kek": r.KEK, "db": r.DB, "dbx_includes": r.DBXIncludes, "authorities": r.Authorities} {
		if l != nil {
			out[name] = 7
		}
	}
	if r.BootLoaders != nil {
		out["boot_loaders"] = 4
	}
	if r.Kernels != nil {
		out["kernels"] = 4
	}
	if r.HasKernelCmdline {
		out["kernel_cmdline"] = 8
	}
	return out
}

// RuleNames returns the rules the block sets, in the order they are checked.
func (r *BootRules) RuleNames() []string {
	pcrs := r.PCRs()
	var out []string
	for _, n := range bootRuleNames {
		if _, ok := pcrs[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// boot parses a boot block of where ("group \"tower\"" or "host <EK hash>").
func (p *parser) boot(item *ast.ObjectItem, owner, where string) (*BootRules, error) {
	obj, ok := item.Val.(*ast.ObjectType)
	if len(item.Keys) != 1 || item.Assign.IsValid() || !ok {
		return nil, p.errf(item.Pos(), "boot in %s must be a block without a label: boot { ... }", where)
	}
	where = "boot in " + where
	r := &BootRules{Owner: owner}
	seen := map[string]*ast.ObjectItem{}
	for _, it := range obj.List.Items {
		k := firstKey(it)
		if first := seen[k]; first != nil {
			return nil, p.errf(it.Pos(), "%s is set twice in %s (first on line %d)", k, where, first.Pos().Line)
		}
		seen[k] = it
		var err error
		switch k {
		case "secure_boot":
			if r.SecureBoot, err = p.str(it, k); err != nil {
				return nil, err
			}
			if r.SecureBoot != SecureBootRequired {
				return nil, p.errf(it.Pos(), "secure_boot = %q in %s: want %q", r.SecureBoot, where, SecureBootRequired)
			}
		case "kernels":
			r.Kernels, err = p.digests(it, k, where, 40, 64, 96)
		case "boot_loaders":
			r.BootLoaders, err = p.digests(it, k, where, 40, 64, 96)
		case "authorities":
			r.Authorities, err = p.digests(it, k, where, 64)
		case "pk":
			r.PK, err = p.digests(it, k, where, 64)
		case "kek":
			r.KEK, err = p.digests(it, k, where, 64)
		case "db":
			r.DB, err = p.digests(it, k, where, 64)
		case "dbx_includes":
			r.DBXIncludes, err = p.digests(it, k, where, 64)
		case "kernel_cmdline":
			if r.KernelCmdline, err = p.str(it, k); err != nil {
				return nil, err
			}
			r.HasKernelCmdline = true
		default:
			return nil, p.errf(it.Pos(), "unknown key %q in %s (want %s)", k, where, strings.Join(bootRuleNames, ", "))
		}
		if err != nil {
			return nil, err
		}
	}
	if len(r.RuleNames()) == 0 {
		return nil, p.errf(item.Pos(), "%s sets no rule", where)
	}
	return r, nil
}

// digests parses `key = ["HEX", ...]`: a non-empty list of distinct hex strings, each of
// one of sizes hex digits, returned in lower case.
func (p *parser) digests(item *ast.ObjectItem, key, where string, sizes ...int) ([]string, error) {
	list, ok := item.Val.(*ast.ListType)
	if len(item.Keys) != 1 || !item.Assign.IsValid() || !ok {
		return nil, p.errf(item.Pos(), "%s in %s must be a list: %s = [\"HEX\", ...]", key, where, key)
	}
	if len(list.List) == 0 {
		return nil, p.errf(item.Pos(), "%s in %s is empty", key, where)
	}
	want := make([]string, len(sizes))
	for i, n := range sizes {
		want[i] = fmt.Sprint(n)
	}
	out := []string{}
	for _, n := range list.List {
		lit, ok := n.(*ast.LiteralType)
		if !ok || lit.Token.Type != token.STRING {
			return nil, p.errf(n.Pos(), "%s in %s: every entry must be a string of hex digits", key, where)
		}
		s, _ := lit.Token.Value().(string)
		if _, err := hex.DecodeString(s); err != nil || !slices.Contains(sizes, len(s)) {
			return nil, p.errf(n.Pos(), "%s entry %q in %s: want %s hex digits", key, s, where, strings.Join(want, " or "))
		}
		s = lowerHex(s)
		if slices.Contains(out, s) {
			return nil, p.errf(n.Pos(), "%s entry %s is listed twice in %s", key, s, where)
		}
		out = append(out, s)
	}
	return out, nil
}

// bootRules returns the boot blocks that apply to host ek: its own, then its group's (or
// the unknown_hosts group's). Every one must hold.
func (p *Policy) bootRules(ek string) []*BootRules {
	var out []*BootRules
	group := p.UnknownHosts
	if h := p.hosts[ek]; h != nil {
		if h.Boot != nil {
			out = append(out, h.Boot)
		}
		group = h.Group
	}
	if g := p.groups[group]; g != nil && g.Boot != nil {
		out = append(out, g.Boot)
	}
	return out
}

// Check checks the boot facts against every rule of the block. facts is nil when there
// is no log the verifier replayed. A refusal matches ErrRejected and names the rule, the
// event or value, and what the rule allows.
func (r *BootRules) Check(facts *verify.BootFacts) error {
	if facts == nil || len(facts.Replayed) == 0 {
		return rejectRule("boot", "boot rules of %s (%s) need the facts of a verified event log, and there are none: the plugin must have event_log = %q or %q, and the agent must send its log", r.Owner, strings.Join(r.RuleNames(), ", "), verify.EventLogVerify, verify.EventLogRequire)
	}
	for _, name := range r.RuleNames() {
		if msg := r.check(name, facts); msg != "" {
			return rejectRule(name, "boot rule %s of %s: %s", name, r.Owner, msg)
		}
	}
	return nil
}

// check returns why rule name does not hold, or "".
func (r *BootRules) check(name string, f *verify.BootFacts) string {
	sb := f.SecureBoot
	switch name {
	case "boot_loaders", "kernels":
		return r.checkApplications(name, f.BootApplications)
	case "kernel_cmdline":
		if f.KernelCmdline == "" {
			return "the log proves no kernel command line (PCR 8 not quoted, or no kernel_cmdline event)"
		}
		if f.KernelCmdline != r.KernelCmdline {
			return fmt.Sprintf("the kernel command line is %q, the rule wants %q", f.KernelCmdline, r.KernelCmdline)
		}
		return ""
	}
	if sb == nil {
		return "the log proves no Secure Boot state (PCR 7 not quoted, or no PCR 7 event)"
	}
	switch name {
	case "secure_boot":
		if !sb.Enabled {
			return "Secure Boot is off, the rule requires it on"
		}
	case "pk":
		return enrolled("PK", sb.PK, r.PK)
	case "kek":
		return enrolled("KEK", sb.KEK, r.KEK)
	case "db":
		return enrolled("db", sb.DB, r.DB)
	case "authorities":
		if len(sb.Authorities) == 0 {
			return fmt.Sprintf("no authority verified the boot chain (allowed: %s)", strings.Join(r.Authorities, ", "))
		}
		for i, c := range sb.Authorities {
			if !slices.Contains(r.Authorities, c.SHA256) {
				return fmt.Sprintf("authority %d %s (%s) is not allowed (allowed: %s)", i+1, c.SHA256, c.Subject, strings.Join(r.Authorities, ", "))
			}
		}
	case "dbx_includes":
		for _, d := range r.DBXIncludes {
			if !slices.Contains(sb.DBX, d) {
				return fmt.Sprintf("the dbx (%d entries) does not include %s", len(sb.DBX), d)
			}
		}
	}
	return ""
}

// enrolled checks that every certificate of a Secure Boot database is allowed.
func enrolled(db string, certs []verify.Certificate, allowed []string) string {
	for i, c := range certs {
		if !slices.Contains(allowed, c.SHA256) {
			return fmt.Sprintf("%s certificate %d %s (%s) is not allowed (allowed: %s)", db, i+1, c.SHA256, c.Subject, strings.Join(allowed, ", "))
		}
	}
	return ""
}

// application names boot application i of n (role: "the kernel" or "a boot loader") in a
// refusal: its event in the log (numbered as omens eventlog show numbers them), its type
// as the log claims it, and its position among the boot applications.
func application(a verify.BootApplication, i, n int, role string) string {
	if a.Event == 0 {
		return fmt.Sprintf("PCR 4 boot application %d of %d (%s, %s)", i, n, a.Type, role)
	}
	return fmt.Sprintf("PCR 4 event #%d of the log (%s; boot application %d of %d, %s)", a.Event, a.Type, i, n, role)
}

// checkApplications: kernels holds the last PCR 4 boot application to the list;
// boot_loaders holds every one before it to boot_loaders or kernels. The log claims which
// event is a loader and which a kernel (event types are not covered by digests), so the
// rules go by position: the firmware's last code measurement of PCR 4 is what the last
// loader started.
func (r *BootRules) checkApplications(name string, apps []verify.BootApplication) string {
	if len(apps) == 0 {
		return "the log proves no PCR 4 boot application (PCR 4 not quoted, or no code measurement in it)"
	}
	n := len(apps)
	if name == "kernels" {
		a := apps[n-1]
		if !slices.Contains(r.Kernels, a.Digest) {
			return fmt.Sprintf("%s digest %s is not approved (approved: %s)", application(a, n, n, "the kernel"), a.Digest, strings.Join(r.Kernels, ", "))
		}
		return ""
	}
	for i, a := range apps[:n-1] {
		if !slices.Contains(r.BootLoaders, a.Digest) && !slices.Contains(r.Kernels, a.Digest) {
			return fmt.Sprintf("%s digest %s is not approved (approved: %s)", application(a, i+1, n, "a boot loader"), a.Digest, strings.Join(append(slices.Clone(r.BootLoaders), r.Kernels...), ", "))
		}
	}
	return ""
}
