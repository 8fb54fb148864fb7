package lab

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"omens.dev/omens/ra"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/registry"
)

// ScenarioRevoke decommissions host ca: its DevID certificate is revoked in step-ca (and
// listed in the CRL the SPIRE server reads), the RA refuses it, and its agent is banned, so
// its workloads get no new SVIDs.
var ScenarioRevoke = Scenario{
	Name: "revoke",
	Help: "host ca is decommissioned: DevID revoked in step-ca, agent banned",
	Run:  playRevoke,
}

// playRevoke is ScenarioRevoke.Run.
func playRevoke(ctx context.Context, l *Lab, out io.Writer) error {
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
	noun := "serial"
	if len(revoked) > 1 {
		noun = "serials"
	}
	fmt.Fprintf(out, "1. omens devid revoke --host %s.%s: DevID %s %s revoked in step-ca (in its CRL now)\n", host, TrustDomain, noun, strings.Join(revoked, ", "))
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
