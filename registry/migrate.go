package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
)

// Method is how an agent attested, in the terms of the move off join tokens.
type Method string

// The attestation methods.
const (
	// MethodJoinToken is SPIRE's join_token attestor: what the Tower starts on.
	MethodJoinToken Method = "join_token"
	// MethodTPMEK is NodeAttestor "tpm" proving the TPM by its EK alone.
	MethodTPMEK Method = "tpm-ek"
	// MethodTPMDevID is NodeAttestor "tpm" with a DevID certificate (its selectors hold
	// tpm:devid:subject:…), or SPIRE's own tpm_devid attestor.
	MethodTPMDevID Method = "tpm-devid"
	// MethodOther is any other attestor.
	MethodOther Method = "other"
)

// TPM reports whether m is an attestation rooted in a TPM.
func (m Method) TPM() bool { return m == MethodTPMEK || m == MethodTPMDevID }

// Classify names the method of an agent from its attestation type (the node attestor's
// name) and its selectors ("type:value").
func Classify(attestationType string, selectors []string) Method {
	switch attestationType {
	case "join_token":
		return MethodJoinToken
	case "tpm_devid":
		return MethodTPMDevID
	case "tpm":
		for _, s := range selectors {
			if strings.HasPrefix(s, "tpm:devid:subject:") {
				return MethodTPMDevID
			}
		}
		return MethodTPMEK
	}
	return MethodOther
}

// Agent is an attested agent as the SPIRE server lists it.
type Agent struct {
	ID              string    `json:"id"`
	AttestationType string    `json:"attestation_type"`
	Method          Method    `json:"method"`
	Host            string    `json:"host,omitempty"` // "" when no host could be matched
	Selectors       []string  `json:"selectors"`
	Banned          bool      `json:"banned"`
	ExpiresAt       time.Time `json:"svid_expires_at"`
}

// Live reports whether the agent can get SVIDs now: not banned, and its own SVID not
// expired.
func (a *Agent) Live(now time.Time) bool {
	return !a.Banned && (a.ExpiresAt.IsZero() || now.Before(a.ExpiresAt))
}

// Agents lists the attested agents (ListAgents, page by page) with their methods. Each
// agent's host is the inventory host that its selectors match (EK hash or DevID
// subject); without an inventory, or failing that, the name of a node alias
// spiffe://<td>/agent/<name> that the agent has: an entry parented on the agent itself
// (a join token generated with -spiffeID), or a node entry whose selectors the agent has.
// inv may be nil.
func (c *Client) Agents(ctx context.Context, inv *Inventory) ([]Agent, error) {
	var agents []Agent
	token := ""
	for {
		resp, err := c.agents.ListAgents(ctx, &agentv1.ListAgentsRequest{PageSize: listPageSize, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("registry: list agents: %w", err)
		}
		for _, a := range resp.Agents {
			sels := selectorStrings(a.Selectors)
			ag := Agent{
				ID:              idString(a.Id),
				AttestationType: a.AttestationType,
				Method:          Classify(a.AttestationType, sels),
				Selectors:       sels,
				Banned:          a.Banned,
			}
			if a.X509SvidExpiresAt > 0 {
				ag.ExpiresAt = time.Unix(a.X509SvidExpiresAt, 0).UTC()
			}
			agents = append(agents, ag)
		}
		token = resp.NextPageToken
		if token == "" {
			break
		}
	}
	var entries []current
	for i := range agents {
		a := &agents[i]
		if inv != nil {
			if h := inv.HostOf(a.Selectors); h != nil {
				a.Host = h.Name
				continue
			}
		}
		if entries == nil {
			var err error
			if entries, err = c.listEntries(ctx); err != nil {
				return nil, err
			}
		}
		a.Host = aliasHost(*a, entries)
	}
	slices.SortFunc(agents, func(x, y Agent) int {
		if c := strings.Compare(x.Host, y.Host); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return agents, nil
}

// aliasHost returns NAME from a node alias spiffe://<td>/agent/NAME that the agent has,
// or "".
func aliasHost(a Agent, entries []current) string {
	td, _, _ := strings.Cut(strings.TrimPrefix(a.ID, "spiffe://"), "/")
	prefix := "spiffe://" + td + "/agent/"
	server := "spiffe://" + td + "/spire/server"
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.spiffeID, prefix)
		if !ok || name == "" || strings.Contains(name, "/") {
			continue
		}
		if e.parentID == a.ID {
			return name
		}
		if e.parentID == server && len(e.selectors) > 0 && subset(e.selectors, a.Selectors) {
			return name
		}
	}
	return ""
}

func subset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

// HostStatus is where one inventory host stands in the move off join tokens.
type HostStatus struct {
	Name string `json:"name"`
	// TPMAgents are the IDs of its live TPM-attested agents.
	TPMAgents []string `json:"tpm_agents"`
	// JoinTokenAgents are the IDs of its join-token agents that are not banned.
	JoinTokenAgents []string `json:"join_token_agents"`
}

// Migration is the state of the move off join tokens.
type Migration struct {
	Agents []Agent `json:"agents"`
	// Hosts holds each inventory host, in inventory order; empty without an inventory.
	Hosts []HostStatus `json:"hosts,omitempty"`
}

// Pending returns the inventory hosts that have no live TPM-attested agent.
func (m *Migration) Pending() []string {
	var out []string
	for _, h := range m.Hosts {
		if len(h.TPMAgents) == 0 {
			out = append(out, h.Name)
		}
	}
	return out
}

// JoinTokenAgents returns the join-token agents that are not banned yet.
func (m *Migration) JoinTokenAgents() []Agent {
	var out []Agent
	for _, a := range m.Agents {
		if a.Method == MethodJoinToken && !a.Banned {
			out = append(out, a)
		}
	}
	return out
}

// Migration lists the agents and, with an inventory, where each of its hosts stands.
// inv may be nil.
func (c *Client) Migration(ctx context.Context, inv *Inventory, now time.Time) (*Migration, error) {
	agents, err := c.Agents(ctx, inv)
	if err != nil {
		return nil, err
	}
	m := &Migration{Agents: agents}
	if inv == nil {
		return m, nil
	}
	for _, h := range inv.Hosts {
		hs := HostStatus{Name: h.Name, TPMAgents: []string{}, JoinTokenAgents: []string{}}
		for _, a := range agents {
			switch {
			case a.Host != h.Name:
			case a.Method.TPM() && a.Live(now):
				hs.TPMAgents = append(hs.TPMAgents, a.ID)
			case a.Method == MethodJoinToken && !a.Banned:
				hs.JoinTokenAgents = append(hs.JoinTokenAgents, a.ID)
			}
		}
		m.Hosts = append(m.Hosts, hs)
	}
	return m, nil
}

// NotReadyError is FinishMigration's refusal: hosts of the inventory with no live
// TPM-attested agent.
type NotReadyError struct {
	Hosts []HostStatus
}

func (e *NotReadyError) Error() string {
	var parts []string
	for _, h := range e.Hosts {
		what := "no agent"
		if len(h.JoinTokenAgents) > 0 {
			what = "only a join-token agent"
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", h.Name, what))
	}
	return fmt.Sprintf("registry: refusing to finish the migration: %d host(s) have no TPM-attested agent yet: %s; move them to NodeAttestor \"tpm\" first (see `omens migrate status`)",
		len(e.Hosts), strings.Join(parts, ", "))
}

// FinishMigration checks that every inventory host has a live TPM-attested agent, and
// then bans (and so evicts) every join-token agent that is not banned yet. It returns the
// agents it banned, or a *NotReadyError, banning nothing, while a host is not ready.
func (c *Client) FinishMigration(ctx context.Context, inv *Inventory, now time.Time) ([]Agent, error) {
	m, err := c.Migration(ctx, inv, now)
	if err != nil {
		return nil, err
	}
	if pending := m.Pending(); len(pending) > 0 {
		ne := &NotReadyError{}
		for _, h := range m.Hosts {
			if slices.Contains(pending, h.Name) {
				ne.Hosts = append(ne.Hosts, h)
			}
		}
		return nil, ne
	}
	var banned []Agent
	for _, a := range m.JoinTokenAgents() {
		if err := c.BanAgent(ctx, a.ID); err != nil {
			return banned, err
		}
		a.Banned = true
		banned = append(banned, a)
	}
	return banned, nil
}
