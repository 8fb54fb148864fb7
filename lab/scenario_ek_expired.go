package lab

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// ScenarioEKExpired keeps host auth's TPM past its EK certificate's life: its
// manufacturer CA issues its EK a certificate that expired a minute ago, written to the
// TPM's EK certificate index in place of the valid one. At its next re-attestation the
// server's NodeAttestor "tpm", under expired_ek_cert = "reject" (its default), refuses it
// with check ek_cert_expired, naming the certificate's notAfter. With expired_ek_cert =
// "warn" in the lab's inventory (the server's configuration rendered again, the server
// restarted) the agent re-attests, with the selector tpm:ek_cert:expired and a warning in
// the server's log. Then the valid certificate goes back and the server returns to
// "reject".
var ScenarioEKExpired = Scenario{
	Name: "ek-expired",
	Help: "auth's EK certificate expires: refused under expired_ek_cert =\n\"reject\", accepted with tpm:ek_cert:expired under \"warn\"",
	Run:  playEKExpired,
}

// playEKExpired is ScenarioEKExpired.Run.
func playEKExpired(ctx context.Context, l *Lab, out io.Writer) (err error) {
	const host = "auth"
	if !l.onTPM(host) {
		return fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	if l.decommissioned(host) {
		return fmt.Errorf("lab: %s is decommissioned (omens lab scenario revoke): start a new lab", host)
	}
	p, err := l.ports()
	if err != nil {
		return err
	}
	ca, err := l.caState()
	if err != nil {
		return err
	}
	ek, err := l.endorsementKey(host)
	if err != nil {
		return err
	}
	hash, err := verify.EKHash(ek.PublicKey)
	if err != nil {
		return err
	}
	mfg, err := mfgca.Open(l.TPMState(host))
	if err != nil {
		return fmt.Errorf("lab: %s's manufacturer CA: %w", host, err)
	}
	expired, err := mfg.IssueEK(ek.PublicKey, mfgca.EKTemplate{
		Manufacturer: tpmsim.Manufacturer, Model: "omens-sim", Version: tpmsim.FirmwareVersion,
		NotBefore: mfg.Intermediate().NotBefore, NotAfter: time.Now().Add(-time.Minute),
	})
	if err != nil {
		return fmt.Errorf("lab: %s's manufacturer CA: %w", host, err)
	}
	cert, err := x509.ParseCertificate(expired)
	if err != nil {
		return err
	}
	orig, err := x509.ParseCertificate(ek.Certificate)
	if err != nil {
		return fmt.Errorf("lab: %s's EK certificate: %w", host, err)
	}

	serverLog := process{name: "spire-server", dir: l.Dir}.logFile()
	id := "spiffe://" + TrustDomain + "/spire/agent/tpm/" + hash
	// The server's decisions on this agent: logrus writes agent_id first after msg.
	rejected, warned, accepted := decision("rejected", id), decision("accepted with warnings", id), decision("accepted", id)
	n := countLines(serverLog, rejected)
	if err := l.writeEKCert(host, ek.Kind, expired); err != nil {
		return err
	}
	// Whatever happens next, the lab gets its valid certificate and "reject" back.
	restored := false
	defer func() {
		if !restored {
			err = errors.Join(err, l.restoreEKCert(ctx, p, ca, host, ek))
		}
	}()
	// The agent plugin reads the EK certificate once, when it starts.
	if err := l.restartAgent(ctx, p, host); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. %s's manufacturer CA issues its EK a certificate that expired a minute ago (notAfter %s), written to its NV index 0x%08X; its agent restarts and reads it\n",
		host, cert.NotAfter.UTC().Format(time.RFC3339), uint32(ek.Kind.CertIndex))
	line, err := waitLine(ctx, serverLog, rejected, n, 3*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. at its next attestation the server refuses it under expired_ek_cert = \"reject\" (its default):\n   check=%s %s\n",
		logField(line, "check"), logReason(line, "reason"))

	n = countLines(serverLog, warned)
	l.expiredEKCert = "warn"
	if err := l.restartServer(ctx, p, ca); err != nil {
		return err
	}
	fmt.Fprintln(out, "3. the lab's inventory sets expired_ek_cert = \"warn\" in its spire_server block; the server's configuration is rendered again, the server restarted")
	if line, err = waitLine(ctx, serverLog, warned, n, 3*time.Minute); err != nil {
		return err
	}
	sel, err := l.agentSelectors(ctx, id)
	if err != nil {
		return err
	}
	if !slices.Contains(sel, "tpm:ek_cert:expired") || !slices.Contains(sel, fmt.Sprintf("tpm:ek_cert:serial:%x", cert.SerialNumber)) {
		return fmt.Errorf("lab: %s attested under \"warn\" without the selector tpm:ek_cert:expired: %v", id, sel)
	}
	fmt.Fprintf(out, "4. the agent attests: the server's API shows %s\n   with the selectors tpm:ek_cert:expired and tpm:ek_cert:serial:%x (the expired certificate); its log warns:\n   %s\n",
		id, cert.SerialNumber, logField(line, "warnings"))

	restored = true
	n = countLines(serverLog, accepted)
	if err := l.restoreEKCert(ctx, p, ca, host, ek); err != nil {
		return err
	}
	if _, err = waitLine(ctx, serverLog, accepted, n, 3*time.Minute); err != nil {
		return err
	}
	if sel, err = l.agentSelectors(ctx, id); err != nil {
		return err
	}
	serial := fmt.Sprintf("tpm:ek_cert:serial:%x", orig.SerialNumber)
	if slices.Contains(sel, "tpm:ek_cert:expired") || !slices.Contains(sel, serial) {
		return fmt.Errorf("lab: %s attested with its valid EK certificate back, with selectors %v", id, sel)
	}
	fmt.Fprintf(out, "5. restored: the valid certificate back in the NV index (the agent restarted), expired_ek_cert back to \"reject\" (the server restarted);\n   the agent attests with %s, without tpm:ek_cert:expired\n", serial)
	return nil
}

// decision is what the server's NodeAttestor "tpm" logs when it decides (result) on
// agent id.
func decision(result, id string) string {
	return fmt.Sprintf("msg=\"tpm attestation %s\" agent_id=%q", result, id)
}

// endorsementKey is host's first EK, with the certificate its NV index holds.
func (l *Lab) endorsementKey(host string) (tpm.EndorsementKey, error) {
	t, err := tpm.Open(l.TPMSocket(host))
	if err != nil {
		return tpm.EndorsementKey{}, err
	}
	defer t.Close()
	eks, err := tpm.EndorsementKeys(t)
	if err != nil {
		return tpm.EndorsementKey{}, err
	}
	if len(eks) == 0 || eks[0].Certificate == nil {
		return tpm.EndorsementKey{}, fmt.Errorf("lab: %s's TPM holds no EK certificate", host)
	}
	return eks[0], nil
}

// writeEKCert writes cert into host's EK certificate index for kind, as its
// manufacturer does.
func (l *Lab) writeEKCert(host string, kind tpmrules.EKKind, cert []byte) error {
	t, err := tpm.Open(l.TPMSocket(host))
	if err != nil {
		return err
	}
	defer t.Close()
	if err := tpmsim.WriteEKCert(t, kind, cert); err != nil {
		return fmt.Errorf("lab: %s: %w", host, err)
	}
	return nil
}

// restoreEKCert puts ek's own certificate back in host's TPM and the server back on its
// default expired_ek_cert.
func (l *Lab) restoreEKCert(ctx context.Context, p *ports, ca *caState, host string, ek tpm.EndorsementKey) error {
	if err := l.writeEKCert(host, ek.Kind, ek.Certificate); err != nil {
		return err
	}
	if err := l.restartAgent(ctx, p, host); err != nil {
		return err
	}
	l.expiredEKCert = ""
	return l.restartServer(ctx, p, ca)
}
