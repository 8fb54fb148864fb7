package doctor

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/prover"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/spireplugin/agent"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// DevIDRenewWarning is how long before its expiry a DevID certificate is warned about.
const DevIDRenewWarning = 14 * 24 * time.Hour

const giveAgentConfig = "give --agent-config FILE, the SPIRE agent's configuration (e.g. /etc/spire/agent.conf)"

// notChecked is the line of an agent check without an agent configuration to read.
func (h *host) notChecked(name string) {
	switch {
	case h.opts.AgentConfigPath == "":
		h.add(name, Warn, "not checked: no --agent-config given", "give --agent-config FILE")
	case h.agent != nil && h.agent.Attestor == nil:
		h.add(name, Warn, `not checked: the agent configuration has no NodeAttestor "tpm"`, `configure NodeAttestor "tpm" (plugin_cmd = the omens-attestor-agent binary)`)
	default:
		h.add(name, Warn, "not checked: the agent configuration cannot be read (see agent_config)", "fix check agent_config first")
	}
}

// attesting reports whether the agent checks can run; when not, it adds name's line.
func (h *host) attesting(name string) bool {
	if h.attestor == nil {
		h.notChecked(name)
		return false
	}
	return true
}

// checkAgentConfig reads --agent-config, and its NodeAttestor "tpm" plugin_data as the
// plugin will (agent.ParseConfig): a key the plugin refuses fails here.
func (h *host) checkAgentConfig() {
	path := h.opts.AgentConfigPath
	if path == "" {
		h.add("agent_config", Warn, fmt.Sprintf("not checked: no --agent-config given; the checks use the plugin's defaults (%s PCRs %s, AK at %s)",
			tpmrules.DefaultPCRBank, pcrList(tpmrules.DefaultPCRs()), tpmrules.FormatHandle(tpmrules.DefaultAKHandle)), giveAgentConfig)
		return
	}
	src, err := limits.ReadFile(path, limits.AgentConfig)
	if err != nil {
		h.add("agent_config", Fail, err.Error(), "give the SPIRE agent's configuration file")
		return
	}
	c, err := ParseAgentConfig(path, src)
	if err != nil {
		h.add("agent_config", Fail, err.Error(), "fix the file: spire-agent validate -config "+path+" says the same")
		return
	}
	h.agent = c
	if c.Attestor == nil {
		h.add("agent_config", Warn, fmt.Sprintf(`%s: no NodeAttestor "tpm" (NodeAttestors: %s): this agent does not attest with its TPM`, path, strings.Join(c.NodeAttestors, ", ")),
			`add NodeAttestor "tpm" with plugin_cmd = the omens-attestor-agent binary (omens config render writes it)`)
		return
	}
	pc, notes := agent.ParseConfig(c.Attestor.Data)
	if pc == nil {
		h.add("agent_config", Fail, fmt.Sprintf(`%s:%d: NodeAttestor "tpm": %s`, path, c.Attestor.Line, strings.Join(notes, "; ")), "fix its plugin_data")
		return
	}
	h.attestor = pc
	if len(notes) > 0 {
		h.add("agent_config", Fail, fmt.Sprintf(`%s:%d: NodeAttestor "tpm" plugin_data: %s`, path, c.Attestor.Line, strings.Join(notes, "; ")),
			"fix its plugin_data: the plugin refuses to configure (the agent does not start)")
		return
	}
	mode := "EK mode"
	if pc.DevID != nil {
		mode = "DevID mode"
	}
	h.pass("agent_config", `%s: trust domain %s, server %s, NodeAttestor "tpm" in %s`, path, c.TrustDomain,
		net.JoinHostPort(c.ServerAddress, strconv.Itoa(c.ServerPort)), mode)
}

// checkPlugin checks plugin_cmd and plugin_checksum: SPIRE refuses to start a plugin
// whose binary does not hash to plugin_checksum.
func (h *host) checkPlugin() {
	if !h.attesting("plugin") {
		h.notChecked("plugin_checksum")
		return
	}
	a := h.agent.Attestor
	cmd := a.Cmd
	if cmd == "" {
		h.add("plugin", Fail, `NodeAttestor "tpm" has no plugin_cmd: SPIRE has no built-in "tpm"`, "set plugin_cmd to the omens-attestor-agent binary (the package installs it in /usr/lib/omens)")
		h.add("plugin_checksum", Warn, "not checked: no plugin_cmd", "fix check plugin first")
		return
	}
	fi, err := os.Stat(cmd)
	switch {
	case err != nil:
		h.add("plugin", Fail, fmt.Sprintf("plugin_cmd %s: %v", cmd, errors.Unwrap(err)), "install omens (its package puts omens-attestor-agent in /usr/lib/omens), or fix plugin_cmd")
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		h.add("plugin", Fail, fmt.Sprintf("plugin_cmd %s is not an executable file (mode %s)", cmd, fi.Mode()), "chmod 0755 it, or fix plugin_cmd")
	default:
		h.pass("plugin", "%s (%d bytes)", cmd, fi.Size())
	}
	if err != nil {
		h.add("plugin_checksum", Warn, "not checked: no plugin binary", "fix check plugin first")
		return
	}
	sum, err := spireconf.Checksum(cmd)
	switch {
	case err != nil:
		h.add("plugin_checksum", Fail, err.Error(), "")
	case a.Checksum == "":
		h.add("plugin_checksum", Warn, fmt.Sprintf("no plugin_checksum: SPIRE runs whatever binary is at %s (its sha256 is %s)", cmd, sum),
			fmt.Sprintf(`set plugin_checksum = "%s" once the binary is the one you installed`, sum))
	case !strings.EqualFold(a.Checksum, sum):
		h.add("plugin_checksum", Fail, fmt.Sprintf("plugin_checksum %s is not the sha256 of %s, %s: SPIRE refuses to start the plugin", a.Checksum, cmd, sum),
			fmt.Sprintf(`reinstall the plugin the checksum was made for, or, for a binary you trust, set plugin_checksum = "%s"`, sum))
	default:
		h.pass("plugin_checksum", "sha256 %s matches %s", sum, cmd)
	}
}

// checkAK checks the AK handle: empty (the agent creates the AK at its first
// attestation), an AK under the EK the agent attests with, or another key (the agent
// fails: tpm.ErrHandleInUse).
func (h *host) checkAK() {
	if !h.attesting("ak") {
		return
	}
	if h.t == nil {
		h.noTPM("ak")
		return
	}
	handle := h.attestor.AKHandle
	if handle == 0 {
		handle = tpmrules.DefaultAKHandle
	}
	at := tpmrules.FormatHandle(handle)
	p, err := tpm.ReadPersistent(h.t, handle)
	if err != nil {
		h.add("ak", Fail, err.Error(), "")
		return
	}
	if p == nil {
		h.pass("ak", "no key at %s yet: the agent creates the AK there at its first attestation", at)
		return
	}
	pub := p.Public
	if err := tpm.IsAttestationKey(pub); err != nil {
		h.add("ak", Fail, fmt.Sprintf("%s holds a key that is not an AK: %v", at, err),
			fmt.Sprintf("set ak_handle to a free persistent handle, or evict the key (tpm2_evictcontrol -C o -c %s) if nothing uses it", at))
		return
	}
	kind, ok := h.agentEKKind()
	if !ok {
		h.pass("ak", "%s holds an AK (%s)", at, tpmrules.KeyTypeName(pub.Type))
		return
	}
	ek, err := tpm.LoadEK(h.t, kind)
	if err != nil {
		h.add("ak", Fail, err.Error(), "")
		return
	}
	defer ek.Close(h.t)
	qn, err := tpmrules.AKQualifiedName(ek.Public.NameAlg, ek.Name.Buffer, pub.NameAlg, p.Name)
	if err != nil || string(qn) != string(p.QualifiedName) {
		h.add("ak", Warn, fmt.Sprintf("%s holds an AK of another EK than the %s EK the agent attests with", at, kind.Name),
			"nothing to do: the agent replaces it at its next attestation")
		return
	}
	h.pass("ak", "%s holds an AK (%s) under the %s EK", at, tpmrules.KeyTypeName(pub.Type), kind.Name)
}

// agentEKKind is the EK the agent attests with: its ek_type, else the first kind the TPM
// has a certificate for, as the prover chooses.
func (h *host) agentEKKind() (tpmrules.EKKind, bool) {
	if h.attestor.EKType != "" {
		return tpmrules.EKKindNamed(h.attestor.EKType)
	}
	for _, kind := range tpmrules.EKKinds {
		if _, err := tpm.ReadEKCertificate(h.t, kind); err == nil {
			return kind, true
		}
	}
	return tpmrules.EKRSA2048, true
}

// checkDevID checks the DevID certificate (its dates) and key (in this TPM, the
// certificate's key), as the agent reads them at every attestation in DevID mode.
func (h *host) checkDevID() {
	if !h.attesting("devid_cert") {
		h.notChecked("devid_key")
		return
	}
	d := h.attestor.DevID
	if d == nil {
		h.pass("devid_cert", "not used: the agent attests in EK mode (no devid_cert_path)")
		h.pass("devid_key", "not used: the agent attests in EK mode (no devid_priv_path)")
		return
	}
	_, leaf, err := prover.ReadDevIDChain(d.CertPath)
	switch {
	case err != nil:
		h.add("devid_cert", Fail, err.Error(), "enroll the host's DevID: omens devid enroll --ra URL --host NAME")
	default:
		h.checkDevIDDates(d.CertPath, leaf)
	}
	if h.t == nil {
		h.noTPM("devid_key")
		return
	}
	if err != nil {
		h.add("devid_key", Warn, "not checked: no DevID certificate (see devid_cert)", "fix check devid_cert first")
		return
	}
	if _, err := prover.CheckDevIDKey(h.t, *d); err != nil {
		h.add("devid_key", Fail, err.Error(), "enroll again (omens devid enroll), which makes a new key in this TPM and its certificate")
		return
	}
	where := "at " + tpmrules.FormatHandle(d.Handle)
	if d.Handle == 0 {
		where = "from " + d.PrivPath + ", loaded under the SRK"
	}
	h.pass("devid_key", "%s in this TPM, the key of the certificate", where)
}

func (h *host) checkDevIDDates(path string, c *x509.Certificate) {
	who := fmt.Sprintf("%s: CN=%s, serial %x", path, c.Subject.CommonName, c.SerialNumber)
	until := c.NotAfter.UTC().Format(time.RFC3339)
	renew := "renew it: omens devid renew --ra URL --force"
	switch left := c.NotAfter.Sub(h.now); {
	case h.now.Before(c.NotBefore):
		h.add("devid_cert", Fail, fmt.Sprintf("%s is not valid before %s", who, c.NotBefore.UTC().Format(time.RFC3339)), "check this host's clock")
	case left <= 0:
		h.add("devid_cert", Fail, fmt.Sprintf("%s expired at %s", who, until), renew+" (or enroll again with omens devid enroll): the server refuses it (devid_expired)")
	case left < DevIDRenewWarning:
		h.add("devid_cert", Warn, fmt.Sprintf("%s expires at %s, in %s", who, until, days(left)),
			renew+"; is the omens-devid-renew timer running (systemctl status omens-devid-renew.timer)?")
	default:
		h.pass("devid_cert", "%s, valid until %s (%s)", who, until, days(left))
	}
}

func days(d time.Duration) string {
	n := int(d.Hours() / 24)
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// checkServer connects to server_address:server_port and completes a TLS handshake, as
// the agent's first call does. Nothing is trusted from it: the SPIFFE ID its certificate
// names is reported, not verified (the agent verifies it against its trust bundle).
func (h *host) checkServer() {
	if !h.attesting("spire_server") {
		return
	}
	c := h.agent
	if c.ServerAddress == "" {
		h.add("spire_server", Fail, "the agent configuration has no server_address", "set server_address (and server_port) in the agent block")
		return
	}
	addr := net.JoinHostPort(c.ServerAddress, strconv.Itoa(c.ServerPort))
	timeout := h.opts.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, &tls.Config{
		// Only to see that a TLS server answers and what it calls itself; the agent
		// verifies the server against its trust bundle.
		InsecureSkipVerify: true, //nolint:gosec
		MinVersion:         tls.VersionTLS12,
	})
	if err != nil {
		h.add("spire_server", Fail, fmt.Sprintf("%s: %v", addr, err),
			"start the SPIRE server, or fix server_address/server_port, DNS and the firewall (the agent connects to TCP "+strconv.Itoa(c.ServerPort)+")")
		return
	}
	defer conn.Close()
	id := "no SPIFFE ID"
	if certs := conn.ConnectionState().PeerCertificates; len(certs) > 0 && len(certs[0].URIs) > 0 {
		id = certs[0].URIs[0].String()
	}
	if c.TrustDomain != "" && !strings.HasPrefix(id, "spiffe://"+c.TrustDomain+"/") {
		h.add("spire_server", Warn, fmt.Sprintf("%s answers TLS as %s, not of trust domain %s", addr, id, c.TrustDomain),
			"check server_address: is it this trust domain's SPIRE server?")
		return
	}
	h.pass("spire_server", "%s answers TLS as %s", addr, id)
}
