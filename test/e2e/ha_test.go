package e2e_test

// Two SPIRE servers, one address: a throwaway PostgreSQL cluster holds SPIRE's datastore
// (DataStore "sql", database_type "postgres") and the plugin's boot-state state
// (pcr_state_database), two SPIRE servers share both, and haproxy is the one address the
// agents know. Each server keeps its own CA key (KeyManager "disk"); on the shared
// datastore each publishes its CA in the trust bundle, so agents trust both.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/haproxytest"
	"omens.dev/omens/internal/test/pgtest"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/spireconf"
)

// haTower is two SPIRE servers on one PostgreSQL cluster behind haproxy.
type haTower struct {
	pg         *pgtest.Cluster
	servers    [2]*spiretest.Server
	lb         *haproxytest.Proxy
	policyPath string
	pcrDB      string // the plugin's pcr_state_database
}

// startHA starts the tower for hosts (their boot states allowed by a policy of their own).
func startHA(t *testing.T, agentTTL string, hosts ...*simHost) *haTower {
	t.Helper()
	requireEngines(t)
	h := &haTower{pg: pgtest.Start(t)}
	spireDB := h.pg.CreateDB(t, "spire")
	h.pcrDB = h.pg.CreateDB(t, "pcr")
	h.policyPath = writeHostsPolicy(t, t.TempDir(), hosts...)
	ds := spireconf.Postgres(spireDB)
	for i := range h.servers {
		h.servers[i] = spiretest.StartServer(t, spiretest.ServerConfig{
			DataStore: &ds,
			NodeAttestors: tpmServerAttestors(t, bundleDir(t, hosts...), h.policyPath,
				spireconf.Setting{Key: "pcr_state_database", Value: h.pcrDB}),
			AgentTTL: agentTTL,
		})
	}
	h.lb = haproxytest.Start(t, h.servers[0].Address, h.servers[1].Address)
	// Both CAs are in the bundle the agents start from, whichever server shows it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(h.servers[1].BundlePath(t))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "BEGIN CERTIFICATE"); n >= 2 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the trust bundle holds %d CA certificates, want both servers'", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return h
}

// agent starts a SPIRE agent on host, whose server address is haproxy's.
func (h *haTower) agent(t *testing.T, host *simHost) *spiretest.Agent {
	t.Helper()
	return spiretest.StartAgent(t, h.servers[0], spiretest.AgentConfig{Name: host.name, ServerAddress: h.lb.Address, NodeAttestor: tpmAgentAttestor(t, host.socket)})
}

// writeHostsPolicy allows each host's current boot state as a set of its own.
func writeHostsPolicy(t *testing.T, dir string, hosts ...*simHost) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("unknown_hosts = \"reject\"\n")
	for _, host := range hosts {
		p := host.pcrs(t)
		fmt.Fprintf(&b, "host %q {\n  name = %q\n  set \"firmware-1.0\" {\n    bank = \"sha256\"\n    pcrs = { \"0\" = %q, \"2\" = %q, \"4\" = %q, \"7\" = %q }\n  }\n}\n",
			host.ekHash(t), host.name, p[0], p[2], p[4], p[7])
	}
	path := filepath.Join(dir, "pcr-policy.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// decisions returns the audit lines of the server log after skip bytes that are about
// EK ek and hold substr.
func decisions(s *spiretest.Server, skip int, ek, substr string) []string {
	log := s.Log()
	if skip > len(log) {
		skip = len(log)
	}
	var out []string
	for _, l := range strings.Split(log[skip:], "\n") {
		if strings.Contains(l, "tpm attestation") && strings.Contains(l, "ek_hash="+ek) && strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// waitDecision waits until one of the servers logs, after skip[i], a decision about ek
// holding substr, and returns that server's index.
func (h *haTower) waitDecision(t *testing.T, skip [2]int, ek, substr string, timeout time.Duration, only ...int) int {
	t.Helper()
	which := []int{0, 1}
	if len(only) > 0 {
		which = only
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, i := range which {
			if len(decisions(h.servers[i], skip[i], ek, substr)) > 0 {
				return i
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no server %v logged a decision about %s holding %q within %s", which, ek, substr, timeout)
	return -1
}

func (h *haTower) logSizes() [2]int { return [2]int{len(h.servers[0].Log()), len(h.servers[1].Log())} }

// TestHAWindowAcrossServers: a window opened once (in the shared database) is honored by
// whichever server the host reaches: the new boot state is pinned once, and the other
// server accepts it under that pin after the first one is killed.
func TestHAWindowAcrossServers(t *testing.T) {
	auth := startSimHost(t, "auth")
	h := startHA(t, "20s", auth)
	ek := auth.ekHash(t)
	h.agent(t, auth)

	omens(t, "pcr", "allow-next", "--policy", h.policyPath, "--database", h.pcrDB, "--host", "auth", "--for", "1h")
	skip := h.logSizes()
	omens(t, "tpm", "reboot", "--socket", auth.socket, "--set", "0=firmware 2.0")
	// The agent re-attests at about half its 20s TTL.
	pinner := h.waitDecision(t, skip, ek, "pinned as pinned/", 90*time.Second)
	other := 1 - pinner
	pinLine := decisions(h.servers[pinner], skip[pinner], ek, "pinned as pinned/")[0]
	set := pinLine[strings.Index(pinLine, "pcr_policy=")+len("pcr_policy="):]
	set = strings.Fields(set)[0]
	t.Logf("server %d pinned %s", pinner, set)

	// The server that pinned dies; the host reaches the other, which accepts the new boot
	// state under the pin and pins nothing more.
	h.servers[pinner].Kill(t)
	skip = h.logSizes()
	h.waitDecision(t, skip, ek, "result=accepted", 90*time.Second, other)
	if got := decisions(h.servers[other], skip[other], ek, "result=accepted")[0]; !strings.Contains(got, "pcr_policy="+set) {
		t.Fatalf("server %d accepted the host under another set:\n%s", other, got)
	}
	pins := 0
	for _, s := range h.servers {
		pins += len(decisions(s, 0, ek, "pinned as pinned/"))
	}
	if pins != 1 {
		t.Fatalf("%d pins logged across both servers, want 1", pins)
	}
	show := omens(t, "pcr", "policy", "show", "--policy", h.policyPath, "--database", h.pcrDB)
	if strings.Count(show, "pinned/") != 2 { // the set in "Allowed sets", and in the host's row
		t.Fatalf("policy show from the database:\n%s", show)
	}
	t.Logf("omens pcr policy show --database ...\n%s", show)
}

// TestHAFailover: one server is killed while agents attest; no agent is lost, and agents
// whose SVIDs are valid do not re-attest: they carry on through the other server.
func TestHAFailover(t *testing.T) {
	hosts := []*simHost{startSimHost(t, "spire"), startSimHost(t, "auth"), startSimHost(t, "ca"), startSimHost(t, "late")}
	// Agent SVIDs of an hour: no agent renews (and so re-attests) during the test, so each
	// attestation after the kill is one the failover caused.
	h := startHA(t, "1h", hosts...)
	var agents []*spiretest.Agent
	for _, host := range hosts[:3] {
		agents = append(agents, h.agent(t, host))
	}
	served := [2]int{}
	for i, s := range h.servers {
		served[i] = strings.Count(s.Log(), "tpm attestation accepted")
	}
	t.Logf("attestations before the kill: server 0 %d, server 1 %d", served[0], served[1])

	skip := h.logSizes()
	// One agent attests while a server dies.
	late := spiretest.LaunchAgent(t, h.servers[0], spiretest.AgentConfig{Name: hosts[3].name, ServerAddress: h.lb.Address, NodeAttestor: tpmAgentAttestor(t, hosts[3].socket)})
	h.servers[0].Kill(t)
	late.WaitHealthy(t)
	agents = append(agents, late)
	survivor := h.servers[1]

	// Every agent works through the survivor: an entry created after the kill reaches
	// each one, and each holds an SVID for it.
	for i, host := range hosts {
		alias := "spiffe://funlab.casa/agent/" + host.name
		survivor.CreateNodeAlias(t, alias, "tpm:pub_hash:"+host.ekHash(t))
		id := "spiffe://funlab.casa/after-failover/" + host.name
		survivor.CreateEntry(t, alias, id, fmt.Sprintf("unix:uid:%d", os.Getuid()))
		if _, err := spiretest.WaitX509SVID(t, agents[i].WorkloadSocket, id, 90*time.Second); err != nil {
			t.Fatalf("agent %s after the kill: %v", host.name, err)
		}
	}
	listed := map[string]bool{}
	for _, a := range survivor.Agents(t) {
		listed[a.ID] = true
	}
	reattested := 0
	for _, host := range hosts {
		if !listed["spiffe://funlab.casa/spire/agent/tpm/"+host.ekHash(t)] {
			t.Errorf("agent of %s is not listed by the survivor", host.name)
		}
	}
	for _, host := range hosts[:3] {
		reattested += len(decisions(survivor, skip[1], host.ekHash(t), "result=accepted"))
	}
	t.Logf("re-attestations caused by the kill: %d of %d agents with valid SVIDs; the agent attesting during the kill: %d attestation(s) on the survivor",
		reattested, 3, len(decisions(survivor, skip[1], hosts[3].ekHash(t), "result=accepted")))
	if reattested != 0 {
		t.Errorf("%d re-attestations by agents whose SVIDs were valid, want 0", reattested)
	}
}
