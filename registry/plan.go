package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// HintPrefix starts the hint of every entry that omens manages (see the package
// documentation). Entries without it are hand-made: Plan never changes or prunes them.
const HintPrefix = "omens:"

// Hint is the hint of the entry made for the inventory's host or workload called name.
func Hint(kind, name string) string { return HintPrefix + kind + ":" + name }

// Kinds of inventory blocks, as they appear in hints and in Change.Kind.
const (
	KindHost     = "host"
	KindWorkload = "workload"
)

// Action is what a plan does to one entry.
type Action string

// The actions of a plan.
const (
	Create    Action = "create"
	Update    Action = "update"
	Delete    Action = "delete"
	Unchanged Action = "unchanged"
	// Stale marks a managed entry that the inventory no longer names, kept because the
	// plan does not prune.
	Stale Action = "stale"
)

// Change is one entry in a plan: what the inventory wants of it and what the server has.
type Change struct {
	Action Action `json:"action"`
	Kind   string `json:"kind,omitempty"` // KindHost or KindWorkload
	Name   string `json:"name,omitempty"` // the host or workload name
	// EntryID is the server's entry ID; empty for a creation.
	EntryID  string `json:"entry_id,omitempty"`
	SPIFFEID string `json:"spiffe_id"`
	ParentID string `json:"parent_id"`
	// Selectors are the selectors the entry gets (for a deletion, those it has), sorted.
	Selectors []string `json:"selectors"`
	Hint      string   `json:"hint"`
	// OldSelectors and OldHint are what an updated entry has now.
	OldSelectors []string `json:"old_selectors,omitempty"`
	OldHint      string   `json:"old_hint,omitempty"`
	// Adopt is set when the update takes over a hand-made entry that has exactly the
	// inventory's selectors, by giving it an omens hint.
	Adopt bool `json:"adopt,omitempty"`
}

// Plan is the difference between an inventory and a SPIRE server's entries.
type Plan struct {
	TrustDomain string `json:"trust_domain"`
	Prune       bool   `json:"prune"`
	// Changes are the inventory's entries in file order (hosts first), then deletions.
	Changes []Change `json:"changes"`
	// Stale are managed entries that the inventory no longer names, left alone because
	// the plan does not prune.
	Stale []Change `json:"stale,omitempty"`
}

// OnlyHost returns the plan of host's node alias alone: its change, nothing else.
func (p *Plan) OnlyHost(host string) *Plan {
	out := &Plan{TrustDomain: p.TrustDomain}
	for _, ch := range p.Changes {
		if ch.Kind == KindHost && ch.Name == host && ch.Action != Delete {
			out.Changes = append(out.Changes, ch)
		}
	}
	return out
}

// Count returns how many changes have action a.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// HasChanges reports whether applying the plan would change anything.
func (p *Plan) HasChanges() bool {
	return len(p.Changes) > p.Count(Unchanged)
}

// Summary is one line that counts the changes.
func (p *Plan) Summary() string {
	if !p.HasChanges() {
		return fmt.Sprintf("no changes: %d entries unchanged", p.Count(Unchanged))
	}
	return fmt.Sprintf("%d to create, %d to update, %d to delete, %d unchanged",
		p.Count(Create), p.Count(Update), p.Count(Delete), p.Count(Unchanged))
}

// String renders the plan as a diff: a line per entry, marked "+ create", "~ update",
// "- delete" or "= unchanged", with its parent and selectors (or what changes) under it;
// then the stale entries that only --prune would delete; then the summary line.
func (p *Plan) String() string {
	var b strings.Builder
	for _, c := range p.Changes {
		writeChange(&b, c)
	}
	for _, c := range p.Stale {
		fmt.Fprintf(&b, "! stale     %s%s: managed by omens, no longer in the inventory (--prune deletes it)\n", c.SPIFFEID, label(c))
	}
	b.WriteString(p.Summary())
	b.WriteString("\n")
	return b.String()
}

var marks = map[Action]string{Create: "+", Update: "~", Delete: "-", Unchanged: "="}

func label(c Change) string {
	if c.Kind == "" {
		return ""
	}
	return fmt.Sprintf(" (%s %s)", c.Kind, c.Name)
}

func writeChange(b *strings.Builder, c Change) {
	fmt.Fprintf(b, "%s %-9s %s%s\n", marks[c.Action], c.Action, c.SPIFFEID, label(c))
	detail := func(key, format string, args ...any) {
		fmt.Fprintf(b, "      %-10s %s\n", key, fmt.Sprintf(format, args...))
	}
	switch c.Action {
	case Create, Delete:
		detail("parent", "%s", c.ParentID)
		detail("selectors", "%s", strings.Join(c.Selectors, ", "))
		if c.EntryID != "" {
			detail("entry", "%s", c.EntryID)
		}
	case Update:
		detail("entry", "%s", c.EntryID)
		if c.Adopt {
			detail("adopt", "hand-made entry with the same selectors; sets hint %s", c.Hint)
		} else if c.Hint != c.OldHint {
			detail("hint", "%q -> %q", c.OldHint, c.Hint)
		}
		for _, s := range c.OldSelectors {
			if !slices.Contains(c.Selectors, s) {
				detail("selector", "- %s", s)
			}
		}
		for _, s := range c.Selectors {
			if !slices.Contains(c.OldSelectors, s) {
				detail("selector", "+ %s", s)
			}
		}
	}
}

// desired is one entry that the inventory asks for.
type desired struct {
	kind, name, spiffeID, parentID, hint string
	selectors                            []string // sorted
}

// wanted lists the inventory's entries: node aliases, then workloads.
func (inv *Inventory) wanted() []desired {
	var out []desired
	for _, h := range inv.Hosts {
		out = append(out, desired{
			kind: KindHost, name: h.Name,
			spiffeID: inv.AliasID(h.Name), parentID: inv.ServerID(),
			hint: Hint(KindHost, h.Name), selectors: sortedSet(h.NodeSelectors()),
		})
	}
	for _, w := range inv.Workloads {
		out = append(out, desired{
			kind: KindWorkload, name: w.Name,
			spiffeID: w.SPIFFEID, parentID: inv.AliasID(w.Host),
			hint: Hint(KindWorkload, w.Name), selectors: sortedSet(w.Selectors),
		})
	}
	return out
}

func sortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// current is an entry on the server, in the plan's terms.
type current struct {
	id, spiffeID, parentID, hint string
	selectors                    []string // sorted
}

func (e current) managed() bool { return strings.HasPrefix(e.hint, HintPrefix) }

// Plan compares the inventory with the server's entries. With prune, managed entries that
// the inventory no longer names are deleted; without it they are listed as Stale.
func (c *Client) Plan(ctx context.Context, inv *Inventory, prune bool) (*Plan, error) {
	entries, err := c.listEntries(ctx)
	if err != nil {
		return nil, err
	}
	return diff(inv, entries, prune), nil
}

// diff is Plan on a listing of the server's entries.
func diff(inv *Inventory, entries []current, prune bool) *Plan {
	p := &Plan{TrustDomain: inv.TrustDomain, Prune: prune}
	byKey := map[[2]string][]current{}
	for _, e := range entries {
		k := [2]string{e.parentID, e.spiffeID}
		byKey[k] = append(byKey[k], e)
	}
	used := map[string]bool{}
	for _, d := range inv.wanted() {
		ch := Change{Kind: d.kind, Name: d.name, SPIFFEID: d.spiffeID, ParentID: d.parentID, Selectors: d.selectors, Hint: d.hint}
		e, found := pick(d, byKey[[2]string{d.parentID, d.spiffeID}], used)
		switch {
		case !found:
			ch.Action = Create
		case slices.Equal(e.selectors, d.selectors) && e.hint == d.hint:
			ch.Action = Unchanged
		default:
			ch.Action = Update
			ch.OldSelectors, ch.OldHint, ch.Adopt = e.selectors, e.hint, !e.managed()
		}
		if found {
			ch.EntryID = e.id
			used[e.id] = true
		}
		p.Changes = append(p.Changes, ch)
	}
	for _, e := range entries {
		if used[e.id] || !e.managed() {
			continue
		}
		ch := Change{Action: Delete, EntryID: e.id, SPIFFEID: e.spiffeID, ParentID: e.parentID, Selectors: e.selectors, Hint: e.hint}
		if kind, name, ok := strings.Cut(strings.TrimPrefix(e.hint, HintPrefix), ":"); ok {
			ch.Kind, ch.Name = kind, name
		}
		if prune {
			p.Changes = append(p.Changes, ch)
		} else {
			ch.Action = Stale
			p.Stale = append(p.Stale, ch)
		}
	}
	return p
}

// pick chooses, among the server's entries with d's parent and SPIFFE ID, the one that
// stands for d: a managed entry (best one with d's selectors and hint), or else a
// hand-made entry with exactly d's selectors, which d adopts. Other hand-made entries are
// never chosen: d is created beside them.
func pick(d desired, cands []current, used map[string]bool) (current, bool) {
	score := func(e current) int {
		if used[e.id] {
			return -1
		}
		same := slices.Equal(e.selectors, d.selectors)
		switch {
		case !e.managed() && !same:
			return -1
		case !e.managed():
			return 0
		}
		s := 1
		if same {
			s += 2
		}
		if e.hint == d.hint {
			s++
		}
		return s
	}
	best, bestScore := current{}, -1
	for _, e := range cands {
		if s := score(e); s > bestScore {
			best, bestScore = e, s
		}
	}
	return best, bestScore >= 0
}

// listPageSize is the page size of ListEntries and ListAgents.
const listPageSize = 500

// listEntries lists every entry on the server, page by page.
func (c *Client) listEntries(ctx context.Context) ([]current, error) {
	var out []current
	token := ""
	for {
		resp, err := c.entries.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: listPageSize, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("registry: list entries: %w", err)
		}
		for _, e := range resp.Entries {
			out = append(out, current{
				id:        e.Id,
				spiffeID:  idString(e.SpiffeId),
				parentID:  idString(e.ParentId),
				hint:      e.Hint,
				selectors: sortedSet(selectorStrings(e.Selectors)),
			})
		}
		token = resp.NextPageToken
		if token == "" {
			return out, nil
		}
	}
}

func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.TrustDomain + id.Path
}

func selectorStrings(sels []*types.Selector) []string {
	out := make([]string, 0, len(sels))
	for _, s := range sels {
		out = append(out, s.Type+":"+s.Value)
	}
	return out
}

func selectorProtos(sels []string) []*types.Selector {
	out := make([]*types.Selector, 0, len(sels))
	for _, s := range sels {
		typ, val, _ := strings.Cut(s, ":")
		out = append(out, &types.Selector{Type: typ, Value: val})
	}
	return out
}

// batchSize bounds the entries of one batch request.
const batchSize = 50

// Apply carries out the plan: deletions, then updates (selectors and hint, with
// BatchUpdateEntry), then creations. It goes on past a failed entry and returns every
// failure, each naming its entry.
func (c *Client) Apply(ctx context.Context, p *Plan) error {
	var dels, upds, creates []Change
	for _, ch := range p.Changes {
		switch ch.Action {
		case Delete:
			dels = append(dels, ch)
		case Update:
			upds = append(upds, ch)
		case Create:
			creates = append(creates, ch)
		}
	}
	var errs []error
	for batch := range slices.Chunk(dels, batchSize) {
		req := &entryv1.BatchDeleteEntryRequest{}
		for _, ch := range batch {
			req.Ids = append(req.Ids, ch.EntryID)
		}
		resp, err := c.entries.BatchDeleteEntry(ctx, req)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("registry: delete entries: %w", err))...)
		}
		errs = append(errs, results(batch, resp.Results, func(r *entryv1.BatchDeleteEntryResponse_Result) *types.Status { return r.Status })...)
	}
	for batch := range slices.Chunk(upds, batchSize) {
		req := &entryv1.BatchUpdateEntryRequest{InputMask: &types.EntryMask{Selectors: true, Hint: true}}
		for _, ch := range batch {
			req.Entries = append(req.Entries, &types.Entry{Id: ch.EntryID, Selectors: selectorProtos(ch.Selectors), Hint: ch.Hint})
		}
		resp, err := c.entries.BatchUpdateEntry(ctx, req)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("registry: update entries: %w", err))...)
		}
		errs = append(errs, results(batch, resp.Results, func(r *entryv1.BatchUpdateEntryResponse_Result) *types.Status { return r.Status })...)
	}
	for batch := range slices.Chunk(creates, batchSize) {
		req := &entryv1.BatchCreateEntryRequest{}
		for _, ch := range batch {
			e, err := entryProto(ch)
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			req.Entries = append(req.Entries, e)
		}
		resp, err := c.entries.BatchCreateEntry(ctx, req)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("registry: create entries: %w", err))...)
		}
		errs = append(errs, results(batch, resp.Results, func(r *entryv1.BatchCreateEntryResponse_Result) *types.Status { return r.Status })...)
	}
	return errors.Join(errs...)
}

func entryProto(ch Change) (*types.Entry, error) {
	id, err := ParseID(ch.SPIFFEID)
	if err != nil {
		return nil, err
	}
	parent, err := ParseID(ch.ParentID)
	if err != nil {
		return nil, err
	}
	return &types.Entry{SpiffeId: id, ParentId: parent, Selectors: selectorProtos(ch.Selectors), Hint: ch.Hint}, nil
}

// results turns the per-entry statuses of a batch into errors naming the entries.
func results[R any](batch []Change, rs []R, status func(R) *types.Status) []error {
	var errs []error
	if len(rs) != len(batch) {
		return []error{fmt.Errorf("registry: %d results for %d entries", len(rs), len(batch))}
	}
	for i, r := range rs {
		st := status(r)
		if st == nil || st.Code == 0 {
			continue
		}
		ch := batch[i]
		errs = append(errs, fmt.Errorf("registry: %s %s%s: %s (code %d)", ch.Action, ch.SPIFFEID, label(ch), st.Message, st.Code))
	}
	return errs
}
