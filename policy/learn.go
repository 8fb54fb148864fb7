package policy

// This file holds the tools that write boot rules: LearnBoot turns the facts of one boot
// into a boot block, AddKernel approves a kernel in a policy file's text.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"

	"omens.dev/omens/verify"
)

// LearnBoot returns the boot rules that describe one boot: Secure Boot required if it was
// on, its authorities, its boot loaders and kernel (by the positional rule of Check), the
// PK, KEK and db fingerprints and its dbx entries as dbx_includes. The kernel command line
// is not learned. A rule the facts give nothing for is left unset.
func LearnBoot(owner string, facts *verify.BootFacts) (*BootRules, error) {
	if facts == nil || len(facts.Replayed) == 0 {
		return nil, errors.New("policy: learning boot rules needs the facts of a replayed event log")
	}
	r := &BootRules{Owner: owner}
	if n := len(facts.BootApplications); n > 0 {
		r.Kernels = []string{facts.BootApplications[n-1].Digest}
		for _, a := range facts.BootApplications[:n-1] {
			if !slices.Contains(r.BootLoaders, a.Digest) && a.Digest != r.Kernels[0] {
				r.BootLoaders = append(r.BootLoaders, a.Digest)
			}
		}
	}
	if sb := facts.SecureBoot; sb != nil {
		if sb.Enabled {
			r.SecureBoot = SecureBootRequired
		}
		r.Authorities = fingerprints(sb.Authorities)
		r.PK = fingerprints(sb.PK)
		r.KEK = fingerprints(sb.KEK)
		r.DB = fingerprints(sb.DB)
		for _, d := range sb.DBX {
			if !slices.Contains(r.DBXIncludes, d) {
				r.DBXIncludes = append(r.DBXIncludes, d)
			}
		}
	}
	if len(r.RuleNames()) == 0 {
		return nil, errors.New("policy: the event log proves nothing a boot rule can hold (no PCR 4 boot application, no PCR 7 event)")
	}
	return r, nil
}

// fingerprints returns the distinct SHA-256 fingerprints of certs, in order; nil for none.
func fingerprints(certs []verify.Certificate) []string {
	var out []string
	for _, c := range certs {
		if !slices.Contains(out, c.SHA256) {
			out = append(out, c.SHA256)
		}
	}
	return out
}

// HCL renders the rules as a boot block of the policy file, indented by indent.
func (r *BootRules) HCL(indent string) string {
	var b strings.Builder
	b.WriteString(indent + "boot {\n")
	line := func(key, value string) { fmt.Fprintf(&b, "%s  %-14s = %s\n", indent, key, value) }
	list := func(l []string) string {
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = `"` + s + `"`
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	for _, name := range r.RuleNames() {
		switch name {
		case "secure_boot":
			line(name, `"`+r.SecureBoot+`"`)
		case "kernel_cmdline":
			line(name, fmt.Sprintf("%q", r.KernelCmdline))
		default:
			line(name, list(r.list(name)))
		}
	}
	b.WriteString(indent + "}\n")
	return b.String()
}

// list returns the digest list of rule name.
func (r *BootRules) list(name string) []string {
	return map[string][]string{"pk": r.PK, "kek": r.KEK, "db": r.DB, "dbx_includes": r.DBXIncludes,
		"authorities": r.Authorities, "boot_loaders": r.BootLoaders, "kernels": r.Kernels}[name]
}

// AddKernel approves kernel digest in the kernels rule of the boot block of group or host
// (exactly one of them set; host is an EK hash) in the policy file src. Only the kernels
// list changes: the digest is appended after its last entry (on a line of its own when
// the list has one entry a line), and every other byte of the file, comments included,
// stays. The block must already have a kernels rule (adding one
// would refuse every other kernel); the result must parse. filename is for messages.
func AddKernel(filename string, src []byte, group, host, digest string) ([]byte, error) {
	if _, err := hex.DecodeString(digest); err != nil || !slices.Contains([]int{40, 64, 96}, len(digest)) {
		return nil, fmt.Errorf("policy: kernel digest %q: want 40, 64 or 96 hex digits", digest)
	}
	digest = lowerHex(digest)
	pol, err := ParsePolicy(filename, src)
	if err != nil {
		return nil, err
	}
	var rules *BootRules
	where, kind, label := "", "", ""
	switch {
	case (group == "") == (host == ""):
		return nil, errors.New("policy: name a group or a host, not both")
	case group != "":
		g := pol.groups[group]
		if g == nil {
			return nil, fmt.Errorf("policy: %s has no group %q", filename, group)
		}
		rules, where, kind, label = g.Boot, fmt.Sprintf("group %q", group), "group", group
	default:
		ek, err := NormalizeEKHash(host)
		if err != nil {
			return nil, err
		}
		h := pol.hosts[ek]
		if h == nil {
			return nil, fmt.Errorf("policy: %s has no host %s", filename, ek)
		}
		rules, where, kind, label = h.Boot, "host "+ek, "host", ek
	}
	if rules == nil || rules.Kernels == nil {
		return nil, fmt.Errorf("policy: %s: %s has no kernels rule in a boot block to add the kernel to (write one first, e.g. from omens pcr policy learn)", filename, where)
	}
	if slices.Contains(rules.Kernels, digest) {
		return nil, fmt.Errorf("policy: %s: kernel %s is already approved in %s", filename, digest, where)
	}
	if len(digest) != len(rules.Kernels[0]) {
		return nil, fmt.Errorf("policy: kernel digest %s has %d hex digits, the kernels of %s have %d (the bank the server quotes)", digest, len(digest), where, len(rules.Kernels[0]))
	}
	list, err := kernelsList(src, kind, label)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", filename, err)
	}
	last, ok := list.List[len(list.List)-1].(*ast.LiteralType)
	if !ok {
		return nil, fmt.Errorf("policy: %s: the kernels list of %s is not a list of strings", filename, where)
	}
	at := last.Token.Pos.Offset + len(last.Token.Text)
	out := slices.Concat(src[:at], []byte(`, "`+digest+`"`), src[at:])
	if list.Rbrack.Line > last.Token.Pos.Line {
		// A list of one entry a line: the new entry gets a line of its own after the
		// last one (and its comment), with the same indentation.
		lineEnd := at + bytes.IndexByte(src[at:], '\n') + 1
		lineStart := bytes.LastIndexByte(src[:last.Token.Pos.Offset], '\n') + 1
		indent := src[lineStart:last.Token.Pos.Offset]
		if len(bytes.Trim(indent, " \t")) != 0 {
			indent = []byte("      ")
		}
		comma := ""
		if !bytes.HasPrefix(bytes.TrimLeft(src[at:lineEnd], " \t"), []byte(",")) {
			comma = ","
		}
		out = slices.Concat(src[:at], []byte(comma), src[at:lineEnd], indent, []byte(`"`+digest+`",`+"\n"), src[lineEnd:])
	}
	if _, err := ParsePolicy(filename, out); err != nil {
		return nil, fmt.Errorf("policy: adding the kernel would break %s: %w", filename, err)
	}
	return out, nil
}

// kernelsList finds the kernels list of the boot block of `kind "label"` in src.
func kernelsList(src []byte, kind, label string) (*ast.ListType, error) {
	f, err := hclparser.ParseDontErrorOnDuplicateKeys(src)
	if err != nil {
		return nil, err
	}
	root, _ := f.Node.(*ast.ObjectList)
	for _, it := range root.Items {
		if firstKey(it) != kind || len(it.Keys) != 2 || !strings.EqualFold(keyText(it.Keys[1]), label) {
			continue
		}
		obj, _ := it.Val.(*ast.ObjectType)
		for _, b := range obj.List.Items {
			if firstKey(b) != "boot" {
				continue
			}
			bo, _ := b.Val.(*ast.ObjectType)
			for _, k := range bo.List.Items {
				if firstKey(k) == "kernels" {
					if l, ok := k.Val.(*ast.ListType); ok && len(l.List) > 0 {
						return l, nil
					}
				}
			}
		}
	}
	return nil, fmt.Errorf("no kernels list in the boot block of %s %q", kind, label)
}
