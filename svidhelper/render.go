package svidhelper

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"omens.dev/omens/spireconf"
)

// Service is a service of the plan that reads its X.509-SVID from files written by
// `omens svid helper`, which runs beside it as the service's own user (the user its
// registration entry selects, unix:user:...).
type Service struct {
	Workload string // the inventory's workload name, such as "openbao"
	Host     string // the host it runs on, such as "spire"
	SPIFFEID string // its SPIFFE ID
	User     string // the unix user of the service and of its helper
	// Helper is the helper's configuration.
	Helper Config
	// Listener is the OpenBao listener that reads the helper's files; nil for a
	// service that is not OpenBao.
	Listener *OpenBaoListener
}

// OpenBaoListener is OpenBao's `listener "tcp"` block, serving with the SVID files.
type OpenBaoListener struct {
	Address      string // address, such as "0.0.0.0:8200"
	CertFile     string // tls_cert_file: the helper's svid_file_name
	KeyFile      string // tls_key_file: the helper's svid_key_file_name
	ClientCAFile string // tls_client_ca_file: the helper's svid_bundle_file_name
	// RequireClientCert is tls_require_and_verify_client_cert: every client must show
	// a certificate that chains to ClientCAFile, the trust domain's bundle.
	RequireClientCert bool
}

// ListenerFor returns the OpenBao listener on address that reads the files c writes.
func ListenerFor(c *Config, address string) *OpenBaoListener {
	cert, key, bundle := c.Paths()
	return &OpenBaoListener{Address: address, CertFile: cert, KeyFile: key, ClientCAFile: bundle, RequireClientCert: true}
}

// Plan returns the plan's two services, in trust domain td ("funlab.casa") with the
// SPIRE agent's Workload API at agentAddress ("" leaves agent_address out: the helper
// then uses SPIFFE_ENDPOINT_SOCKET or DefaultAgentAddress):
//
//   - OpenBao on spire (user openbao): the helper writes into /run/openbao/svid (the
//     service's runtime directory, on tmpfs: the key never reaches a disk) and sends
//     SIGHUP, on which OpenBao reloads its listeners' certificates, to the pid in the
//     pid_file of OpenBao's configuration, /run/openbao/openbao.pid; OpenBao's listener
//     on port 8200 reads those files and requires client certificates of the trust
//     domain.
//   - step-ca on ca (user step): the helper writes step-ca's SVID, its client
//     certificate for calling OpenBao, into /run/step-ca/svid and runs step-ca itself
//     as its cmd (step-ca writes no pid file to signal): started once the files are
//     there, sent SIGHUP (on which step-ca reloads) at every rotation, started again
//     if it has exited.
func Plan(td, agentAddress string) []Service {
	files := func(dir string) Config {
		return Config{AgentAddress: agentAddress, CertDir: dir, DaemonMode: true,
			SVIDFileName: "svid.pem", SVIDKeyFileName: "svid_key.pem", SVIDBundleFileName: "svid_bundle.pem"}
	}
	openbao := Service{Workload: "openbao", Host: "spire", SPIFFEID: "spiffe://" + td + "/openbao", User: "openbao",
		Helper: files("/run/openbao/svid")}
	openbao.Helper.RenewSignal, openbao.Helper.PIDFileName = "SIGHUP", "/run/openbao/openbao.pid"
	openbao.Listener = ListenerFor(&openbao.Helper, "0.0.0.0:8200")
	stepCA := Service{Workload: "step-ca", Host: "ca", SPIFFEID: "spiffe://" + td + "/step-ca", User: "step",
		Helper: files("/run/step-ca/svid")}
	stepCA.Helper.RenewSignal = "SIGHUP"
	stepCA.Helper.Cmd, stepCA.Helper.CmdArgs = "/usr/bin/step-ca", "/etc/step-ca/config/ca.json --password-file /etc/step-ca/password.txt"
	return []Service{openbao, stepCA}
}

// RenderConfig writes c as a helper configuration file (HCL, spiffe-helper's keys), with
// a comment naming the service; Parse reads it back to the same settings. Settings
// left empty are left out, daemon_mode is written only when false.
func RenderConfig(s Service) ([]byte, error) {
	c := s.Helper
	var b bytes.Buffer
	fmt.Fprintf(&b, "# omens svid helper for %s on %s (%s), run as user %s:\n#   omens svid helper --config FILE\n", s.Workload, s.Host, s.SPIFFEID, s.User)
	set := func(key, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s = %s\n", key, spireconf.Quote(v))
		}
	}
	set("agent_address", c.AgentAddress)
	set("cert_dir", c.CertDir)
	set("svid_file_name", c.SVIDFileName)
	set("svid_key_file_name", c.SVIDKeyFileName)
	set("svid_bundle_file_name", c.SVIDBundleFileName)
	set("renew_signal", c.RenewSignal)
	set("pid_file_name", c.PIDFileName)
	set("cmd", c.Cmd)
	set("cmd_args", c.CmdArgs)
	if !c.DaemonMode {
		b.WriteString("daemon_mode = false\n")
	}
	if _, err := Parse(s.Workload+" helper configuration", b.Bytes()); err != nil {
		return nil, fmt.Errorf("svidhelper: render: %w", err)
	}
	return b.Bytes(), nil
}

// Render writes the listener "tcp" block for OpenBao's configuration (HCL).
func (l *OpenBaoListener) Render() ([]byte, error) {
	if l.Address == "" || l.CertFile == "" || l.KeyFile == "" || l.ClientCAFile == "" {
		return nil, errors.New("svidhelper: render: an OpenBao listener needs an address, tls_cert_file, tls_key_file and tls_client_ca_file")
	}
	var b bytes.Buffer
	b.WriteString("# The files omens svid helper writes; OpenBao reloads them on SIGHUP.\n")
	b.WriteString("listener \"tcp\" {\n")
	fmt.Fprintf(&b, "  address            = %s\n", spireconf.Quote(l.Address))
	fmt.Fprintf(&b, "  tls_cert_file      = %s\n", spireconf.Quote(l.CertFile))
	fmt.Fprintf(&b, "  tls_key_file       = %s\n", spireconf.Quote(l.KeyFile))
	fmt.Fprintf(&b, "  tls_client_ca_file = %s\n", spireconf.Quote(l.ClientCAFile))
	if l.RequireClientCert {
		fmt.Fprintf(&b, "  tls_require_and_verify_client_cert = %s\n", strconv.FormatBool(true))
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}
