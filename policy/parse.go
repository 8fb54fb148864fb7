package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/tpmrules"
)

// NumPCRs is the number of PCRs in a bank of a PC Client TPM (TCG PC Client Platform TPM
// Profile, section 4.6.1).
const NumPCRs = tpmrules.NumPCRs

// DefaultBank is the bank of a set that names none.
const DefaultBank = tpmrules.DefaultPCRBank

// Reject is the unknown_hosts value that refuses hosts the policy file does not list.
const Reject = "reject"

// Selector names that Evaluate reports besides group names.
const (
	PolicyHost   = "host"   // the host's own sets
	PolicyPinned = "pinned" // sets pinned through a window
)

// DigestSize returns the digest size of bank, or 0 if the bank is not one of the banks a
// set may name (tpmrules.Banks: sha1, sha256 and sha384).
func DigestSize(bank string) int {
	b, _ := tpmrules.ParseBank(bank)
	return b.Size
}

// Policy is a parsed policy file.
type Policy struct {
	UnknownHosts string   // Reject or a group name
	Groups       []*Group // in file order
	Hosts        []*Host  // in file order

	groups map[string]*Group
	hosts  map[string]*Host // by EK hash
	names  map[string]*Host // by name label
}

// Group is a named group of allowed sets.
type Group struct {
	Name string
	Sets []*Set
	Boot *BootRules // nil without a boot block
}

// Host is a TPM the policy file lists, by EK hash.
type Host struct {
	EKHash string     // 64 lower-case hex digits
	Name   string     // optional label
	Group  string     // optional group name
	Sets   []*Set     // the host's own sets
	Boot   *BootRules // the host's own boot rules; nil without a boot block
}

// Set is one allowed boot state: values of some PCRs in one bank.
type Set struct {
	Name string
	Bank string
	PCRs map[int][]byte
}

// Group returns the group called name, or nil.
func (p *Policy) Group(name string) *Group { return p.groups[name] }

// Host returns the host with EK hash ekHash (lower-case hex), or nil.
func (p *Policy) Host(ekHash string) *Host { return p.hosts[ekHash] }

// HostByName returns the host whose name label is name, or nil.
func (p *Policy) HostByName(name string) *Host { return p.names[name] }

// ParsePolicy parses a policy file; filename is used in error messages only. Every error
// names the file, the line and the offending key or value. A file over the size or
// nesting limit of limits.PolicyFile is refused before the HCL parser sees it.
func ParsePolicy(filename string, src []byte) (pol *Policy, err error) {
	if err := limits.Check(filename, src, limits.PolicyFile); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	// The HCL parser is third-party code fed with operator input: whatever it does, the
	// caller gets an error, not a crash. (A recover cannot catch a stack overflow: that
	// is why the nesting is limited first.)
	defer func() {
		if r := recover(); r != nil {
			pol, err = nil, fmt.Errorf("policy: %s: cannot parse: %v", filename, r)
		}
	}()
	f, err := hclparser.ParseDontErrorOnDuplicateKeys(src)
	if err != nil {
		var pe *hclparser.PosError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("policy: %s:%d: %v", filename, pe.Pos.Line, pe.Err)
		}
		return nil, fmt.Errorf("policy: %s: %v", filename, err)
	}
	root, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("policy: %s: not an HCL body", filename)
	}
	p := &parser{file: filename}
	return p.policy(root)
}

type parser struct{ file string }

func (p *parser) errf(pos token.Pos, format string, args ...any) error {
	return fmt.Errorf("policy: %s:%d: %s", p.file, pos.Line, fmt.Sprintf(format, args...))
}

// firstKey is the text of an item's first key, unquoted.
func firstKey(item *ast.ObjectItem) string {
	if len(item.Keys) == 0 {
		return ""
	}
	return keyText(item.Keys[0])
}

// keyText is the text of an object key, unquoted.
func keyText(k *ast.ObjectKey) string {
	if k.Token.Type == token.STRING {
		if s, ok := k.Token.Value().(string); ok {
			return s
		}
	}
	return k.Token.Text
}

// str returns the string value of an attribute `key = "value"`.
func (p *parser) str(item *ast.ObjectItem, key string) (string, error) {
	lit, ok := item.Val.(*ast.LiteralType)
	if len(item.Keys) != 1 || !item.Assign.IsValid() || !ok || lit.Token.Type != token.STRING {
		return "", p.errf(item.Pos(), "%s must be a string: %s = \"...\"", key, key)
	}
	s, _ := lit.Token.Value().(string)
	return s, nil
}

// block returns the label and body of a block `key "label" { ... }`.
func (p *parser) block(item *ast.ObjectItem, key, what string) (string, *ast.ObjectList, error) {
	obj, ok := item.Val.(*ast.ObjectType)
	if len(item.Keys) != 2 || item.Assign.IsValid() || !ok {
		return "", nil, p.errf(item.Pos(), "%s must be a block with one label: %s \"%s\" { ... }", key, key, what)
	}
	return keyText(item.Keys[1]), obj.List, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// isEKHash reports whether s is 64 hex digits.
func isEKHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func (p *parser) policy(root *ast.ObjectList) (*Policy, error) {
	pol := &Policy{
		UnknownHosts: Reject,
		groups:       map[string]*Group{},
		hosts:        map[string]*Host{},
		names:        map[string]*Host{},
	}
	var unknownItem *ast.ObjectItem
	var hostItems []*ast.ObjectItem
	for _, item := range root.Items {
		switch key := firstKey(item); key {
		case "unknown_hosts":
			if unknownItem != nil {
				return nil, p.errf(item.Pos(), "unknown_hosts is set twice (first on line %d)", unknownItem.Pos().Line)
			}
			v, err := p.str(item, key)
			if err != nil {
				return nil, err
			}
			unknownItem = item
			pol.UnknownHosts = v
		case "group":
			name, body, err := p.block(item, key, "NAME")
			if err != nil {
				return nil, err
			}
			if !validName(name) {
				return nil, p.errf(item.Pos(), "group name %q: want 1 to 64 of A-Z a-z 0-9 . _ -", name)
			}
			if name == Reject || name == PolicyHost || name == PolicyPinned {
				return nil, p.errf(item.Pos(), "group name %q is reserved (reject, host and pinned are)", name)
			}
			if pol.groups[name] != nil {
				return nil, p.errf(item.Pos(), "duplicate group %q", name)
			}
			g := &Group{Name: name}
			var bootItem *ast.ObjectItem
			for _, it := range body.Items {
				k := firstKey(it)
				if k == "boot" {
					if bootItem != nil {
						return nil, p.errf(it.Pos(), "boot is set twice in group %q (first on line %d)", name, bootItem.Pos().Line)
					}
					bootItem = it
					if g.Boot, err = p.boot(it, "group "+name, "group "+strconv.Quote(name)); err != nil {
						return nil, err
					}
					continue
				}
				if k != "set" {
					return nil, p.errf(it.Pos(), "unknown key %q in group %q (want set)", k, name)
				}
				s, err := p.set(it, g.Sets, "group "+strconv.Quote(name))
				if err != nil {
					return nil, err
				}
				g.Sets = append(g.Sets, s)
			}
			pol.groups[name] = g
			pol.Groups = append(pol.Groups, g)
		case "host":
			// Hosts are read after all groups, so that a host may name a group defined
			// further down the file.
			hostItems = append(hostItems, item)
		default:
			return nil, p.errf(item.Pos(), "unknown key %q (want unknown_hosts, group or host)", key)
		}
	}
	for _, item := range hostItems {
		h, err := p.host(item, pol)
		if err != nil {
			return nil, err
		}
		pol.hosts[h.EKHash] = h
		if h.Name != "" {
			pol.names[h.Name] = h
		}
		pol.Hosts = append(pol.Hosts, h)
	}
	if pol.UnknownHosts != Reject && pol.groups[pol.UnknownHosts] == nil {
		return nil, p.errf(unknownItem.Pos(), "unknown_hosts = %q: no such group (want \"reject\" or a group name)", pol.UnknownHosts)
	}
	return pol, nil
}

func (p *parser) host(item *ast.ObjectItem, pol *Policy) (*Host, error) {
	label, body, err := p.block(item, "host", "EK_HASH")
	if err != nil {
		return nil, err
	}
	if !isEKHash(label) {
		return nil, p.errf(item.Pos(), "host %q: want the EK hash, 64 hex digits", label)
	}
	h := &Host{EKHash: strings.ToLower(label)}
	if pol.hosts[h.EKHash] != nil {
		return nil, p.errf(item.Pos(), "duplicate host %s", h.EKHash)
	}
	where := "host " + h.EKHash
	var nameItem, groupItem, bootItem *ast.ObjectItem
	for _, it := range body.Items {
		switch k := firstKey(it); k {
		case "name":
			if nameItem != nil {
				return nil, p.errf(it.Pos(), "name is set twice in %s (first on line %d)", where, nameItem.Pos().Line)
			}
			nameItem = it
			if h.Name, err = p.str(it, k); err != nil {
				return nil, err
			}
			if !validName(h.Name) || isEKHash(h.Name) {
				return nil, p.errf(it.Pos(), "host name %q: want 1 to 64 of A-Z a-z 0-9 . _ -, not 64 hex digits", h.Name)
			}
			if other := pol.names[h.Name]; other != nil {
				return nil, p.errf(it.Pos(), "duplicate host name %q (also host %s)", h.Name, other.EKHash)
			}
		case "group":
			if groupItem != nil {
				return nil, p.errf(it.Pos(), "group is set twice in %s (first on line %d)", where, groupItem.Pos().Line)
			}
			groupItem = it
			if h.Group, err = p.str(it, k); err != nil {
				return nil, err
			}
			if pol.groups[h.Group] == nil {
				return nil, p.errf(it.Pos(), "%s: unknown group %q", where, h.Group)
			}
		case "set":
			s, err := p.set(it, h.Sets, where)
			if err != nil {
				return nil, err
			}
			h.Sets = append(h.Sets, s)
		case "boot":
			if bootItem != nil {
				return nil, p.errf(it.Pos(), "boot is set twice in %s (first on line %d)", where, bootItem.Pos().Line)
			}
			bootItem = it
			if h.Boot, err = p.boot(it, where, where); err != nil {
				return nil, err
			}
		default:
			return nil, p.errf(it.Pos(), "unknown key %q in %s (want name, group or set)", k, where)
		}
	}
	return h, nil
}

// set parses a set block; others are the sets already in the same group or host.
func (p *parser) set(item *ast.ObjectItem, others []*Set, where string) (*Set, error) {
	name, body, err := p.block(item, "set", "NAME")
	if err != nil {
		return nil, err
	}
	if !validName(name) {
		return nil, p.errf(item.Pos(), "set name %q in %s: want 1 to 64 of A-Z a-z 0-9 . _ -", name, where)
	}
	if slices.ContainsFunc(others, func(s *Set) bool { return s.Name == name }) {
		return nil, p.errf(item.Pos(), "duplicate set %q in %s", name, where)
	}
	where = fmt.Sprintf("set %q in %s", name, where)
	s := &Set{Name: name, Bank: DefaultBank}
	var bankItem, pcrsItem *ast.ObjectItem
	for _, it := range body.Items {
		switch k := firstKey(it); k {
		case "bank":
			if bankItem != nil {
				return nil, p.errf(it.Pos(), "bank is set twice in %s (first on line %d)", where, bankItem.Pos().Line)
			}
			bankItem = it
			if s.Bank, err = p.str(it, k); err != nil {
				return nil, err
			}
			if DigestSize(s.Bank) == 0 {
				return nil, p.errf(it.Pos(), "bank %q in %s: want sha1, sha256 or sha384", s.Bank, where)
			}
		case "pcrs":
			if pcrsItem != nil {
				return nil, p.errf(it.Pos(), "pcrs is set twice in %s (first on line %d)", where, pcrsItem.Pos().Line)
			}
			pcrsItem = it
		default:
			return nil, p.errf(it.Pos(), "unknown key %q in %s (want bank or pcrs)", k, where)
		}
	}
	if pcrsItem == nil {
		return nil, p.errf(item.Pos(), "%s has no pcrs", where)
	}
	// The bank must be known before the digest sizes can be checked.
	obj, ok := pcrsItem.Val.(*ast.ObjectType)
	if len(pcrsItem.Keys) != 1 || !ok {
		return nil, p.errf(pcrsItem.Pos(), "pcrs in %s must be a map: pcrs = { \"0\" = \"HEX\", ... }", where)
	}
	if len(obj.List.Items) == 0 {
		return nil, p.errf(pcrsItem.Pos(), "pcrs in %s is empty", where)
	}
	s.PCRs = map[int][]byte{}
	size := DigestSize(s.Bank)
	for _, it := range obj.List.Items {
		k := firstKey(it)
		idx, ok := parseIndex(k)
		if len(it.Keys) != 1 || !ok {
			return nil, p.errf(it.Pos(), "PCR %q in %s: want an index 0-23", k, where)
		}
		if _, dup := s.PCRs[idx]; dup {
			return nil, p.errf(it.Pos(), "PCR %d is set twice in %s", idx, where)
		}
		v, err := p.str(it, "PCR "+k)
		if err != nil {
			return nil, err
		}
		d, err := hex.DecodeString(v)
		if err != nil {
			return nil, p.errf(it.Pos(), "PCR %d = %q in %s: not hex", idx, v, where)
		}
		if len(d) != size {
			return nil, p.errf(it.Pos(), "PCR %d = %q in %s: %d bytes, a %s digest is %d", idx, v, where, len(d), s.Bank, size)
		}
		s.PCRs[idx] = d
	}
	return s, nil
}

// parseIndex parses a PCR index: decimal digits only, 0-23.
func parseIndex(s string) (int, bool) {
	if s == "" || len(s) > 2 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, _ := strconv.Atoi(s)
	return n, n < NumPCRs
}
