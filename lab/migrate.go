package lab

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"omens.dev/omens/enroll"
	"omens.dev/omens/ra"
	"omens.dev/omens/registry"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// InventoryPath is the lab's registration as code: a file a user can read and copy.
func (l *Lab) InventoryPath() string { return l.path("tower.hcl") }

// Migrate plays the plan's migration, one host at a time: the host is bound to its EK at
// the RA, enrolls its DevID, and its agent moves from its join token to NodeAttestor "tpm"
// in DevID mode. Then the Tower is registered as code (omens apply), and the migration is
// finished: join-token agents are banned and the server runs without join_token. report
// is called after each step with the lab's status.
func (l *Lab) Migrate(ctx context.Context, report func(step string, st []HostStatus)) error {
	p, err := l.ports()
	if err != nil {
		return err
	}
	ca, err := l.caState()
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	b, err := os.ReadFile(ca.RootPath)
	if err != nil || !roots.AppendCertsFromPEM(b) {
		return fmt.Errorf("lab: step-ca root %s: %v", ca.RootPath, err)
	}
	store, err := ra.OpenStore(l.path("ra"))
	if err != nil {
		return err
	}
	hashes := map[string]string{}
	for _, h := range Hosts {
		if hashes[h], err = l.ekHash(h); err != nil {
			return err
		}
	}
	// The inventory names each host by its EK hash and DevID subject: the status table
	// finds each TPM-attested agent's host by it from the first move on.
	if err := l.writeInventory(hashes); err != nil {
		return err
	}
	for _, h := range Hosts {
		hash := hashes[h]
		if l.onTPM(h) {
			continue
		}
		name := h + "." + TrustDomain
		if _, err := store.Approve(name, hash, time.Now()); err != nil {
			return err
		}
		l.progress("%s: enrolling its DevID through the RA and step-ca", h)
		if _, err := enroll.Load(l.DevIDDir(h)); err != nil {
			handle := tpmrules.PlanDevIDHandle
			if _, err := enroll.Enroll(ctx, enroll.Config{TPMPath: l.TPMSocket(h), RAURL: fmt.Sprintf("https://127.0.0.1:%d", p.RA),
				RARoots: roots, Host: name, Dir: l.DevIDDir(h), Handle: handle}); err != nil {
				return fmt.Errorf("lab: %s: %w", h, err)
			}
		}
		l.progress("%s: moving its SPIRE agent from the join token to TPM attestation (DevID mode)", h)
		agent := process{name: h + "-agent", dir: l.Dir}
		if err := agent.stop(20 * time.Second); err != nil {
			return err
		}
		if err := os.WriteFile(l.path("hosts", h, "agent", "on-tpm"), nil, 0o644); err != nil {
			return err
		}
		// A new identity: the agent attests afresh, with its TPM.
		os.RemoveAll(l.path("hosts", h, "agent", "data"))
		if err := l.upAgent(ctx, p, h); err != nil {
			return err
		}
		report(h+" attests with its TPM (DevID mode)", l.Status())
	}
	inv, err := registry.LoadInventory(l.InventoryPath())
	if err != nil {
		return err
	}
	rc, err := registry.Dial(l.ServerSocket())
	if err != nil {
		return err
	}
	defer rc.Close()
	plan, err := rc.Plan(ctx, inv, true)
	if err != nil {
		return err
	}
	if err := rc.Apply(ctx, plan); err != nil {
		return err
	}
	l.progress("registered the Tower from %s (omens apply)", l.InventoryPath())
	banned, err := rc.FinishMigration(ctx, inv, time.Now())
	if err != nil {
		return err
	}
	for _, a := range banned {
		l.progress("banned join-token agent %s", a.ID)
	}
	// Every host is in phase devid now: the server's configuration, rendered again,
	// has no NodeAttestor "join_token".
	confPath := l.path("spire", "server.conf")
	want, err := l.renderServer(p, ca)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(l.migrationFinished(), nil, 0o644); err != nil {
		return err
	}
	if have, err := os.ReadFile(confPath); err != nil || !bytes.Equal(have, want) {
		l.progress("spire-server: restarting without NodeAttestor \"join_token\"")
		if err := (process{name: "spire-server", dir: l.Dir}).stop(20 * time.Second); err != nil {
			return err
		}
		if err := l.upSPIREServer(ctx, p, ca); err != nil {
			return err
		}
	}
	report("migration finished: join_token removed", l.Status())
	return nil
}

// migrationFinished is the file that says the migration finished: the join-token agents
// are banned and the server runs without NodeAttestor "join_token".
func (l *Lab) migrationFinished() string { return l.path("spire", "migration-finished") }

// finishedMigration reports whether the migration finished (in a lab directory of an
// earlier omens, server.conf.migrated says so).
func (l *Lab) finishedMigration() bool {
	for _, f := range []string{l.migrationFinished(), l.path("spire", "server.conf.migrated")} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}

func (l *Lab) caState() (*caState, error) {
	var st caState
	b, err := os.ReadFile(l.path("ca", "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("lab: step-ca not initialised (run omens lab up): %w", err)
	}
	return &st, json.Unmarshal(b, &st)
}

func (l *Lab) ekHash(host string) (string, error) {
	t, err := tpm.Open(l.TPMSocket(host))
	if err != nil {
		return "", err
	}
	defer t.Close()
	eks, err := tpm.EndorsementKeys(t)
	if err != nil {
		return "", err
	}
	return verify.EKHash(eks[0].PublicKey)
}

// writeInventory writes the Tower as code, with the EK hashes and DevID names of the
// lab's hosts.
func (l *Lab) writeInventory(hashes map[string]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# The Tower of Omens in the lab, as `omens apply --file %s` registers it.\n\ntrust_domain = %q\n", filepath.Base(l.InventoryPath()), TrustDomain)
	for _, h := range Hosts {
		fmt.Fprintf(&b, "\nhost %q {\n  ek_hash       = %q\n  devid_subject = %q\n}\n", h, hashes[h], h+"."+TrustDomain)
	}
	for _, w := range Workloads {
		fmt.Fprintf(&b, "\nworkload %q {\n  host      = %q\n  spiffe_id = %q\n  selectors = [%q]\n}\n", w.Name, w.Host, w.SPIFFEID, w.selector())
	}
	return os.WriteFile(l.InventoryPath(), []byte(b.String()), 0o644)
}
