package policy

import (
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Report is what is allowed (groups, hosts, sets, pins, windows) and what each host last
// presented.
type Report struct {
	PolicyFile   string        `json:"policy_file"`
	StateFile    string        `json:"state_file"`
	UnknownHosts string        `json:"unknown_hosts"`
	Groups       []GroupReport `json:"groups"`
	Hosts        []HostReport  `json:"hosts"` // hosts of the policy file in file order, then others by EK hash
}

// GroupReport is a group and its sets.
type GroupReport struct {
	Name string      `json:"name"`
	Sets []SetReport `json:"sets"`
	Boot *BootRules  `json:"boot,omitempty"`
}

// SetReport is an allowed set.
type SetReport struct {
	Name     string            `json:"name"` // as in Decision.Set: "tower/firmware-1.0", "host/lab", "pinned/2026-11-29T10:00:00Z"
	Bank     string            `json:"bank"`
	PCRs     map[string]string `json:"pcrs"` // decimal index -> hex
	PinnedAt *time.Time        `json:"pinned_at,omitempty"`
}

// HostReport is one host: listed in the policy file, or only seen (in the state file).
type HostReport struct {
	EKHash   string           `json:"ek_hash"`
	Name     string           `json:"name,omitempty"`
	InPolicy bool             `json:"in_policy"`
	Group    string           `json:"group,omitempty"` // for a host not in the file: the unknown_hosts group, if any
	Sets     []SetReport      `json:"sets,omitempty"`  // the host's own sets
	Boot     *BootRules       `json:"boot,omitempty"`  // the host's own boot rules
	Pins     []SetReport      `json:"pins,omitempty"`
	Window   *WindowReport    `json:"window,omitempty"`
	Last     *PresentedReport `json:"last,omitempty"`
}

// WindowReport is a host's window; Open is false once it has expired.
type WindowReport struct {
	Opened time.Time `json:"opened"`
	Until  time.Time `json:"until"`
	Open   bool      `json:"open"`
}

// PresentedReport is the last boot state a host presented.
type PresentedReport struct {
	Time   time.Time         `json:"time"`
	Bank   string            `json:"bank"`
	PCRs   map[string]string `json:"pcrs"`
	Result string            `json:"result"`
	Policy string            `json:"policy,omitempty"`
	Set    string            `json:"set,omitempty"`
	Error  string            `json:"error,omitempty"`
	// Boot is what the host's replayed event log proved, when there was one.
	Boot *BootSummary `json:"boot,omitempty"`
}

func hexMap(pcrs map[int][]byte) map[string]string {
	out := make(map[string]string, len(pcrs))
	for i, v := range pcrs {
		out[strconv.Itoa(i)] = hex.EncodeToString(v)
	}
	return out
}

func setReport(prefix string, s *Set) SetReport {
	return SetReport{Name: prefix + "/" + s.Name, Bank: s.Bank, PCRs: hexMap(s.PCRs)}
}

// Report: what is allowed (groups, hosts, sets, pins, windows) and what each host last
// presented. now decides which windows are still open.
func (s *Store) Report(now time.Time) (*Report, error) {
	pol, err := s.Policy()
	if err != nil {
		return nil, err
	}
	st, err := s.state.read()
	if err != nil {
		return nil, err
	}
	r := &Report{PolicyFile: s.policyPath, StateFile: s.state.where(), UnknownHosts: pol.UnknownHosts, Groups: []GroupReport{}, Hosts: []HostReport{}}
	for _, g := range pol.Groups {
		gr := GroupReport{Name: g.Name, Sets: []SetReport{}, Boot: g.Boot}
		for _, set := range g.Sets {
			gr.Sets = append(gr.Sets, setReport(g.Name, set))
		}
		r.Groups = append(r.Groups, gr)
	}
	addState := func(hr *HostReport, hs *HostState) {
		if hs == nil {
			return
		}
		for _, p := range hs.Pins {
			sr := setReport(PolicyPinned, &Set{Name: p.Name, Bank: p.Bank, PCRs: p.PCRs})
			at := p.PinnedAt
			sr.PinnedAt = &at
			hr.Pins = append(hr.Pins, sr)
		}
		if w := hs.Window; w != nil {
			hr.Window = &WindowReport{Opened: w.Opened, Until: w.Until, Open: now.Before(w.Until)}
		}
		if l := hs.Last; l != nil {
			hr.Last = &PresentedReport{Time: l.Time, Bank: l.Bank, PCRs: hexMap(l.PCRs), Result: l.Result, Policy: l.Policy, Set: l.Set, Error: l.Error, Boot: l.Boot}
		}
	}
	for _, h := range pol.Hosts {
		hr := HostReport{EKHash: h.EKHash, Name: h.Name, InPolicy: true, Group: h.Group, Boot: h.Boot}
		for _, set := range h.Sets {
			hr.Sets = append(hr.Sets, setReport(PolicyHost, set))
		}
		addState(&hr, st.Hosts[h.EKHash])
		r.Hosts = append(r.Hosts, hr)
	}
	var others []string
	for ek := range st.Hosts {
		if pol.hosts[ek] == nil {
			others = append(others, ek)
		}
	}
	sort.Strings(others)
	for _, ek := range others {
		hr := HostReport{EKHash: ek}
		if pol.UnknownHosts != Reject {
			hr.Group = pol.UnknownHosts
		}
		addState(&hr, st.Hosts[ek])
		r.Hosts = append(r.Hosts, hr)
	}
	return r, nil
}

// SortedPCRs returns the keys of a report's PCR map in numeric order.
func SortedPCRs(pcrs map[string]string) []string {
	keys := make([]string, 0, len(pcrs))
	for k := range pcrs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return keys
}
