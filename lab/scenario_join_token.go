package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"omens.dev/omens/registry"
	"omens.dev/omens/spireconf"
)

// ScenarioJoinTokenAfterMigration plays join tokens after the migration. The token auth
// joined with before it is refused: tokens are single-use. A token an operator issues
// after it is not: SPIRE v1.13 attests join tokens in its agent API whatever its
// NodeAttestor blocks say. What the migration does about such an agent: no registration
// entry matches it (node aliases name TPM selectors), `omens migrate status` shows it as
// a join-token agent of no host, and it is banned as `omens migrate finish` bans every
// join-token agent.
var ScenarioJoinTokenAfterMigration = Scenario{
	Name: "join-token-after-migration",
	Help: "an agent with a join token from before the migration is refused",
	Run:  playJoinTokenAfterMigration,
}

// playJoinTokenAfterMigration is ScenarioJoinTokenAfterMigration.Run.
func playJoinTokenAfterMigration(ctx context.Context, l *Lab, out io.Writer) error {
	if !l.finishedMigration() {
		return fmt.Errorf("lab: the migration is not finished: run `omens lab migrate` first")
	}
	old, err := os.ReadFile(l.path("hosts", "auth", "agent", "join-token"))
	if err != nil {
		return fmt.Errorf("lab: auth's join token from before the migration: %w", err)
	}
	dir := l.path("intruder")
	defer os.RemoveAll(dir)
	fmt.Fprintln(out, "1. an agent presents auth's join token from before the migration (used when auth joined)")
	conf, err := l.intruderConfig(dir, string(old))
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	b, err := exec.CommandContext(cctx, mustEngine("spire-agent"), "run", "-config", conf).CombinedOutput()
	if err == nil {
		return fmt.Errorf("lab: an agent attested with a used join token")
	}
	reason := "refused"
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Agent crashed") || strings.Contains(line, "failed to attest") {
			reason = logReason(strings.TrimSpace(line), "error")
		}
	}
	fmt.Fprintf(out, "2. it is refused:\n   %s\n", reason)

	token, err := exec.Command(mustEngine("spire-server"), "token", "generate", "-socketPath", l.ServerSocket(), "-output", "json").Output()
	if err != nil {
		return fmt.Errorf("lab: spire-server token generate: %w", err)
	}
	var tok struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(token, &tok); err != nil || tok.Value == "" {
		return fmt.Errorf("lab: token generate answered %q", token)
	}
	if conf, err = l.intruderConfig(dir, tok.Value); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "agent.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	agent := exec.CommandContext(ctx, mustEngine("spire-agent"), "run", "-config", conf)
	agent.Stdout, agent.Stderr = log, log
	if err := agent.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { agent.Wait(); close(exited) }()
	defer func() {
		agent.Process.Kill()
		<-exited
	}()
	line, err := waitLine(ctx, logPath, "Node attestation was successful", 0, 60*time.Second)
	if err != nil {
		return err
	}
	id := logField(line, "spiffe_id")
	fmt.Fprintf(out, "3. an operator issues a new token (spire-server token generate); SPIRE attests it whatever its config:\n   %s\n", id)

	rc, err := registry.Dial(l.ServerSocket())
	if err != nil {
		return err
	}
	defer rc.Close()
	inv, err := registry.LoadInventory(l.InventoryPath())
	if err != nil {
		return err
	}
	agents, err := rc.Agents(ctx, inv)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(agents, func(a registry.Agent) bool { return a.ID == id })
	if i < 0 || agents[i].Method != registry.MethodJoinToken || agents[i].Host != "" {
		return fmt.Errorf("lab: omens migrate status does not show %s as a join-token agent of no host", id)
	}
	if b, err := l.callOpenBao(ctx, filepath.Join(dir, "public", "api.sock"), nil, 3*time.Second); err == nil {
		return fmt.Errorf("lab: a workload under the join-token agent got an SVID: %s", b)
	}
	fmt.Fprintln(out, "4. omens migrate status shows it: join_token, no host; no entry matches it: its workloads get no SVID")
	if err := rc.BanAgent(ctx, id); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("lab: the banned join-token agent %s still runs after 60s", id)
	}
	fmt.Fprintln(out, "5. it is banned, as omens migrate finish bans every join-token agent: the agent shuts down")
	return nil
}

// intruderConfig writes the config of an agent that joins with token, under dir.
func (l *Lab) intruderConfig(dir, token string) (string, error) {
	p, err := l.ports()
	if err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	for _, d := range []string{"data", "public", "private"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", err
		}
	}
	bundle, err := os.ReadFile(l.path("hosts", Hosts[0], "agent", "bundle.pem"))
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), bundle, 0o644); err != nil {
		return "", err
	}
	conf, err := spireconf.Agent{
		TrustDomain: TrustDomain, ServerAddress: "127.0.0.1", ServerPort: p.SPIRE,
		DataDir: filepath.Join(dir, "data"), LogLevel: "INFO",
		SocketPath: filepath.Join(dir, "public", "api.sock"), AdminSocketPath: filepath.Join(dir, "private", "admin.sock"),
		TrustBundlePath: filepath.Join(dir, "bundle.pem"), JoinToken: token, NoRetryBootstrap: true,
		Plugins: []spireconf.Plugin{spireconf.JoinToken(), spireconf.MemoryKeyManager(), spireconf.UnixWorkloadAttestor()},
	}.Render()
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	path := filepath.Join(dir, "agent.conf")
	return path, os.WriteFile(path, conf, 0o600)
}
