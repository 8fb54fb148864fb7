package lab

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"omens.dev/omens/demo"
	"omens.dev/omens/enroll"
	"omens.dev/omens/migrate"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/registry"
	"omens.dev/omens/tpmrules"
)

// ScenarioRollback breaks host spire's DevID while OpenBao's stand-in runs there: the RA
// is down and its DevID certificate is revoked, so its agent is refused in DevID mode and
// cannot enroll a new one. The host falls back to EK mode through the code of `omens
// migrate rollback --to ek` (package migrate): its phase, its node alias on its EK hash
// alone, its agent's configuration and the server's (DevID mode, the host an EK-mode
// exception) rendered again; the server and the agent restart, and the agent, keeping its
// agent ID, re-attests in EK mode. Once the RA is back the host enrolls a new DevID and
// moves forward to DevID mode the same way. Throughout, the SVID OpenBao's stand-in holds
// from its Workload API is checked, twice a second: it never lapses.
var ScenarioRollback = Scenario{
	Name: "rollback",
	Help: "spire's DevID breaks (revoked, the RA down): it falls back to\nEK mode, keeps its workloads' SVIDs, and returns to DevID mode",
	Run:  playRollback,
}

// inEKMode reports whether host's agent has been rolled back to EK mode.
func (l *Lab) inEKMode(host string) bool {
	_, err := os.Stat(l.ekModeMarker(host))
	return err == nil
}

func (l *Lab) ekModeMarker(host string) string { return l.path("hosts", host, "agent", "ek-mode") }

// svidWatch checks, until stopped, that the SVID a workload holds from its Workload API
// (the file it writes at every update) is valid.
type svidWatch struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	polls  int
	lapses []string
}

func watchSVID(path string) *svidWatch {
	w := &svidWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			now := time.Now()
			s, err := demo.ReadSVIDFile(path)
			w.mu.Lock()
			w.polls++
			switch {
			case err != nil:
				w.lapses = append(w.lapses, now.Format(time.TimeOnly)+": "+err.Error())
			case !s.Valid(now):
				w.lapses = append(w.lapses, fmt.Sprintf("%s: its SVID is valid from %s until %s", now.Format(time.TimeOnly), s.NotBefore.Format(time.TimeOnly), s.NotAfter.Format(time.TimeOnly)))
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// end stops the watch and returns how many polls it made and the lapses it saw.
func (w *svidWatch) end() (int, []string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.polls, w.lapses
}

// reasonKeyCompromise is the CRL reason keyCompromise (RFC 5280, section 5.3.1).
const reasonKeyCompromise = 1

// playRollback is ScenarioRollback.Run.
func playRollback(ctx context.Context, l *Lab, out io.Writer) error {
	const host = "spire"
	if !l.onTPM(host) || !l.finishedMigration() {
		return fmt.Errorf("lab: the migration is not finished: run `omens lab migrate` first")
	}
	if l.inEKMode(host) {
		return fmt.Errorf("lab: %s is in EK mode already (an earlier rollback stopped half way): run `omens lab down` and `omens lab up` to resume it", host)
	}
	if err := l.needWorkloads(); err != nil {
		return err
	}
	p, err := l.ports()
	if err != nil {
		return err
	}
	ca, err := l.caState()
	if err != nil {
		return err
	}
	watch := watchSVID(l.SVIDFile(openbao))
	err = l.rollback(ctx, out, host, p, ca)
	polls, lapses := watch.end()
	if err != nil {
		return err
	}
	if len(lapses) > 0 {
		return fmt.Errorf("lab: %s's SVID lapsed at %d of %d polls: %s", openbao.Name, len(lapses), polls, strings.Join(lapses, "; "))
	}
	s, err := demo.ReadSVIDFile(l.SVIDFile(openbao))
	if err != nil {
		return err
	}
	if !l.decommissioned("ca") {
		if _, err := l.stepCACall(ctx); err != nil {
			return fmt.Errorf("lab: step-ca's stand-in cannot call OpenBao's after the rollback: %w", err)
		}
	}
	fmt.Fprintf(out, "8. throughout, %s's SVID from its Workload API was valid at each of %d polls (now until %s); step-ca's stand-in still calls it over mTLS\n",
		openbao.Name, polls, s.NotAfter.Local().Format(time.TimeOnly))
	return nil
}

// restartUntil restarts the SPIRE server (which reads the changed configuration) and
// host's agent, and waits for the agent's next log line with substr.
func (l *Lab) restartUntil(ctx context.Context, p *ports, ca *caState, host, agentLog, substr string) (string, error) {
	before := countLines(agentLog, substr)
	if err := l.restartServer(ctx, p, ca); err != nil {
		return "", err
	}
	if err := l.restartAgent(ctx, p, host); err != nil {
		return "", err
	}
	return waitLine(ctx, agentLog, substr, before, 3*time.Minute)
}

func (l *Lab) rollback(ctx context.Context, out io.Writer, host string, p *ports, ca *caState) error {
	agentLog := process{name: host + "-agent", dir: l.Dir}.logFile()
	const failed, reattested = "Could not reattest agent", "Successfully reattested node"
	rc, err := registry.Dial(l.ServerSocket())
	if err != nil {
		return err
	}
	defer rc.Close()

	// 1. The DevID breaks: the RA is down, and the certificate is revoked in step-ca.
	if err := (process{name: "ra", dir: l.Dir}).stop(10 * time.Second); err != nil {
		return err
	}
	cur, err := enroll.Load(l.DevIDDir(host))
	if err != nil {
		return err
	}
	client, err := l.stepCAClient(ca)
	if err != nil {
		return err
	}
	if err := client.Revoke(ctx, cur.Leaf.SerialNumber, reasonKeyCompromise, "lab: scenario rollback"); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. the RA is down, and %s's DevID (serial %x) is revoked in step-ca: it can neither use it nor enroll a new one\n", host, cur.Leaf.SerialNumber)
	// The server reads the CRL again at its refresh; restarted, it reads it now.
	before := countLines(agentLog, failed)
	if err := l.restartServer(ctx, p, ca); err != nil {
		return err
	}
	// The first refusal that names the revocation (the server's restart may fail one
	// re-attestation first).
	var line string
	for n := before; ; n++ {
		if line, err = waitLine(ctx, agentLog, failed, n, 3*time.Minute); err != nil {
			return err
		}
		if strings.Contains(line, "devid_revoked") {
			break
		}
	}
	fmt.Fprintf(out, "2. at its next re-attestation its agent is refused in DevID mode, and keeps its SVID:\n   %s\n", logReason(line, "error"))

	// 3. The rollback, as omens migrate rollback --to ek does it.
	if err := os.WriteFile(l.ekModeMarker(host), nil, 0o644); err != nil {
		return err
	}
	res, err := migrate.Move(ctx, l.towerInventory(p, ca), migrate.Options{Host: host, From: registry.PhaseDevID, Root: "/", Render: renderOptions, Client: rc})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "3. omens migrate rollback --host %s --to ek:\n", host)
	printSteps(out, res)
	if line, err = l.restartUntil(ctx, p, ca, host, agentLog, reattested); err != nil {
		return err
	}
	id := logField(line, "spiffe_id")
	sels, err := l.agentSelectors(ctx, id)
	if err != nil {
		return err
	}
	if !slices.Contains(sels, "tpm:mode:ek_cert") {
		return fmt.Errorf("lab: %s re-attested without the selector tpm:mode:ek_cert: %v", id, sels)
	}
	alias := l.towerInventory(p, ca).Host(host).NodeSelectors()
	for _, s := range alias {
		if !slices.Contains(sels, s) {
			return fmt.Errorf("lab: %s's agent lacks its node alias's selector %s: its workloads would lose their entries", host, s)
		}
	}
	fmt.Fprintf(out, "4. the agent re-attests in EK mode, under the same agent ID, with tpm:mode:ek_cert:\n   %s %s\n", reattested, id)
	fmt.Fprintf(out, "   its node alias %s still matches it (%s): OpenBao's entry stays\n", l.towerInventory(p, ca).AliasID(host), strings.Join(alias, ", "))

	// 5. The RA is back: a new DevID, and forward to DevID mode.
	if err := l.upRA(ctx, p, ca); err != nil {
		return err
	}
	roots := x509.NewCertPool()
	b, err := os.ReadFile(ca.RootPath)
	if err != nil || !roots.AppendCertsFromPEM(b) {
		return fmt.Errorf("lab: step-ca root %s: %v", ca.RootPath, err)
	}
	meta, err := enroll.Enroll(ctx, enroll.Config{TPMPath: l.TPMSocket(host), RAURL: fmt.Sprintf("https://127.0.0.1:%d", p.RA),
		RARoots: roots, Host: host + "." + TrustDomain, Dir: l.DevIDDir(host), Handle: tpmrules.PlanDevIDHandle})
	if err != nil {
		return fmt.Errorf("lab: %s: enroll again: %w", host, err)
	}
	fmt.Fprintf(out, "5. the RA is back; %s enrolls a new DevID (serial %s, until %s)\n", host, meta.Serial, meta.NotAfter.UTC().Format("2006-01-02 15:04"))
	if err := os.Remove(l.ekModeMarker(host)); err != nil {
		return err
	}
	inv := l.towerInventory(p, ca)
	if res, err = migrate.Move(ctx, inv, migrate.Options{Host: host, From: registry.PhaseEK, Root: "/", Render: renderOptions, Client: rc}); err != nil {
		return err
	}
	fmt.Fprintf(out, "6. omens migrate forward --host %s --to devid:\n", host)
	printSteps(out, res)
	if line, err = l.restartUntil(ctx, p, ca, host, agentLog, reattested); err != nil {
		return err
	}
	// Attested with its DevID again: its node alias gets the DevID selector back (omens apply).
	plan, err := rc.Plan(ctx, inv, false)
	if err != nil {
		return err
	}
	if err := rc.Apply(ctx, plan.OnlyHost(host)); err != nil {
		return err
	}
	fmt.Fprintf(out, "7. the agent re-attests in DevID mode with the new certificate; omens apply gives its alias the DevID selector again:\n   %s %s\n", reattested, logField(line, "spiffe_id"))
	return nil
}

// printSteps prints what migrate.Move changed, one line a file or entry.
func printSteps(out io.Writer, res *migrate.Result) {
	for _, s := range res.Steps {
		if !s.Changed() {
			continue
		}
		what := s.Path
		if s.Detail != "" {
			what += " (" + s.Detail + ")"
		}
		fmt.Fprintf(out, "   %-9s %-25s %s\n", s.State, s.What, what)
	}
}

// stepCAClient is step-ca's API with the lab's provisioner, as the RA uses it.
func (l *Lab) stepCAClient(ca *caState) (*stepca.Client, error) {
	pw, err := os.ReadFile(ca.ProvisionerPasswordFile)
	if err != nil {
		return nil, err
	}
	prov, err := stepca.LoadProvisioner(ca.CAConfig, ca.Provisioner, pw)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	root, err := os.ReadFile(ca.RootPath)
	if err != nil || !roots.AppendCertsFromPEM(root) {
		return nil, fmt.Errorf("lab: step-ca root: %v", err)
	}
	return stepca.New(ca.URL, roots, prov), nil
}
