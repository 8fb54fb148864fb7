package registry

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/tpmrules"
)

// Inventory is the trust domain, hosts and workloads an inventory file names (see the
// package documentation for the format).
type Inventory struct {
	File        string // the file it was read from, for messages
	TrustDomain string // such as "funlab.casa"
	Hosts       []Host
	Workloads   []Workload

	// What `omens config render` needs (package hostconf); nil or empty when the file
	// does not say.
	Server *SPIREServer // the spire_server block
	RA     *RA          // the ra block
	StepCA *StepCA      // the step_ca block
	Paths  Paths        // the top-level paths block, as written (see PathsOf)
}

// Host is a host "NAME" block: a machine whose SPIRE agent attests with its TPM.
type Host struct {
	Name         string
	EKHash       string // lower-case hex SHA-256 of the EK public key (PKIX DER), or ""
	DevIDSubject string // common name of the host's DevID certificate, or ""
	PCRPolicy    string // PCR policy group, or ""
	// Phase is the NodeAttestor its agent attests with; "" when the file does not say.
	Phase Phase
	// DevIDHandle is the persistent handle of its DevID key, or "" for the plan's
	// (DevIDHandleOf).
	DevIDHandle string
	// Paths are its own paths block, as written (see Inventory.PathsOf).
	Paths Paths
	Line  int
}

// Workload is a workload "NAME" block: a process on a host and the SPIFFE ID it gets.
type Workload struct {
	Name      string
	Host      string
	SPIFFEID  string
	Selectors []string // "type:value", such as "unix:user:openbao"
	Line      int
}

// Selector types and prefixes that NodeAttestor "tpm" (and SPIRE's tpm_devid) give agents.
const (
	selEKHash       = "tpm:pub_hash:"
	selDevIDSubject = "tpm:devid:subject:cn:"
	selPCRPolicy    = "tpm:pcr_policy:"
	// selSPIREDevIDSubject is the subject selector of SPIRE's built-in tpm_devid attestor.
	selSPIREDevIDSubject = "tpm_devid:subject:cn:"
)

// NodeSelectors are the selectors of the host's node alias, "type:value". A host in phase
// ek with an EK hash has no DevID selector in its alias: its agent attests without its
// DevID certificate (rolled back from DevID mode, or not enrolled yet), under the same
// agent ID, and its workloads keep their entries.
func (h *Host) NodeSelectors() []string {
	var s []string
	if h.EKHash != "" {
		s = append(s, selEKHash+h.EKHash)
	}
	if h.DevIDSubject != "" && (h.Phase != PhaseEK || h.EKHash == "") {
		s = append(s, selDevIDSubject+h.DevIDSubject)
	}
	if h.PCRPolicy != "" {
		s = append(s, selPCRPolicy+h.PCRPolicy)
	}
	return s
}

// AliasID is the SPIFFE ID of host's node alias: spiffe://<trust domain>/agent/<host>.
func (inv *Inventory) AliasID(host string) string {
	return "spiffe://" + inv.TrustDomain + "/agent/" + host
}

// ServerID is the SPIFFE ID of the SPIRE server, the parent of node entries.
func (inv *Inventory) ServerID() string {
	return "spiffe://" + inv.TrustDomain + "/spire/server"
}

// Host returns the host called name, or nil.
func (inv *Inventory) Host(name string) *Host {
	for i := range inv.Hosts {
		if inv.Hosts[i].Name == name {
			return &inv.Hosts[i]
		}
	}
	return nil
}

// HostOf returns the inventory host whose TPM the agent selectors (each "type:value")
// describe: its EK hash, or its DevID subject. It returns nil when none matches.
func (inv *Inventory) HostOf(selectors []string) *Host {
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		for _, s := range selectors {
			if h.EKHash != "" && strings.EqualFold(s, selEKHash+h.EKHash) {
				return h
			}
			if h.DevIDSubject != "" && (s == selDevIDSubject+h.DevIDSubject || s == selSPIREDevIDSubject+h.DevIDSubject) {
				return h
			}
		}
	}
	return nil
}

// LoadInventory reads and checks the inventory file at path.
func LoadInventory(path string) (*Inventory, error) {
	src, err := limits.ReadFile(path, limits.Inventory)
	if err != nil {
		return nil, fmt.Errorf("registry: inventory: %w", err)
	}
	return ParseInventory(filepath.Base(path), src)
}

// ParseInventory parses and checks an inventory; name labels its errors. Every problem
// is reported, each as "registry: <name>:<line>: <block>: <key>: <what is wrong>". An
// inventory over the size or nesting limit of limits.Inventory is refused before the HCL
// parser sees it.
func ParseInventory(name string, src []byte) (*Inventory, error) {
	if err := limits.Check(name, src, limits.Inventory); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	f, err := hclparser.ParseDontErrorOnDuplicateKeys(src)
	if err != nil {
		var pe *hclparser.PosError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("registry: %s:%d:%d: %v", name, pe.Pos.Line, pe.Pos.Column, pe.Err)
		}
		return nil, fmt.Errorf("registry: %s: %w", name, err)
	}
	root, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("registry: %s: not an HCL body", name)
	}
	d := &decoder{file: name}
	inv := &Inventory{File: name}
	tdSeen := false
	seen := map[string]int{}
	for _, item := range root.Items {
		key := keyName(item.Keys[0])
		switch key {
		case "spire_server", "ra", "step_ca", "paths":
			if line, dup := seen[key]; dup {
				d.errorf(item.Pos(), "", "%s: set twice (first at line %d)", key, line)
				continue
			}
			seen[key] = item.Pos().Line
		}
	}
	for _, item := range root.Items {
		key := keyName(item.Keys[0])
		switch key {
		case "trust_domain":
			if tdSeen {
				d.errorf(item.Pos(), "", "trust_domain: set twice")
				continue
			}
			tdSeen = true
			s, ok := d.str(item, "")
			if !ok {
				continue
			}
			td, err := spiffeid.TrustDomainFromString(s)
			if err != nil || strings.Contains(s, "/") {
				d.errorf(item.Pos(), "", "trust_domain: %q is not a trust domain name (such as \"funlab.casa\")", s)
				continue
			}
			inv.TrustDomain = td.Name()
		case "host":
			if h, ok := d.host(item); ok {
				inv.Hosts = append(inv.Hosts, h)
			}
		case "workload":
			if w, ok := d.workload(item); ok {
				inv.Workloads = append(inv.Workloads, w)
			}
		case "spire_server", "ra", "step_ca", "paths":
			if seen[key] != item.Pos().Line {
				continue // set twice, said above
			}
			switch key {
			case "spire_server":
				if s, ok := d.spireServer(item); ok {
					inv.Server = s
				}
			case "ra":
				if r, ok := d.ra(item); ok {
					inv.RA = r
				}
			case "step_ca":
				if s, ok := d.stepCA(item); ok {
					inv.StepCA = s
				}
			case "paths":
				d.paths(item, "", &inv.Paths)
			}
		default:
			d.errorf(item.Pos(), "", "unknown key %q (want trust_domain, host, workload, spire_server, ra, step_ca or paths)", key)
		}
	}
	if !tdSeen {
		d.errs = append(d.errs, fmt.Errorf("registry: %s: trust_domain: missing", name))
	}
	d.crossCheck(inv)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return inv, nil
}

// decoder collects the errors of one inventory file.
type decoder struct {
	file string
	errs []error
}

// keyName is the text of a key, unquoted if it was a string.
func keyName(k *ast.ObjectKey) string {
	if k.Token.Type == token.STRING {
		if s, ok := k.Token.Value().(string); ok {
			return s
		}
	}
	return k.Token.Text
}

// errorf records an error at pos; block, when set, names the block it is in.
func (d *decoder) errorf(pos token.Pos, block, format string, args ...any) {
	where := fmt.Sprintf("%s:%d", d.file, pos.Line)
	if block != "" {
		where += ": " + block
	}
	d.errs = append(d.errs, fmt.Errorf("registry: %s: %s", where, fmt.Sprintf(format, args...)))
}

// block checks that item is `kind "NAME" { ... }` and returns its name and body.
func (d *decoder) block(item *ast.ObjectItem, kind string) (string, *ast.ObjectList, bool) {
	body, ok := item.Val.(*ast.ObjectType)
	if len(item.Keys) != 2 || !ok || item.Assign.IsValid() {
		d.errorf(item.Pos(), "", "%s: want a block with one name: %s \"NAME\" { ... }", kind, kind)
		return "", nil, false
	}
	name := keyName(item.Keys[1])
	if name == "" {
		d.errorf(item.Pos(), "", "%s: want a block with one name: %s \"NAME\" { ... }", kind, kind)
		return "", nil, false
	}
	if err := spiffeid.ValidatePathSegment(name); err != nil {
		d.errorf(item.Pos(), fmt.Sprintf("%s %q", kind, name), "name: must be a SPIFFE ID path segment (letters, digits, '.', '-', '_'): %v", err)
		return "", nil, false
	}
	return name, body.List, true
}

// str returns item's value, which must be a non-empty string.
func (d *decoder) str(item *ast.ObjectItem, block string) (string, bool) {
	key := keyName(item.Keys[0])
	lit, ok := item.Val.(*ast.LiteralType)
	if len(item.Keys) != 1 || !ok || (lit.Token.Type != token.STRING && lit.Token.Type != token.HEREDOC) {
		d.errorf(item.Pos(), block, "%s: want a string", key)
		return "", false
	}
	s, _ := lit.Token.Value().(string)
	if s == "" {
		d.errorf(item.Pos(), block, "%s: must not be empty", key)
		return "", false
	}
	return s, true
}

// strList returns item's value, which must be a list of strings.
func (d *decoder) strList(item *ast.ObjectItem, block string) ([]string, bool) {
	key := keyName(item.Keys[0])
	list, ok := item.Val.(*ast.ListType)
	if len(item.Keys) != 1 || !ok {
		d.errorf(item.Pos(), block, "%s: want a list of strings", key)
		return nil, false
	}
	var out []string
	for _, n := range list.List {
		lit, ok := n.(*ast.LiteralType)
		if !ok || lit.Token.Type != token.STRING {
			d.errorf(n.Pos(), block, "%s: want a list of strings", key)
			return nil, false
		}
		out = append(out, lit.Token.Value().(string))
	}
	return out, true
}

// fields walks the keys of a block body: each known key once, unknown keys refused.
func (d *decoder) fields(body *ast.ObjectList, block string, known []string, each func(key string, item *ast.ObjectItem)) {
	seen := map[string]bool{}
	for _, item := range body.Items {
		key := keyName(item.Keys[0])
		if !slices.Contains(known, key) {
			d.errorf(item.Pos(), block, "unknown key %q (want %s)", key, strings.Join(known, ", "))
			continue
		}
		if seen[key] {
			d.errorf(item.Pos(), block, "%s: set twice", key)
			continue
		}
		seen[key] = true
		each(key, item)
	}
}

func (d *decoder) host(item *ast.ObjectItem) (Host, bool) {
	name, body, ok := d.block(item, "host")
	if !ok {
		return Host{}, false
	}
	h := Host{Name: name, Line: item.Pos().Line}
	block := fmt.Sprintf("host %q", name)
	good := true
	d.fields(body, block, []string{"ek_hash", "devid_subject", "pcr_policy", "phase", "devid_handle", "paths"}, func(key string, it *ast.ObjectItem) {
		if key == "paths" {
			good = d.paths(it, block, &h.Paths) && good
			return
		}
		s, ok := d.str(it, block)
		if !ok {
			good = false
			return
		}
		switch key {
		case "ek_hash":
			if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
				d.errorf(it.Pos(), block, "ek_hash: want 64 hex digits (SHA-256 of the EK public key, as `omens ek show` prints it), got %q", s)
				good = false
				return
			}
			h.EKHash = strings.ToLower(s)
		case "devid_subject":
			h.DevIDSubject = s
		case "pcr_policy":
			if strings.ContainsAny(s, " \t\n") {
				d.errorf(it.Pos(), block, "pcr_policy: %q: a policy name has no spaces", s)
				good = false
				return
			}
			h.PCRPolicy = s
		case "phase":
			p, ok := d.phase(it, block, s)
			h.Phase, good = p, good && ok
		case "devid_handle":
			if _, err := tpmrules.ParsePersistentHandle(s); err != nil {
				d.errorf(it.Pos(), block, "devid_handle: %v", err)
				good = false
				return
			}
			h.DevIDHandle = s
		}
	})
	if good && h.EKHash == "" && h.DevIDSubject == "" {
		d.errorf(item.Pos(), block, "ek_hash, devid_subject: set one of them or both, so that the host's agent can be recognised")
		good = false
	}
	return h, good
}

func (d *decoder) workload(item *ast.ObjectItem) (Workload, bool) {
	name, body, ok := d.block(item, "workload")
	if !ok {
		return Workload{}, false
	}
	w := Workload{Name: name, Line: item.Pos().Line}
	block := fmt.Sprintf("workload %q", name)
	good := true
	d.fields(body, block, []string{"host", "spiffe_id", "selectors"}, func(key string, it *ast.ObjectItem) {
		if key == "selectors" {
			sels, ok := d.strList(it, block)
			if !ok {
				good = false
				return
			}
			for _, s := range sels {
				typ, val, ok := strings.Cut(s, ":")
				if !ok || typ == "" || val == "" {
					d.errorf(it.Pos(), block, "selectors: %q is not type:value (such as \"unix:user:openbao\")", s)
					good = false
					return
				}
			}
			if len(sels) == 0 {
				d.errorf(it.Pos(), block, "selectors: must not be empty")
				good = false
				return
			}
			w.Selectors = sels
			return
		}
		s, ok := d.str(it, block)
		if !ok {
			good = false
			return
		}
		switch key {
		case "host":
			w.Host = s
		case "spiffe_id":
			if _, err := spiffeid.FromString(s); err != nil {
				d.errorf(it.Pos(), block, "spiffe_id: %q: %v", s, err)
				good = false
				return
			}
			w.SPIFFEID = s
		}
	})
	for _, m := range []struct {
		key     string
		missing bool
	}{{"host", w.Host == ""}, {"spiffe_id", w.SPIFFEID == ""}, {"selectors", w.Selectors == nil}} {
		if good && m.missing {
			d.errorf(item.Pos(), block, "%s: missing", m.key)
			good = false
		}
	}
	return w, good
}

// crossCheck checks what spans blocks: unique names, known hosts, the trust domain.
func (d *decoder) crossCheck(inv *Inventory) {
	hosts := map[string]int{}
	for _, h := range inv.Hosts {
		block := fmt.Sprintf("host %q", h.Name)
		if line, dup := hosts[h.Name]; dup {
			d.errorf(token.Pos{Line: h.Line}, block, "defined twice (first at line %d)", line)
			continue
		}
		hosts[h.Name] = h.Line
	}
	d.crossCheckDeploy(inv, hosts)
	workloads := map[string]int{}
	ids := map[[2]string]string{}
	for _, w := range inv.Workloads {
		block := fmt.Sprintf("workload %q", w.Name)
		pos := token.Pos{Line: w.Line}
		if line, dup := workloads[w.Name]; dup {
			d.errorf(pos, block, "defined twice (first at line %d)", line)
			continue
		}
		workloads[w.Name] = w.Line
		if _, ok := hosts[w.Host]; !ok {
			d.errorf(pos, block, "host: %q is not a host of the inventory", w.Host)
		}
		if inv.TrustDomain != "" && !strings.HasPrefix(w.SPIFFEID, "spiffe://"+inv.TrustDomain+"/") {
			d.errorf(pos, block, "spiffe_id: %s is not in trust domain %s", w.SPIFFEID, inv.TrustDomain)
		}
		key := [2]string{w.Host, w.SPIFFEID}
		if other, dup := ids[key]; dup {
			d.errorf(pos, block, "spiffe_id: workload %q already gives %s on host %s", other, w.SPIFFEID, w.Host)
		}
		ids[key] = w.Name
	}
}
