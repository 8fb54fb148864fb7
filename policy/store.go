package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// ErrRejected matches (errors.Is) every error Evaluate returns because the presented boot
// state is not allowed, as opposed to a local failure such as an unreadable policy or
// state file: the first is the agent's fault, the second the server's.
var ErrRejected = errors.New("policy: boot state rejected")

// rejection is a refusal of a boot state; its message is what the operator reads.
type rejection struct{ msg, rule string }

func (r *rejection) Error() string        { return r.msg }
func (r *rejection) Is(target error) bool { return target == ErrRejected }

func reject(format string, args ...any) error {
	return &rejection{msg: "policy: " + fmt.Sprintf(format, args...), rule: "pcr_sets"}
}

// rejectRule is a refusal by the named rule.
func rejectRule(rule, format string, args ...any) error {
	return &rejection{msg: "policy: " + fmt.Sprintf(format, args...), rule: rule}
}

// RejectedRule returns the rule that refused, for a rejection of Evaluate: "pcr_sets"
// for the PCR sets (and an unknown host), the name of a boot rule ("kernels", ...), or
// "boot" for boot rules without verified facts; "" for any other error.
func RejectedRule(err error) string {
	var r *rejection
	if errors.As(err, &r) {
		return r.rule
	}
	return ""
}

// Store is a policy file and its state, in a state file (Open) or in PostgreSQL (OpenDB).
// It is safe for concurrent use, and several Stores (in one process, in several, or on
// several machines sharing the database) may use the same state.
type Store struct {
	policyPath string
	state      stateStore // the state file, or PostgreSQL (statestore.go)

	mu      sync.Mutex
	pol     *Policy     // nil after a failed reload
	polInfo os.FileInfo // of the file pol was read from
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allowed bool
	Policy  string // name for the selector tpm:pcr_policy:<name>: the group name, or "host" for host-own sets, or "pinned"
	Set     string // the matched set, e.g. "tower/firmware-1.0" or "pinned/2026-11-29T10:00:00Z"
	Pinned  bool   // accepted because a window was open: the presented state was pinned as a new allowed set and the window closed
}

// DefaultStatePath is the state file used for policyPath when none is given.
func DefaultStatePath(policyPath string) string { return policyPath + ".state.json" }

// Open loads the policy file (and re-reads it, and the state, when their mtime/size
// change: a SPIRE server must not need a restart when the operator edits the policy).
// statePath "" = default (DefaultStatePath).
//
// The state is read afresh, under the lock, by every call that changes it, which covers
// any change another process made.
func Open(policyPath, statePath string) (*Store, error) {
	if policyPath == "" {
		return nil, errors.New("policy: no policy file given")
	}
	if statePath == "" {
		statePath = DefaultStatePath(policyPath)
	}
	s := &Store{policyPath: policyPath, state: &fileState{path: statePath, lockPath: statePath + ".lock"}}
	if _, err := s.Policy(); err != nil {
		return nil, err
	}
	if _, err := readState(statePath); err != nil {
		return nil, err
	}
	return s, nil
}

// PolicyPath is the policy file.
func (s *Store) PolicyPath() string { return s.policyPath }

// StatePath is where the state is: the state file, or "PostgreSQL host=... db=..."
// (never the password) for a Store from OpenDB.
func (s *Store) StatePath() string { return s.state.where() }

// Policy returns the policy, read again if the file's size, modification time or identity
// changed since it was last read.
func (s *Store) Policy() (*Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.policyPath)
	if err != nil {
		s.pol = nil
		return nil, fmt.Errorf("policy: policy file: %w", err)
	}
	if s.pol != nil && os.SameFile(fi, s.polInfo) && fi.Size() == s.polInfo.Size() && fi.ModTime().Equal(s.polInfo.ModTime()) {
		return s.pol, nil
	}
	data, err := limits.ReadFile(s.policyPath, limits.PolicyFile)
	if err != nil {
		s.pol = nil
		return nil, fmt.Errorf("policy: policy file: %w", err)
	}
	pol, err := ParsePolicy(s.policyPath, data)
	if err != nil {
		s.pol = nil // fail closed until the file is fixed
		return nil, err
	}
	s.pol, s.polInfo = pol, fi
	return pol, nil
}

// ReadPolicy reads and parses a policy file, under limits.PolicyFile.
func ReadPolicy(path string) (*Policy, error) {
	data, err := limits.ReadFile(path, limits.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("policy: policy file: %w", err)
	}
	return ParsePolicy(path, data)
}

// NormalizeEKHash checks that ekHash is 64 hex digits and returns it in lower case.
func NormalizeEKHash(ekHash string) (string, error) {
	if !isEKHash(ekHash) {
		return "", fmt.Errorf("policy: EK hash %q: want 64 hex digits", ekHash)
	}
	return lowerHex(ekHash), nil
}

// ResolveHost returns the EK hash and name label of host, given as an EK hash or as the
// name label of a host in the policy file.
func (s *Store) ResolveHost(host string) (ekHash, name string, err error) {
	pol, err := s.Policy()
	if err != nil {
		return "", "", err
	}
	return pol.resolve(host)
}

func (p *Policy) resolve(host string) (string, string, error) {
	if isEKHash(host) {
		ek := lowerHex(host)
		if h := p.hosts[ek]; h != nil {
			return ek, h.Name, nil
		}
		return ek, "", nil
	}
	if h := p.names[host]; h != nil {
		return h.EKHash, h.Name, nil
	}
	return "", "", fmt.Errorf("policy: no host is named %q in the policy file: give the EK hash (64 hex digits) or the name label of a host block", host)
}

// hostLabel is how messages name a host: the EK hash, and the name label if it has one.
func (p *Policy) hostLabel(ek string) string {
	if h := p.hosts[ek]; h != nil && h.Name != "" {
		return ek + " (" + h.Name + ")"
	}
	return ek
}

// candidate is a set that applies to a host, with the names Evaluate reports.
type candidate struct {
	policy string // Decision.Policy
	set    *Set
}

func (c candidate) name() string { return c.policy + "/" + c.set.Name }

// candidates returns the sets that apply to host ek, in the order they are tried: host's
// own sets, its group's sets, its pins. It returns an error if the host is not in the file
// and unknown_hosts is "reject".
func (p *Policy) candidates(ek string, hs *HostState) ([]candidate, error) {
	var out []candidate
	group := ""
	if h := p.hosts[ek]; h != nil {
		for _, s := range h.Sets {
			out = append(out, candidate{PolicyHost, s})
		}
		group = h.Group
	} else if p.UnknownHosts == Reject {
		return nil, reject("host %s is not in the policy file and unknown_hosts = \"reject\": add a host block for it", ek)
	} else {
		group = p.UnknownHosts
	}
	if g := p.groups[group]; g != nil {
		for _, s := range g.Sets {
			out = append(out, candidate{g.Name, s})
		}
	}
	if hs != nil {
		for _, pin := range hs.Pins {
			out = append(out, candidate{PolicyPinned, &Set{Name: pin.Name, Bank: pin.Bank, PCRs: pin.PCRs}})
		}
	}
	return out, nil
}

// mismatches returns the PCRs of set whose presented value differs or is missing, in
// index order.
func mismatches(set *Set, pcrs map[int][]byte) []int {
	var out []int
	for _, i := range sortedIndices(set.PCRs) {
		if v, ok := pcrs[i]; !ok || !slices.Equal(v, set.PCRs[i]) {
			out = append(out, i)
		}
	}
	return out
}

// Evaluate checks the presented PCR values (bank name, PCR index -> digest) of host
// ekHash at time now. It records what the host presented. Rejection: returns
// Decision{Allowed:false} and an error that names the PCR index and both values, and
// that matches ErrRejected; any other error is a local failure.
//
// Inside an open window for that host, a state that matches no set is accepted, pinned
// as a new allowed set for that host, and the window is closed. Outside a window a
// changed state is rejected. A host the file does not know is handled per unknown_hosts.
func (s *Store) Evaluate(ekHash, bank string, pcrs map[int][]byte, now time.Time) (Decision, error) {
	d, _, err := s.EvaluateBoot(ekHash, bank, pcrs, nil, now)
	return d, err
}

// EvaluateBoot is Evaluate with the facts of the event log the verifier replayed (nil
// without one). The boot blocks that apply to the host (its own, its group's) are checked
// first, and every rule of each must hold; windows do not open them. A host with boot
// rules and no PCR set is allowed by its boot rules alone. rule names what decided, for
// the audit line: on acceptance the set and the boot blocks that held (e.g.
// "tower/firmware-1.0; boot of group tower (secure_boot, kernels)"), on rejection the rule
// that refused (RejectedRule).
func (s *Store) EvaluateBoot(ekHash, bank string, pcrs map[int][]byte, boot *verify.BootFacts, now time.Time) (d Decision, rule string, err error) {
	d, rule, err = s.evaluate(ekHash, bank, pcrs, boot, now)
	if err != nil {
		rule = RejectedRule(err)
	}
	return d, rule, err
}

func (s *Store) evaluate(ekHash, bank string, pcrs map[int][]byte, boot *verify.BootFacts, now time.Time) (Decision, string, error) {
	ek, err := NormalizeEKHash(ekHash)
	if err != nil {
		return Decision{}, "", err
	}
	if len(pcrs) == 0 {
		return Decision{}, "", fmt.Errorf("policy: host %s presented no PCR values", ek)
	}
	if err := checkValues(bank, pcrs, false); err != nil {
		return Decision{}, "", fmt.Errorf("policy: host %s presented %v", ek, err)
	}
	pol, err := s.Policy()
	if err != nil {
		return Decision{}, "", err
	}
	var dec Decision
	var rule string
	var rejected error
	err = s.state.update(ek, func(hs *HostState) (bool, error) {
		windowExpired := false
		if hs.Window != nil && !now.Before(hs.Window.Until) {
			hs.Window, windowExpired = nil, true
		}
		prev := hs.Last
		var bootDec Decision
		var bootRule string
		bootDec, bootRule, rejected = decideBoot(pol, ek, boot)
		if rejected == nil {
			dec, rule, rejected = decide(pol, ek, bank, pcrs, hs, now, bootDec, bootRule)
		}
		last := &Presented{Time: now.UTC(), Bank: bank, PCRs: clonePCRs(pcrs), Policy: dec.Policy, Set: dec.Set, Boot: SummarizeBoot(boot)}
		switch {
		case rejected != nil:
			last.Result, last.Error = ResultRejected, rejected.Error()
		case dec.Pinned:
			last.Result = ResultPinned
		default:
			last.Result = ResultAllowed
		}
		if !dec.Pinned && !windowExpired && sameAsRecent(prev, last) {
			// The host presents what it presented a moment ago: nothing to record. This
			// keeps the state file (and its fsync) off the path of every re-attestation.
			return false, nil
		}
		hs.Last = last
		return true, nil
	})
	if err != nil {
		return Decision{}, "", err
	}
	return dec, rule, rejected
}

// lastRefresh is how stale the recorded time of an unchanged boot state may get before
// Evaluate writes it again.
const lastRefresh = 5 * time.Minute

// sameAsRecent reports whether cur repeats prev (same values, same outcome) and prev was
// recorded less than lastRefresh before.
func sameAsRecent(prev, cur *Presented) bool {
	if prev == nil || cur.Time.Sub(prev.Time) >= lastRefresh || cur.Time.Before(prev.Time) {
		return false
	}
	if prev.Bank != cur.Bank || prev.Result != cur.Result || prev.Policy != cur.Policy || prev.Set != cur.Set || prev.Error != cur.Error {
		return false
	}
	if len(prev.PCRs) != len(cur.PCRs) || !reflect.DeepEqual(prev.Boot, cur.Boot) {
		return false
	}
	for i, v := range cur.PCRs {
		if !bytes.Equal(prev.PCRs[i], v) {
			return false
		}
	}
	return true
}

// decide is the policy decision; it changes hs when it pins.
// boot and bootRule are the outcome of the boot rules (bootRule "" when no boot block
// applies); rule names what decided.
func decide(pol *Policy, ek, bank string, pcrs map[int][]byte, hs *HostState, now time.Time, boot Decision, bootRule string) (Decision, string, error) {
	cands, err := pol.candidates(ek, hs)
	if err != nil {
		return Decision{}, "", err
	}
	withBoot := func(d Decision) (Decision, string, error) {
		if bootRule != "" {
			return d, d.Set + "; " + bootRule, nil
		}
		return d, d.Set, nil
	}
	var inBank []candidate
	for _, c := range cands {
		if c.set.Bank != bank {
			continue
		}
		if len(mismatches(c.set, pcrs)) == 0 {
			return withBoot(Decision{Allowed: true, Policy: c.policy, Set: c.name()})
		}
		inBank = append(inBank, c)
	}
	if hs.Window != nil {
		return withBoot(pin(ek, bank, pcrs, inBank, hs, now))
	}
	host := pol.hostLabel(ek)
	if len(cands) == 0 && bootRule != "" {
		return boot, bootRule, nil
	}
	if len(cands) == 0 {
		return Decision{}, "", reject("host %s has no allowed PCR sets: give it a group or a set, or open a window (omens pcr allow-next --host %s) to pin its next boot state", host, ek)
	}
	if len(inBank) == 0 {
		var banks []string
		for _, c := range cands {
			if !slices.Contains(banks, c.set.Bank) {
				banks = append(banks, c.set.Bank)
			}
		}
		return Decision{}, "", reject("host %s presented PCR bank %s, its allowed sets are in %s", host, bank, strings.Join(banks, ", "))
	}
	// The nearest set: fewest mismatching PCRs, the first one tried on a tie.
	best, bestMis := inBank[0], mismatches(inBank[0].set, pcrs)
	for _, c := range inBank[1:] {
		if m := mismatches(c.set, pcrs); len(m) < len(bestMis) {
			best, bestMis = c, m
		}
	}
	i := bestMis[0]
	is := "is " + hex.EncodeToString(pcrs[i])
	if _, ok := pcrs[i]; !ok {
		is = "was not presented"
	}
	msg := fmt.Sprintf("host %s PCR %d %s, allowed set %s wants %s", host, i, is, best.name(), hex.EncodeToString(best.set.PCRs[i]))
	if len(bestMis) > 1 {
		idx := make([]string, len(bestMis))
		for k, m := range bestMis {
			idx[k] = strconv.Itoa(m)
		}
		msg += fmt.Sprintf(" (%d of its %d PCRs differ: %s)", len(bestMis), len(best.set.PCRs), strings.Join(idx, ", "))
	}
	return Decision{}, "", reject("%s", msg)
}

// decideBoot checks the boot blocks that apply to host ek. With none it returns a zero
// Decision; otherwise one allowed by the first block (Policy "host" or its group name),
// and a rule that names every block that held.
func decideBoot(pol *Policy, ek string, facts *verify.BootFacts) (Decision, string, error) {
	var d Decision
	var held []string
	for _, r := range pol.bootRules(ek) {
		if err := r.Check(facts); err != nil {
			return Decision{}, "", err
		}
		if d.Policy == "" {
			d = Decision{Allowed: true, Policy: PolicyHost}
			if g, ok := strings.CutPrefix(r.Owner, "group "); ok {
				d.Policy = g
			}
		}
		held = append(held, fmt.Sprintf("boot of %s (%s)", r.Owner, strings.Join(r.RuleNames(), ", ")))
	}
	return d, strings.Join(held, "; "), nil
}

// pin records the presented state as a new set for the host and closes its window. The
// pin covers the PCRs that the host's sets in this bank name; without such sets, the
// default PCRs; if none of those was presented, every presented PCR.
func pin(ek, bank string, pcrs map[int][]byte, inBank []candidate, hs *HostState, now time.Time) Decision {
	want := map[int]bool{}
	for _, c := range inBank {
		for i := range c.set.PCRs {
			want[i] = true
		}
	}
	if len(want) == 0 {
		for _, i := range tpmrules.DefaultPCRs() { // pinned for a host that has no set to take the PCRs from
			want[i] = true
		}
	}
	vals := PCRValues{}
	for i := range want {
		if v, ok := pcrs[i]; ok {
			vals[i] = slices.Clone(v)
		}
	}
	if len(vals) == 0 {
		vals = clonePCRs(pcrs)
	}
	name := now.UTC().Format(time.RFC3339)
	for n := 2; slices.ContainsFunc(hs.Pins, func(p *Pin) bool { return p.Name == name }); n++ {
		name = now.UTC().Format(time.RFC3339) + "-" + strconv.Itoa(n)
	}
	hs.Pins = append(hs.Pins, &Pin{Name: name, PinnedAt: now.UTC(), Bank: bank, PCRs: vals})
	hs.Window = nil
	return Decision{Allowed: true, Policy: PolicyPinned, Set: PolicyPinned + "/" + name, Pinned: true}
}

func clonePCRs(pcrs map[int][]byte) PCRValues {
	out := make(PCRValues, len(pcrs))
	for i, v := range pcrs {
		out[i] = slices.Clone(v)
	}
	return out
}

// AllowNext opens a window for host for d: the first boot state it presents before
// now+d that matches none of its sets is pinned as allowed. host is an EK hash or the
// name label of a host in the policy file. A window replaces an open one.
func (s *Store) AllowNext(host string, d time.Duration, now time.Time) error {
	if d <= 0 {
		return fmt.Errorf("policy: window length %s: want a positive duration such as 2h", d)
	}
	pol, err := s.Policy()
	if err != nil {
		return err
	}
	ek, _, err := pol.resolve(host)
	if err != nil {
		return err
	}
	if pol.hosts[ek] == nil && pol.UnknownHosts == Reject {
		return fmt.Errorf("policy: host %s is not in the policy file and unknown_hosts = \"reject\", so a window would not let it in: add a host %q block to %s (its group or sets may stay empty), then open the window", ek, ek, s.policyPath)
	}
	return s.state.update(ek, func(hs *HostState) (bool, error) {
		hs.Window = &Window{Opened: now.UTC(), Until: now.Add(d).UTC()}
		return true, nil
	})
}
