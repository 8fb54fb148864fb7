package e2e_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// logSince returns the lines of log after its first skip bytes that hold every one of
// substrs.
func logSince(log string, skip int, substrs ...string) []string {
	var out []string
	for _, l := range strings.Split(log[min(skip, len(log)):], "\n") {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(l, s)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// wantLogged fails the test unless log, after skip, has a line holding every substring.
func wantLogged(t *testing.T, who, log string, skip int, substrs ...string) {
	t.Helper()
	if len(logSince(log, skip, substrs...)) == 0 {
		t.Errorf("%s did not log a line with %q; it logged:\n%s", who, substrs, strings.Join(logSince(log, skip), "\n"))
	}
}

// storedSVID reports whether the stopped agent keeps an SVID in its data directory (SPIRE
// 1.13's agent-data.json).
func storedSVID(t *testing.T, a *spiretest.Agent) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.Dir, "data", "agent-data.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		SVID [][]byte `json:"svid"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatalf("agent-data.json: %v", err)
	}
	return len(data.SVID) > 0
}

// TestBannedAgentStaysOut is SPIRE's ban (`spire-server agent ban`) of an EK-mode agent
// with re-attestation on (the tpm plugin's CanReattest), on real SPIRE v1.13.3.
//
// An agent's ID is the hash of its EK, the same at every attestation of the chip, and
// SPIRE keeps the ban in the attested-node record of that ID, which it checks in
// AttestAgent, the call of both a first attestation and a re-attestation (spiffe/spire
// #1637, #1680). So: the running agent is shut out at its next call (its sync, every
// second, comes before any re-attestation); restarted, it proves its TPM again, which the
// plugin accepts, and SPIRE refuses the attestation (also with its data wiped, a first
// attestation); restarted with its SVID still on disk (banned while stopped), it is
// refused at its first call. `spire-server agent evict`
// lifts the ban (SPIRE 1.13 has no `agent delete`): the agent attests again; so does
// `agent purge`, once the banned agent's last SVID has expired.
//
// The same TPM's other EK would be another agent ID, which the ban does not reach: the
// server serves one EK type (ek_type), and refuses the other.
func TestBannedAgentStaysOut(t *testing.T) {
	requireEngines(t)
	auth := startSimHost(t, "auth", "--ecc")
	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		NodeAttestors: tpmServerAttestors(t, auth.bundle(), ""),
		AgentTTL:      "20s",
	})
	agentID := "spiffe://funlab.casa/spire/agent/tpm/" + auth.ekHash(t)
	agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{
		Name: "auth", NodeAttestor: tpmAgentAttestor(t, auth.socket), FailFast: true,
	})
	if id := agent.SPIFFEID(t); id != agentID {
		t.Fatalf("agent ID %s, want %s", id, agentID)
	}
	if info := srv.Agent(t, agentID); !info.CanReattest || info.Banned {
		t.Fatalf("agent %s: can_reattest %t, banned %t", agentID, info.CanReattest, info.Banned)
	}
	ban := func() {
		t.Helper()
		srv.Run(t, "agent", "ban", "-spiffeID", agentID)
		if info := srv.Agent(t, agentID); !info.Banned {
			t.Fatalf("agent %s not banned after agent ban", agentID)
		}
	}
	// The server refuses the banned agent's call (its sync) and says so. The agent ends
	// either way, but learns why only if the refusal reaches it: SPIRE's agent sends its
	// sync request on a stream that the server may have closed already, then gets EOF
	// instead of the status (pkg/agent/client, SyncAuthorizedEntries), and keeps its SVID.
	const (
		syncRefused = `error="failed to fetch authorized entries: rpc error: code = PermissionDenied desc = authorization denied for method /spire.api.server.entry.v1.Entry/SyncAuthorizedEntries"`
		syncEOF     = `error="failed to fetch authorized entries: EOF"`
	)
	wantShutOut := func(srvSkip, agentSkip int) {
		t.Helper()
		if err := agent.WaitExit(t, 60*time.Second); err == nil {
			t.Error("banned agent exited cleanly")
		}
		wantLogged(t, "server", srv.Log(), srvSkip, `msg="Agent is banned"`, `caller_id="`+agentID+`"`, "method=SyncAuthorizedEntries")
		told := logSince(agent.Log(), agentSkip, `msg="Agent is banned: removing SVID and shutting down"`, syncRefused)
		eof := logSince(agent.Log(), agentSkip, `msg="Agent crashed"`, syncEOF)
		if len(told)+len(eof) == 0 {
			t.Errorf("agent logged neither its ban nor the EOF of its refused sync:\n%s", strings.Join(logSince(agent.Log(), agentSkip), "\n"))
		}
		t.Logf("agent told of its ban: %t", len(told) > 0)
	}

	t.Run("banned while running: shut out at its next call", func(t *testing.T) {
		srvSkip, agentSkip := len(srv.Log()), len(agent.Log())
		ban()
		wantShutOut(srvSkip, agentSkip)
	})

	t.Run("restarted afresh on the same TPM: the TPM proven again, the attestation refused", func(t *testing.T) {
		// What the banned host's root can do: wipe the agent's data, for a first
		// attestation.
		data := filepath.Join(agent.Dir, "data")
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		srvSkip, agentSkip := len(srv.Log()), len(agent.Log())
		agent.Launch(t)
		if err := agent.WaitExit(t, 60*time.Second); err == nil {
			t.Error("banned agent, restarted, exited cleanly")
		}
		wantLogged(t, "agent", agent.Log(), agentSkip, `msg="No pre-existing agent SVID found. Will perform node attestation"`)
		wantLogged(t, "server", srv.Log(), srvSkip, `msg="tpm attestation accepted"`, `agent_id="`+agentID+`"`)
		wantLogged(t, "server", srv.Log(), srvSkip, `msg="Failed to attest: agent is banned"`, `agent_id="`+agentID+`"`, "method=AttestAgent")
		wantLogged(t, "agent", agent.Log(), agentSkip, `msg="Agent crashed"`,
			`error="failed to receive attestation response: rpc error: code = PermissionDenied desc = failed to attest: agent is banned"`)
		if info := srv.Agent(t, agentID); !info.Banned {
			t.Errorf("agent %s no longer banned", agentID)
		}
	})

	// The same TPM's other EK (an ECC P-256 key with a certificate from the same
	// manufacturer) would be another agent ID, which the ban does not name. The server
	// serves one EK type (ek_type, RSA-2048 by default), so the chip has one agent ID
	// and the other EK is refused by the plugin, before SPIRE sees an agent ID at all.
	t.Run("the TPM's other EK is refused: one EK type, one agent ID per chip", func(t *testing.T) {
		tt, err := tpm.Open(auth.socket)
		if err != nil {
			t.Fatal(err)
		}
		eks, err := tpm.EndorsementKeys(tt)
		tt.Close()
		if err != nil {
			t.Fatal(err)
		}
		var eccHash string
		for _, ek := range eks {
			if ek.Kind.Name == tpmrules.EKECCP256.Name {
				eccHash, _ = verify.EKHash(ek.PublicKey)
			}
		}
		if eccHash == "" {
			t.Fatalf("the simulated TPM has no ECC P-256 EK certificate")
		}
		srvSkip := len(srv.Log())
		ecc := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{
			Name: "auth-ecc", NodeAttestor: tpmAgentAttestor(t, auth.socket, spireconf.Setting{Key: "ek_type", Value: "ECC-P256"}), FailFast: true,
		})
		if err := ecc.WaitExit(t, 60*time.Second); err == nil {
			t.Error("agent on the TPM's ECC EK exited cleanly")
		}
		wantLogged(t, "server", srv.Log(), srvSkip, `check=ek_type`,
			`EK type ECC-P256 is not the one this server accepts, RSA-2048 (ek_hash=`+eccHash+`)`)
		for _, a := range srv.Agents(t) {
			if a.ID == "spiffe://funlab.casa/spire/agent/tpm/"+eccHash {
				t.Errorf("agent %s attested with the TPM's other EK", a.ID)
			}
		}
		if info := srv.Agent(t, agentID); !info.Banned {
			t.Errorf("agent %s no longer banned", agentID)
		}
	})

	// evictAndAttest lifts the ban. An agent that kept its SVID (the EOF above) is told at
	// its next start that it is no longer attested, removes the SVID and exits; the start
	// after that attests.
	evictAndAttest := func() {
		t.Helper()
		srv.Run(t, "agent", "evict", "-spiffeID", agentID)
		for _, a := range srv.Agents(t) {
			if a.ID == agentID {
				t.Fatalf("agent %s still listed after agent evict", agentID)
			}
		}
		if storedSVID(t, agent) {
			skip := len(agent.Log())
			agent.Launch(t)
			if err := agent.WaitExit(t, 60*time.Second); err == nil {
				t.Error("agent with an evicted SVID exited cleanly")
			}
			wantLogged(t, "agent", agent.Log(), skip, `msg="Agent needs to re-attest: removing SVID and shutting down"`)
		}
		agent.Start(t)
		if info := srv.Agent(t, agentID); info.Banned || !info.CanReattest {
			t.Errorf("agent %s after evict and restart: banned %t, can_reattest %t", agentID, info.Banned, info.CanReattest)
		}
	}

	t.Run("evicted: attests again", func(t *testing.T) {
		evictAndAttest()
	})

	t.Run("banned while stopped: refused at its first call with its stored SVID", func(t *testing.T) {
		agent.Stop(t)
		ban()
		srvSkip, agentSkip := len(srv.Log()), len(agent.Log())
		agent.Launch(t)
		wantShutOut(srvSkip, agentSkip)
		wantLogged(t, "agent", agent.Log(), agentSkip, `msg="SVID loaded"`, `spiffe_id="`+agentID+`"`)
		evictAndAttest()
	})

	// `spire-server agent purge` deletes every re-attestable agent whose SVID expired
	// more than -expiredFor ago, banned or not (SPIRE 1.13.3's purge lists agents by
	// can_reattest only; the server's own pruning, prune_attested_nodes_expired_for,
	// skips banned agents): a purge lifts the bans of agents banned long enough. An
	// operator who keeps a chip out keeps it in the plugin's EK deny list as well.
	t.Run("agent purge lifts the ban once the banned SVID has expired", func(t *testing.T) {
		srvSkip, agentSkip := len(srv.Log()), len(agent.Log())
		ban()
		wantShutOut(srvSkip, agentSkip)
		expires := srv.Agent(t, agentID).ExpiresAt
		time.Sleep(time.Until(expires.Add(2 * time.Second)))
		out := srv.Run(t, "agent", "purge", "-expiredFor", "1s")
		if !strings.Contains(out, agentID) {
			t.Errorf("agent purge did not name %s:\n%s", agentID, out)
		}
		for _, a := range srv.Agents(t) {
			if a.ID == agentID {
				t.Fatalf("banned agent %s still listed after agent purge (banned %t)", agentID, a.Banned)
			}
		}
		if storedSVID(t, agent) {
			agent.Launch(t)
			if err := agent.WaitExit(t, 60*time.Second); err == nil {
				t.Error("agent with a purged SVID exited cleanly")
			}
		}
		agent.Start(t)
		if info := srv.Agent(t, agentID); info.Banned {
			t.Errorf("agent %s banned after purge and restart", agentID)
		}
	})
}
