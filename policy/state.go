package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"time"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/statefile"
	"omens.dev/omens/verify"
)

// StateVersion is the version of the state file format this package reads and writes.
const StateVersion = 1

// Results recorded for a presented boot state.
const (
	ResultAllowed  = "allowed"
	ResultPinned   = "pinned"
	ResultRejected = "rejected"
)

// State is the content of the state file: what windows change at run time, and what each
// host presented last. Hosts are keyed by EK hash.
type State struct {
	Version int                   `json:"version"`
	Hosts   map[string]*HostState `json:"hosts"`
}

// HostState is the run-time state of one host.
type HostState struct {
	Pins   []*Pin     `json:"pins,omitempty"`
	Window *Window    `json:"window,omitempty"`
	Last   *Presented `json:"last,omitempty"`
}

// Pin is a boot state pinned as allowed through a window.
type Pin struct {
	Name     string    `json:"name"` // the pin time, RFC 3339 in UTC, unique per host
	PinnedAt time.Time `json:"pinned_at"`
	Bank     string    `json:"bank"`
	PCRs     PCRValues `json:"pcrs"`
}

// Window is an open window: the next unknown boot state before Until is pinned.
type Window struct {
	Opened time.Time `json:"opened"`
	Until  time.Time `json:"until"`
}

// Presented is the last boot state a host presented and what was decided.
type Presented struct {
	Time   time.Time `json:"time"`
	Bank   string    `json:"bank"`
	PCRs   PCRValues `json:"pcrs"`
	Result string    `json:"result"`           // ResultAllowed, ResultPinned or ResultRejected
	Policy string    `json:"policy,omitempty"` // Decision.Policy
	Set    string    `json:"set,omitempty"`    // Decision.Set
	Error  string    `json:"error,omitempty"`  // the rejection
	// Boot is what the replayed event log proved; nil when no log was replayed (and in
	// state files written before it was recorded).
	Boot *BootSummary `json:"boot,omitempty"`
}

// BootSummary is what a host's replayed event log proved, in short: the facts the boot
// rules read most.
type BootSummary struct {
	// SecureBoot is "enabled" or "disabled"; "" when the log proved no Secure Boot state.
	SecureBoot string `json:"secure_boot,omitempty"`
	// Kernel is the digest of the last PCR 4 boot application, BootLoaders those before
	// it (in the bank the log was replayed in first).
	Kernel      string   `json:"kernel,omitempty"`
	BootLoaders []string `json:"boot_loaders,omitempty"`
	// Authorities are the fingerprints of the certificates that verified the boot chain.
	Authorities   []string `json:"authorities,omitempty"`
	KernelCmdline string   `json:"kernel_cmdline,omitempty"`
}

// SummarizeBoot returns the summary of facts; nil when no log was replayed.
func SummarizeBoot(facts *verify.BootFacts) *BootSummary {
	if facts == nil || len(facts.Replayed) == 0 {
		return nil
	}
	b := &BootSummary{KernelCmdline: facts.KernelCmdline}
	if n := len(facts.BootApplications); n > 0 {
		b.Kernel = facts.BootApplications[n-1].Digest
		for _, a := range facts.BootApplications[:n-1] {
			b.BootLoaders = append(b.BootLoaders, a.Digest)
		}
	}
	if sb := facts.SecureBoot; sb != nil {
		b.SecureBoot = "disabled"
		if sb.Enabled {
			b.SecureBoot = "enabled"
		}
		b.Authorities = fingerprints(sb.Authorities)
	}
	return b
}

// PCRValues maps PCR index to digest; in JSON, decimal index to lower-case hex.
type PCRValues map[int][]byte

// MarshalJSON writes {"0": "hex", ...}.
func (v PCRValues) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(v))
	for i, d := range v {
		m[strconv.Itoa(i)] = hex.EncodeToString(d)
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads {"0": "hex", ...}; the digests are checked by ParseState.
func (v *PCRValues) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := make(PCRValues, len(m))
	for k, h := range m {
		i, ok := parseIndex(k)
		if !ok {
			return fmt.Errorf("PCR %q: want an index 0-23", k)
		}
		d, err := hex.DecodeString(h)
		if err != nil {
			return fmt.Errorf("PCR %s = %q: not hex", k, h)
		}
		if _, dup := out[i]; dup {
			return fmt.Errorf("PCR %d is given twice", i)
		}
		out[i] = d
	}
	*v = out
	return nil
}

// ParseState parses and checks a state file; filename is used in error messages only. A
// file over the size or nesting limit of limits.PolicyState is refused before it is
// decoded.
func ParseState(filename string, data []byte) (*State, error) {
	if err := limits.Check(filename, data, limits.PolicyState); err != nil {
		return nil, fmt.Errorf("policy: state file: %w", err)
	}
	return parseState(filename, data)
}

// parseState is ParseState for data that limits.ReadFile has already checked.
func parseState(filename string, data []byte) (*State, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("policy: state file %s is corrupt: %s (fix or move it away; it holds pins)", filename, fmt.Sprintf(format, args...))
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, bad("%v", err)
	}
	if dec.More() {
		return nil, bad("data after the JSON object")
	}
	if st.Version != StateVersion {
		return nil, bad("version %d, want %d", st.Version, StateVersion)
	}
	if st.Hosts == nil {
		st.Hosts = map[string]*HostState{}
	}
	for ek, hs := range st.Hosts {
		if !isEKHash(ek) || ek != lowerHex(ek) {
			return nil, bad("host %q: want an EK hash, 64 lower-case hex digits", ek)
		}
		if hs == nil {
			return nil, bad("host %s: null", ek)
		}
		names := map[string]bool{}
		for _, p := range hs.Pins {
			if p == nil {
				return nil, bad("host %s: null pin", ek)
			}
			if p.Name == "" || names[p.Name] {
				return nil, bad("host %s: pin name %q is empty or given twice", ek, p.Name)
			}
			names[p.Name] = true
			if err := checkValues(p.Bank, p.PCRs, false); err != nil {
				return nil, bad("host %s: pin %s: %v", ek, p.Name, err)
			}
		}
		if w := hs.Window; w != nil && w.Until.Before(w.Opened) {
			return nil, bad("host %s: window ends (%s) before it opens (%s)", ek, w.Until.Format(time.RFC3339), w.Opened.Format(time.RFC3339))
		}
		if l := hs.Last; l != nil {
			switch l.Result {
			case ResultAllowed, ResultPinned, ResultRejected:
			default:
				return nil, bad("host %s: last result %q", ek, l.Result)
			}
			if err := checkValues(l.Bank, l.PCRs, true); err != nil {
				return nil, bad("host %s: last presented: %v", ek, err)
			}
		}
	}
	// What was read must be writable again (time.Time refuses years past 9999).
	if _, err := json.Marshal(&st); err != nil {
		return nil, bad("%v", err)
	}
	return &st, nil
}

// checkValues checks a bank and PCR values; emptyOK allows no values at all.
func checkValues(bank string, pcrs PCRValues, emptyOK bool) error {
	size := DigestSize(bank)
	if size == 0 {
		return fmt.Errorf("bank %q: want sha1, sha256 or sha384", bank)
	}
	if len(pcrs) == 0 && !emptyOK {
		return errors.New("no PCR values")
	}
	for _, i := range sortedIndices(pcrs) {
		if i < 0 || i >= NumPCRs {
			return fmt.Errorf("PCR %d: want an index 0-23", i)
		}
		if len(pcrs[i]) != size {
			return fmt.Errorf("PCR %d is %d bytes, a %s digest is %d", i, len(pcrs[i]), bank, size)
		}
	}
	return nil
}

func sortedIndices[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for i := range m {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

func lowerHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// clone copies st as far as evaluate and AllowNext change it: the hosts and each host's
// fields (its pins, window and last presentation are replaced, never changed in place).
func (st *State) clone() *State {
	out := &State{Version: st.Version, Hosts: make(map[string]*HostState, len(st.Hosts))}
	for ek, hs := range st.Hosts {
		c := *hs
		c.Pins = slices.Clone(hs.Pins)
		out.Hosts[ek] = &c
	}
	return out
}

// readState reads the state file; a missing file is an empty state.
func readState(path string) (*State, error) {
	data, err := limits.ReadFile(path, limits.PolicyState)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: StateVersion, Hosts: map[string]*HostState{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy: reading state file: %w", err)
	}
	return parseState(path, data)
}

// writeState replaces the state file atomically (statefile.WriteAtomic). The caller holds
// the state lock.
func writeState(path string, st *State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("policy: encoding state: %w", err)
	}
	if err := statefile.WriteAtomic(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("policy: writing state file: %w", err)
	}
	return nil
}
