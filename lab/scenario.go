package lab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"omens.dev/omens/demo"
	"omens.dev/omens/internal/engines"

	"omens.dev/omens/ra"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/registry"

	"omens.dev/omens/policy"
	"omens.dev/omens/tpm/tpmsim"
)

// Scenarios are the failures from the plan that `omens lab scenario NAME` plays.
var Scenarios = map[string]func(*Lab, context.Context, io.Writer) error{
	"bios-update":                (*Lab).ScenarioBIOSUpdate,
	"join-token-after-migration": (*Lab).ScenarioJoinTokenAfterMigration,
	"revoke":                     (*Lab).ScenarioRevoke,
	"server-down":                (*Lab).ScenarioServerDown,
	"tpm-failure":                (*Lab).ScenarioTPMFailure,
}

// ScenarioNames are the scenarios in the order `omens lab scenario --help` lists them.
func ScenarioNames() []string {
	names := make([]string, 0, len(Scenarios))
	for n := range Scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ScenarioBIOSUpdate plays a BIOS update on host auth: new firmware in PCR 0, a reboot;
// its agent's attestation is then rejected, the server log naming PCR 0; an operator opens
// an allow-next window and the same boot state is accepted and pinned.
func (l *Lab) ScenarioBIOSUpdate(ctx context.Context, out io.Writer) error {
	const host = "auth"
	p, err := l.ports()
	if err != nil {
		return err
	}
	if !l.onTPM(host) {
		return fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	firmware := fmt.Sprintf("omens-sim firmware 2.0 (%s)", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "1. BIOS update on %s: PCR 0 now measures %q; the host reboots\n", host, firmware)
	if _, err := tpmsim.Reboot(l.TPMSocket(host), tpmsim.Profile{0: {firmware}}); err != nil {
		return err
	}
	hash, err := l.ekHash(host)
	if err != nil {
		return err
	}
	agent := process{name: host + "-agent", dir: l.Dir}
	restart := func() error {
		if err := agent.stop(20 * time.Second); err != nil {
			return err
		}
		// The rebooted host's agent starts afresh and attests.
		return os.RemoveAll(l.path("hosts", host, "agent", "data"))
	}
	if err := restart(); err != nil {
		return err
	}
	logPath := process{name: "spire-server", dir: l.Dir}.logFile()
	before := countLines(logPath, "tpm attestation rejected")
	if _, err := agent.start([]string{mustEngine("spire-agent"), "run", "-config", l.path("hosts", host, "agent", "agent.conf")}); err != nil {
		return err
	}
	line, err := waitLine(ctx, logPath, "tpm attestation rejected", before, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. its attestation is rejected:\n   %s\n", logReason(line, "reason"))
	st, err := policy.Open(l.PolicyPath(), "")
	if err != nil {
		return err
	}
	if err := st.AllowNext(hash, 2*time.Hour, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "3. the operator opens a window: omens pcr allow-next --policy %s --host %s --for 2h\n", l.PolicyPath(), host)
	if err := restart(); err != nil {
		return err
	}
	if err := l.upAgent(ctx, p, host); err != nil {
		return err
	}
	rep, err := st.Report(time.Now())
	if err != nil {
		return err
	}
	pinned := false
	for _, h := range rep.Hosts {
		pinned = pinned || (h.EKHash == hash && len(h.Pins) > 0)
	}
	if !pinned {
		return fmt.Errorf("lab: the new boot state of %s was not pinned", host)
	}
	fmt.Fprintf(out, "4. the new boot state is accepted and pinned; %s attests again with its TPM\n", host)
	return nil
}

// mustEngine is the path of an engine; upTower has checked they are all there.
func mustEngine(name string) string {
	p, _ := engines.Path(name)
	return p
}

func countLines(path, substr string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), substr)
}

// waitLine waits for the (n+1)th line of path holding substr and returns it.
func waitLine(ctx context.Context, path, substr string, n int, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		seen := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, substr) {
				if seen == n {
					return l, nil
				}
				seen++
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("lab: no %q in %s within %s", substr, path, limit)
}

// logReason returns the error in field key of a SPIRE log line, without its gRPC
// wrapping ("rpc error: code = … desc = ").
func logReason(line, key string) string {
	r := logField(line, key)
	if _, desc, ok := strings.Cut(r, "desc = "); ok {
		return desc
	}
	return r
}

// ScenarioJoinTokenAfterMigration plays join tokens after the migration. The token auth
// joined with before it is refused: tokens are single-use. A token an operator issues
// after it is not: SPIRE v1.13 attests join tokens in its agent API whatever its
// NodeAttestor blocks say. What the migration does about such an agent: no registration
// entry matches it (node aliases name TPM selectors), `omens migrate status` shows it as
// a join-token agent of no host, and it is banned as `omens migrate finish` bans every
// join-token agent.
func (l *Lab) ScenarioJoinTokenAfterMigration(ctx context.Context, out io.Writer) error {
	if _, err := os.Stat(l.path("spire", "server.conf.migrated")); err != nil {
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
	conf := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    admin_socket_path = %q
    trust_bundle_path = %q
    trust_domain = %q
    join_token = %q
    retry_bootstrap = false
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`, filepath.Join(dir, "data"), p.SPIRE, filepath.Join(dir, "public", "api.sock"), filepath.Join(dir, "private", "admin.sock"),
		filepath.Join(dir, "bundle.pem"), TrustDomain, token)
	path := filepath.Join(dir, "agent.conf")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// ScenarioRevoke decommissions host ca: its DevID certificate is revoked in step-ca (and
// listed in the CRL the SPIRE server reads), the RA refuses it, and its agent is banned, so
// its workloads get no new SVIDs.
func (l *Lab) ScenarioRevoke(ctx context.Context, out io.Writer) error {
	const host = "ca"
	ca, err := l.caState()
	if err != nil {
		return err
	}
	pw, err := os.ReadFile(ca.ProvisionerPasswordFile)
	if err != nil {
		return err
	}
	prov, err := stepca.LoadProvisioner(ca.CAConfig, ca.Provisioner, pw)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	root, err := os.ReadFile(ca.RootPath)
	if err != nil || !roots.AppendCertsFromPEM(root) {
		return fmt.Errorf("lab: step-ca root: %v", err)
	}
	store, err := ra.OpenStore(l.path("ra"))
	if err != nil {
		return err
	}
	b, revoked, err := store.Decommission(ctx, stepca.New(ca.URL, roots, prov), host+"."+TrustDomain, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "1. omens devid revoke --host %s.%s: DevID serials %s revoked in step-ca (in its CRL now)\n", host, TrustDomain, strings.Join(revoked, ", "))
	rc, err := registry.Dial(l.ServerSocket())
	if err != nil {
		return err
	}
	defer rc.Close()
	id := "spiffe://" + TrustDomain + "/spire/agent/tpm/" + b.EKHash
	if err := rc.BanAgent(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(out, "2. its SPIRE agent %s is banned: the workloads on %s get no new SVIDs\n", id, host)
	// The host is gone from the Tower: the lab stops its agent and workloads and no longer
	// starts them.
	if err := os.WriteFile(l.path("hosts", host, "decommissioned"), nil, 0o644); err != nil {
		return err
	}
	for _, w := range Workloads {
		if w.Host == host {
			if err := w.process(l.Dir).stop(10 * time.Second); err != nil {
				return err
			}
		}
	}
	if err := (process{name: host + "-agent", dir: l.Dir}).stop(20 * time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "3. %s is shut down: the lab stops its agent and workloads and will not start them again\n", host)
	return nil
}

// needWorkloads checks that the demo workloads run (omens lab up starts them).
func (l *Lab) needWorkloads() error {
	for _, w := range Workloads {
		if !l.decommissioned(w.Host) && w.process(l.Dir).pid() == 0 {
			return fmt.Errorf("lab: the demo workload %s does not run: run `omens lab up` first", w.Name)
		}
	}
	return nil
}

// ScenarioServerDown stops the SPIRE server until an agent (spire's) fails to re-attest:
// the workloads keep their valid SVIDs, served from their agents' caches; then the server
// returns and the agent re-attests.
func (l *Lab) ScenarioServerDown(ctx context.Context, out io.Writer) error {
	const host = "spire"
	p, err := l.ports()
	if err != nil {
		return err
	}
	ca, err := l.caState()
	if err != nil {
		return err
	}
	if err := l.needWorkloads(); err != nil {
		return err
	}
	agentLog := process{name: host + "-agent", dir: l.Dir}.logFile()
	const failed, reattested = "Could not reattest agent", "Successfully reattested node"
	before := countLines(agentLog, failed)
	server := process{name: "spire-server", dir: l.Dir}
	if err := server.stop(20 * time.Second); err != nil {
		return err
	}
	fmt.Fprintln(out, "1. the SPIRE server is down")
	line, err := waitLine(ctx, agentLog, failed, before, 3*time.Minute)
	if err != nil {
		return errors.Join(err, l.upSPIREServer(ctx, p, ca))
	}
	reason := logReason(line, "error")
	fmt.Fprintf(out, "2. %s's agent cannot re-attest, and keeps running:\n   %s\n", host, reason)
	if !l.decommissioned("ca") {
		if _, err := l.stepCACall(ctx); err != nil {
			return errors.Join(fmt.Errorf("lab: with the server down, the workloads lost their SVIDs: %w", err), l.upSPIREServer(ctx, p, ca))
		}
		fmt.Fprintln(out, "3. step-ca's stand-in still calls OpenBao's over mTLS: both hold valid SVIDs from their agents' caches")
	}
	before = countLines(agentLog, reattested)
	if err := l.upSPIREServer(ctx, p, ca); err != nil {
		return err
	}
	for _, h := range Hosts {
		// An agent whose own SVID ran out while the server was away has exited.
		if err := l.upAgent(ctx, p, h); err != nil {
			return err
		}
	}
	if line, err = waitLine(ctx, agentLog, reattested, before, 3*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(out, "4. the server is back; %s's agent re-attests:\n   %s %s\n", host, reattested, logField(line, "spiffe_id"))
	return nil
}

// ScenarioTPMFailure takes host spire's TPM away while OpenBao's stand-in runs there: the
// simulator stops and its device socket is gone. At its next re-attestation (the lab's
// agents re-attest every minute) the agent reports the failure in its log and keeps
// serving the SVIDs it holds; when the TPM returns, with its NV (the AK, the DevID key at
// its handle), the agent re-attests with it.
func (l *Lab) ScenarioTPMFailure(ctx context.Context, out io.Writer) error {
	const host = "spire"
	if !l.onTPM(host) {
		return fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	if err := l.needWorkloads(); err != nil {
		return err
	}
	agentLog := process{name: host + "-agent", dir: l.Dir}.logFile()
	const failed, reattested = "Could not reattest agent", "Successfully reattested node"
	before := countLines(agentLog, failed)
	if err := l.tpmProcess(host).stop(10 * time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. the TPM of %s disappears: %s is gone\n", host, l.TPMSocket(host))
	line, err := waitLine(ctx, agentLog, failed, before, 3*time.Minute)
	if err != nil {
		return errors.Join(err, l.upTPM(ctx, host))
	}
	reason := logReason(line, "error")
	fmt.Fprintf(out, "2. at its next re-attestation the agent reports it, and keeps running:\n   %s\n", reason)
	w := openbao
	s, err := demo.ReadSVIDFile(l.SVIDFile(w))
	if err == nil && !s.Valid(time.Now()) {
		err = fmt.Errorf("its SVID expired at %s", s.NotAfter.Format(time.RFC3339))
	}
	if err == nil && !l.decommissioned("ca") {
		_, err = l.stepCACall(ctx)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("lab: with %s's TPM gone, %s lost its SVID: %w", host, w.Name, err), l.upTPM(ctx, host))
	}
	fmt.Fprintf(out, "3. it still serves the SVIDs it holds: OpenBao's stand-in, valid until %s, answers step-ca's over mTLS\n", s.NotAfter.Local().Format(time.TimeOnly))
	before = countLines(agentLog, reattested)
	if err := l.upTPM(ctx, host); err != nil {
		return err
	}
	if line, err = waitLine(ctx, agentLog, reattested, before, 3*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(out, "4. the TPM is back with its NV (the AK, the DevID key at %s); the agent re-attests with it:\n   %s %s\n", DevIDHandle, reattested, logField(line, "spiffe_id"))
	return nil
}

// logField returns the value of key in a SPIRE log line (logrus text format), or the
// whole line when it has none.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return line
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if q, err := strconv.QuotedPrefix(v); err == nil {
			if u, err := strconv.Unquote(q); err == nil {
				return u
			}
		}
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}
