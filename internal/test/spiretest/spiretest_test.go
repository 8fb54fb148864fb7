package spiretest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/test/spiretest"
)

const fetchTimeout = 30 * time.Second

// TestJoinTokenAgentWorkload runs a server and a join_token agent, gives a workload of
// this process's uid an identity, and checks that the agent keeps working across a server
// restart: it is still listed, receives a new entry, and renews its own SVID.
func TestJoinTokenAgentWorkload(t *testing.T) {
	start := time.Now()
	srv := spiretest.StartServer(t, spiretest.ServerConfig{AgentTTL: "20s"})
	t.Logf("server healthy after %v", time.Since(start).Round(time.Millisecond))

	token := srv.JoinToken(t, "")
	step := time.Now()
	agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: token, Name: "a"})
	t.Logf("agent healthy after %v", time.Since(step).Round(time.Millisecond))

	agentID := agent.SPIFFEID(t)
	if want := "spiffe://funlab.casa/spire/agent/join_token/" + token; agentID != want {
		t.Fatalf("agent ID %s, want %s", agentID, want)
	}
	info := srv.Agent(t, agentID)
	if info.AttestationType != "join_token" || info.Banned || info.CanReattest {
		t.Fatalf("agent listed as %+v, want attestation type join_token, not banned, not re-attestable", info)
	}

	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	workloadID := "spiffe://funlab.casa/workload/one"
	srv.CreateEntry(t, agentID, workloadID, uid)
	step = time.Now()
	svid, err := spiretest.FetchX509SVID(t, agent.WorkloadSocket, fetchTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.ID.String(); got != workloadID {
		t.Fatalf("X.509-SVID ID %s, want %s", got, workloadID)
	}
	t.Logf("workload X.509-SVID after %v", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	before := srv.Agent(t, agentID).SerialNumber
	srv.Stop(t)
	srv.Start(t)
	t.Logf("server restarted in %v", time.Since(step).Round(time.Millisecond))

	if got := srv.Agent(t, agentID); got.AttestationType != "join_token" || got.Banned {
		t.Fatalf("after restart agent listed as %+v", got)
	}
	if _, err := spiretest.FetchX509SVID(t, agent.WorkloadSocket, fetchTimeout); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	// A new entry reaches the agent only through the restarted server.
	secondID := "spiffe://funlab.casa/workload/two"
	srv.CreateEntry(t, agentID, secondID, uid)
	step = time.Now()
	if _, err := spiretest.WaitX509SVID(t, agent.WorkloadSocket, secondID, fetchTimeout); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	t.Logf("entry created after restart reached the workload in %v", time.Since(step).Round(time.Millisecond))

	// The agent renews its 20s SVID at about half life, against the restarted server.
	step = time.Now()
	deadline := step.Add(60 * time.Second)
	for srv.Agent(t, agentID).SerialNumber == before {
		if time.Now().After(deadline) {
			t.Fatalf("agent SVID (serial %s) not renewed within 60s of the restart", before)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("agent SVID renewed %v after the restart; total %v", time.Since(step).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestNodeAliasAndRejection checks a join token issued with a node alias, the node alias
// entries CreateNodeAlias makes, and what the server logs when it rejects an attestation.
func TestNodeAliasAndRejection(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.ServerConfig{})

	aliasID := "spiffe://funlab.casa/agent/auth"
	agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: srv.JoinToken(t, aliasID), Name: "auth"})
	workloadID := "spiffe://funlab.casa/step-ca"
	srv.CreateEntry(t, aliasID, workloadID, fmt.Sprintf("unix:uid:%d", os.Getuid()))
	svid, err := spiretest.FetchX509SVID(t, agent.WorkloadSocket, fetchTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.ID.String(); got != workloadID {
		t.Fatalf("X.509-SVID ID %s, want %s", got, workloadID)
	}

	nodeID := "spiffe://funlab.casa/agent/spire"
	entryID := srv.CreateNodeAlias(t, nodeID, "tpm:pub_hash:ab12", "tpm:model:SLB9670")
	var shown struct {
		Entries []struct {
			ID       string `json:"id"`
			ParentID struct {
				Path string `json:"path"`
			} `json:"parent_id"`
			Selectors []struct {
				Type  string `json:"type"`
				Value string `json:"value"`
			} `json:"selectors"`
		} `json:"entries"`
	}
	out := srv.Run(t, "entry", "show", "-entryID", entryID, "-output", "json")
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("entry show: %v\n%s", err, out)
	}
	if len(shown.Entries) != 1 || shown.Entries[0].ParentID.Path != "/spire/server" || len(shown.Entries[0].Selectors) != 2 {
		t.Fatalf("node alias entry: %s", out)
	}

	bad := spiretest.LaunchAgent(t, srv, spiretest.AgentConfig{JoinToken: "not-a-token", Name: "bad", FailFast: true})
	var exit *exec.ExitError
	if err := bad.WaitExit(t, time.Minute); !errors.As(err, &exit) {
		t.Fatalf("agent with an unknown join token exited with %v, want a non-zero status", err)
	}
	const rejected = "join token does not exist or has already been used"
	srv.WaitLog(t, rejected, 10*time.Second)
	for _, line := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(line, rejected) {
			t.Logf("server: %s", line)
		}
	}
	for _, line := range strings.Split(bad.Log(), "\n") {
		if strings.Contains(line, "level=error") {
			t.Logf("agent: %s", line)
		}
	}
}
