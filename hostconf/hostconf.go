// Package hostconf renders, for one host of an inventory (package registry), the files
// that host runs on: the SPIRE server's configuration (on the server host), the SPIRE
// agent's, the RA's settings (on the CA host), the DevID renewal's settings, and the
// systemd units that start them. It is the one place that decides what a host's phase
// means for SPIRE; package spireconf stays the one writer of SPIRE's HCL, and the lab
// renders its own Tower through this package.
//
// A host's phase (registry.Phase) decides its agent's NodeAttestor: "join_token" (the
// token read from join_token_file, so no secret is in the file; SPIRE reads that file at
// every start, so it stays, or gets a fresh token), "ek" (NodeAttestor
// "tpm", EK certificate mode) or "devid" (NodeAttestor "tpm" with the DevID certificate
// and the key's persistent handle). The phases of all hosts decide the server's:
// NodeAttestor "join_token" is kept while any host is on a join token; NodeAttestor
// "tpm" serves DevID mode (devid_ca_path = step-ca's root, devid_crl_url = its CRL) when
// a host is in phase devid, EK mode when a host is in phase ek. One plugin serves one
// mode: with hosts in phases ek and devid at once it serves DevID mode, and the hosts in
// phase ek (rolled back from DevID mode, each named by its ek_hash) are listed as EK-mode
// exceptions in the file of ek_mode_hosts_path, rendered beside the server's
// configuration (RoleEKModeHosts); the plugin still verifies their EK certificates and
// gives them the selector tpm:mode:ek_cert. While every
// host is on a join token, it serves DevID mode when the inventory names step-ca (the
// CA is there to enroll DevIDs), EK mode otherwise.
//
// Changing a host's phase and rendering again is all that moving a host on, or back,
// takes; the files that change are the host's agent configuration and the server's.
//
// Every file is named by its installed path (Paths of the host, registry.PathsOf); Write
// puts them under a root directory ("/" installs them) atomically, and Diff compares them
// with what is there.
package hostconf

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"omens.dev/omens/enroll"
	"omens.dev/omens/protocol"
	"omens.dev/omens/registry"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpmrules"
)

// The roles of rendered files.
const (
	RoleServerConf   = "spire-server.conf"
	RoleEKModeHosts  = "ek-mode-hosts"
	RoleAgentConf    = "spire-agent.conf"
	RoleRAEnv        = "omens-ra.env"
	RoleDevIDEnv     = "omens-devid.env"
	RoleServerUnit   = "spire-server.service"
	RoleAgentUnit    = "spire-agent.service"
	RoleRAUnit       = "omens-ra.service"
	RoleRenewService = "omens-devid-renew.service"
	RoleRenewTimer   = "omens-devid-renew.timer"
)

// The SPIRE plugins that ship with omens, in the plugin directory.
const (
	ServerPlugin = "omens-attestor-server"
	AgentPlugin  = "omens-attestor-agent"
)

// File is one rendered file.
type File struct {
	Role string      // what it is: RoleServerConf, RoleAgentUnit, ...
	Path string      // where it is installed: an absolute path
	Mode fs.FileMode // its permissions
	Data []byte
}

// Options tune a rendering.
type Options struct {
	// PluginDir is where the plugin binaries are read to compute plugin_checksum; the
	// host's plugin_dir when empty. plugin_cmd always names plugin_dir, where the
	// binaries are installed.
	PluginDir string
	// SyncInterval, when set, is the server's cache_reload_interval and the agents'
	// sync_interval: how soon new entries reach agents (the lab: a second).
	SyncInterval time.Duration
	// Telemetry, when set, is the telemetry section of the configuration rendered: the
	// Prometheus endpoint where SPIRE serves its metrics and the plugins' (the lab sets
	// it; docs/metrics.md).
	Telemetry *spireconf.Telemetry
}

// errorf is a rendering the inventory does not allow, naming its file.
func errorf(inv *registry.Inventory, format string, args ...any) error {
	return fmt.Errorf("hostconf: %s: %s", inv.File, fmt.Sprintf(format, args...))
}

// Render returns every file of host, in a fixed order: the server's configuration and
// unit (on the server host), the agent's, the RA's (on the RA host), the DevID renewal's
// (when the inventory has an RA), then those of the plan's services that read their SVID
// from files and run there (omens svid helper's configuration; OpenBao's listener block).
func Render(inv *registry.Inventory, host string, opt Options) ([]File, error) {
	h := inv.Host(host)
	if h == nil {
		var names []string
		for _, h := range inv.Hosts {
			names = append(names, h.Name)
		}
		return nil, errorf(inv, "host %q is not in the inventory (its hosts: %s)", host, strings.Join(names, ", "))
	}
	if inv.Server == nil {
		return nil, errorf(inv, "spire_server: missing: add a spire_server block naming the server's host and address, such as spire_server { host = \"spire\" address = \"spire.funlab.casa\" }")
	}
	p := inv.PathsOf(h)
	units := unitsByRole(p)
	var out []File
	if inv.Server.Host == host {
		srv, err := Server(inv, opt)
		if err != nil {
			return nil, err
		}
		b, err := srv.Render()
		if err != nil {
			return nil, fmt.Errorf("hostconf: %w", err)
		}
		out = append(out, File{Role: RoleServerConf, Path: p.SPIREServerConf, Mode: 0o644, Data: b})
		if ek := EKModeHosts(inv); len(ek) > 0 {
			out = append(out, File{Role: RoleEKModeHosts, Path: p.EKModeHosts, Mode: 0o644, Data: ekModeHostsFile(inv, ek)})
		}
		out = append(out, units[RoleServerUnit])
	}
	agent, err := Agent(inv, host, opt)
	if err != nil {
		return nil, err
	}
	b, err := agent.Render()
	if err != nil {
		return nil, fmt.Errorf("hostconf: %w", err)
	}
	out = append(out, File{Role: RoleAgentConf, Path: p.SPIREAgentConf, Mode: 0o644, Data: b}, units[RoleAgentUnit])
	if inv.RA != nil && inv.RA.Host == host {
		out = append(out, File{Role: RoleRAEnv, Path: p.RAEnv, Mode: 0o644, Data: RAEnv(inv)}, units[RoleRAUnit])
	}
	if inv.RA != nil {
		out = append(out, File{Role: RoleDevIDEnv, Path: p.DevIDEnv, Mode: 0o644, Data: DevIDEnv(inv, host)},
			units[RoleRenewService], units[RoleRenewTimer])
	}
	svid, err := svidFiles(inv, h, p)
	if err != nil {
		return nil, err
	}
	return append(out, svid...), nil
}

// header is the comment at the top of a rendered configuration file.
func header(inv *registry.Inventory, what string) string {
	return fmt.Sprintf("%s.\nRendered by `omens config render` from %s: change the inventory and render again\nrather than editing this file.", what, inv.File)
}

// ServerMode returns the mode NodeAttestor "tpm" serves (protocol.ModeEKCert or
// protocol.ModeDevID) and whether NodeAttestor "join_token" stays, from the phases of all hosts.
func ServerMode(inv *registry.Inventory) (mode string, joinToken bool, err error) {
	var ek, devid []string
	for _, h := range inv.Hosts {
		switch h.Phase {
		case registry.PhaseJoinToken:
			joinToken = true
		case registry.PhaseEK:
			ek = append(ek, h.Name)
		case registry.PhaseDevID:
			devid = append(devid, h.Name)
		default:
			return "", false, errorf(inv, "host %q: phase: missing: the server's configuration follows every host's phase; set phase = \"join_token\", \"ek\" or \"devid\"", h.Name)
		}
	}
	switch {
	case len(ek) > 0 && len(devid) > 0:
		// DevID mode, the hosts in phase ek as EK-mode exceptions, known by their EK.
		for _, name := range ek {
			if inv.Host(name).EKHash == "" {
				return "", false, errorf(inv, "host %q: ek_hash: missing: in phase ek while %s %s in phase devid, the server accepts it in EK mode by its EK hash; set ek_hash (omens ek show prints it)",
					name, strings.Join(devid, ", "), isAre(len(devid)))
			}
		}
		mode = protocol.ModeDevID
	case len(devid) > 0:
		mode = protocol.ModeDevID
	case len(ek) > 0:
		mode = protocol.ModeEKCert
	case inv.StepCA != nil:
		mode = protocol.ModeDevID
	default:
		mode = protocol.ModeEKCert
	}
	if mode == protocol.ModeDevID && inv.StepCA == nil {
		return "", false, errorf(inv, "step_ca: missing: hosts in phase devid need the DevID CA, such as step_ca { host = \"ca\" url = \"https://ca.funlab.casa\" }")
	}
	return mode, joinToken, nil
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// EKModeHosts returns the hosts in phase ek while others are in phase devid: the EK-mode
// exceptions of a server in DevID mode. It returns nil otherwise.
func EKModeHosts(inv *registry.Inventory) []*registry.Host {
	var ek []*registry.Host
	devid := false
	for i := range inv.Hosts {
		switch inv.Hosts[i].Phase {
		case registry.PhaseEK:
			ek = append(ek, &inv.Hosts[i])
		case registry.PhaseDevID:
			devid = true
		}
	}
	if !devid {
		return nil
	}
	return ek
}

// ekModeHostsFile is the server's ek_mode_hosts_path: the EK hash of each host, one a
// line, each under a comment naming it.
func ekModeHostsFile(inv *registry.Inventory, hosts []*registry.Host) []byte {
	var b strings.Builder
	for _, l := range strings.Split(header(inv, "EK hashes of the hosts in phase ek while others are in phase devid: the SPIRE\nserver (DevID mode) also accepts these TPMs in EK mode (ek_mode_hosts_path)"), "\n") {
		b.WriteString("# " + l + "\n")
	}
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n# %s\n%s\n", h.Name, h.EKHash)
	}
	return []byte(b.String())
}

// Server returns the SPIRE server's configuration.
func Server(inv *registry.Inventory, opt Options) (spireconf.Server, error) {
	if inv.Server == nil {
		return spireconf.Server{}, errorf(inv, "spire_server: missing")
	}
	sh := inv.Host(inv.Server.Host)
	if sh == nil {
		return spireconf.Server{}, errorf(inv, "spire_server: host: %q is not a host of the inventory", inv.Server.Host)
	}
	p := inv.PathsOf(sh)
	mode, joinToken, err := ServerMode(inv)
	if err != nil {
		return spireconf.Server{}, err
	}
	data := []spireconf.Setting{
		{Key: "devid_mode", Value: mode},
		{Key: "ca_path", Value: p.EKCA},
	}
	if mode == protocol.ModeDevID {
		data = append(data,
			spireconf.Setting{Key: "devid_ca_path", Value: p.StepCARoot},
			spireconf.Setting{Key: "devid_crl_url", Value: inv.StepCA.CRLURL()})
		if len(EKModeHosts(inv)) > 0 {
			data = append(data, spireconf.Setting{Key: "ek_mode_hosts_path", Value: p.EKModeHosts})
		}
	}
	data = append(data,
		spireconf.Setting{Key: "pcr_bank", Value: tpmrules.DefaultPCRBank},
		spireconf.Setting{Key: "pcr_selection", Value: tpmrules.DefaultPCRs()})
	if usesPolicy(inv) {
		data = append(data, spireconf.Setting{Key: "pcr_policy_path", Value: p.PCRPolicy})
	}
	if inv.Server.EventLog != "" {
		data = append(data, spireconf.Setting{Key: "event_log", Value: inv.Server.EventLog})
	}
	if inv.Server.ExpiredEKCert != "" {
		data = append(data, spireconf.Setting{Key: "expired_ek_cert", Value: inv.Server.ExpiredEKCert})
	}
	tpm, err := plugin(p, opt, ServerPlugin, data)
	if err != nil {
		return spireconf.Server{}, err
	}
	what := fmt.Sprintf("The SPIRE server of %s: NodeAttestor \"tpm\" in %s mode", inv.TrustDomain, mode)
	if ek := EKModeHosts(inv); len(ek) > 0 {
		var names []string
		for _, h := range ek {
			names = append(names, h.Name)
		}
		what += fmt.Sprintf(" (%s in EK mode, as exceptions)", strings.Join(names, ", "))
	}
	if joinToken {
		what += ",\nand \"join_token\" while a host is on one"
	}
	conf := spireconf.Server{
		Header:      header(inv, what),
		TrustDomain: inv.TrustDomain, BindAddress: inv.Server.BindAddress, BindPort: inv.Server.Port,
		SocketPath: p.SPIREServerSocket, DataDir: p.SPIREServerData, LogLevel: "INFO",
		AgentTTL: inv.Server.AgentTTL, CacheReloadInterval: opt.SyncInterval, Telemetry: opt.Telemetry,
		Plugins: []spireconf.Plugin{
			spireconf.SQLite(filepath.Join(p.SPIREServerData, "datastore.sqlite3")),
			spireconf.ServerDiskKeyManager(filepath.Join(p.SPIREServerData, "keys.json")),
			tpm,
		},
	}
	if joinToken {
		conf.Plugins = append(conf.Plugins, spireconf.JoinToken())
	}
	return conf, nil
}

// usesPolicy reports whether the server checks boot state against a PCR policy: when
// the inventory names its path, or a host names its policy group.
func usesPolicy(inv *registry.Inventory) bool {
	if inv.Paths.PCRPolicy != "" || inv.Host(inv.Server.Host).Paths.PCRPolicy != "" {
		return true
	}
	for _, h := range inv.Hosts {
		if h.PCRPolicy != "" {
			return true
		}
	}
	return false
}

// Agent returns host's SPIRE agent configuration, by its phase.
func Agent(inv *registry.Inventory, host string, opt Options) (spireconf.Agent, error) {
	h := inv.Host(host)
	if h == nil {
		return spireconf.Agent{}, errorf(inv, "host %q is not in the inventory", host)
	}
	if inv.Server == nil {
		return spireconf.Agent{}, errorf(inv, "spire_server: missing")
	}
	p := inv.PathsOf(h)
	conf := spireconf.Agent{
		Header:      header(inv, fmt.Sprintf("The SPIRE agent of host %s, in phase %s", host, h.Phase)),
		TrustDomain: inv.TrustDomain, ServerAddress: inv.Server.Address, ServerPort: inv.Server.Port,
		DataDir: p.SPIREAgentData, LogLevel: "INFO", SocketPath: p.SPIREAgentSocket,
		AdminSocketPath: p.SPIREAgentAdminSocket, TrustBundlePath: p.TrustBundle,
		SyncInterval: opt.SyncInterval, Telemetry: opt.Telemetry,
	}
	var attestor spireconf.Plugin
	switch h.Phase {
	case registry.PhaseJoinToken:
		attestor, conf.JoinTokenFile = spireconf.JoinToken(), p.JoinTokenFile
	case registry.PhaseEK, registry.PhaseDevID:
		data := []spireconf.Setting{{Key: "tpm_path", Value: p.TPM}}
		if h.Phase == registry.PhaseDevID {
			data = append(data,
				spireconf.Setting{Key: "devid_cert_path", Value: filepath.Join(p.DevIDDir, enroll.CertFile)},
				spireconf.Setting{Key: "devid_priv_path", Value: h.DevIDHandleOf()})
		}
		if p.EventLogPath != "" {
			data = append(data, spireconf.Setting{Key: "event_log_path", Value: p.EventLogPath})
		}
		data = append(data,
			spireconf.Setting{Key: "pcr_bank", Value: tpmrules.DefaultPCRBank},
			spireconf.Setting{Key: "pcr_selection", Value: tpmrules.DefaultPCRs()})
		var err error
		if attestor, err = plugin(p, opt, AgentPlugin, data); err != nil {
			return spireconf.Agent{}, err
		}
	default:
		return spireconf.Agent{}, errorf(inv, "host %q: phase: missing: set phase = \"join_token\", \"ek\" or \"devid\" (how its agent attests)", host)
	}
	conf.Plugins = []spireconf.Plugin{attestor, spireconf.AgentDiskKeyManager(p.SPIREAgentData), spireconf.UnixWorkloadAttestor()}
	return conf, nil
}

// plugin is NodeAttestor "tpm" run from name in the plugin directory, its checksum that
// of the binary in opt.PluginDir (or the plugin directory).
func plugin(p registry.Paths, opt Options, name string, data []spireconf.Setting) (spireconf.Plugin, error) {
	dir := opt.PluginDir
	if dir == "" {
		dir = p.PluginDir
	}
	sum, err := spireconf.Checksum(filepath.Join(dir, name))
	if err != nil {
		return spireconf.Plugin{}, fmt.Errorf("hostconf: %w (plugin_checksum is that binary's SHA-256: install the omens package, or give the directory that holds it with --plugin-dir)", err)
	}
	return spireconf.Plugin{Type: "NodeAttestor", Name: "tpm", Cmd: filepath.Join(p.PluginDir, name), Checksum: sum, Data: data}, nil
}

// RAEnv is the RA's settings, read by omens-ra.service (EnvironmentFile): its listen
// address and name, step-ca's URL and the provisioner. The unit holds the paths.
func RAEnv(inv *registry.Inventory) []byte {
	return env(fmt.Sprintf("The settings of omens-ra.service (omens ra serve) on host %s, rendered by\n`omens config render` from %s.", inv.RA.Host, inv.File), [][2]string{
		{"OMENS_RA_LISTEN", inv.RA.ListenAddress()},
		{"OMENS_RA_NAME", inv.RA.Name()},
		{"OMENS_STEP_CA_URL", inv.StepCA.URL},
		{"OMENS_STEP_CA_PROVISIONER", inv.StepCA.Provisioner},
	})
}

// DevIDEnv is the DevID renewal's settings, read by omens-devid-renew.service: the RA's
// URL.
func DevIDEnv(inv *registry.Inventory, host string) []byte {
	return env(fmt.Sprintf("The settings of omens-devid-renew.service (omens devid renew) on host %s, rendered by\n`omens config render` from %s.", host, inv.File), [][2]string{
		{"OMENS_RA", inv.RA.URL},
	})
}

// env writes a systemd EnvironmentFile. The values come from the inventory, whose parser
// refuses spaces, quotes, backslashes and $ in them.
func env(head string, vars [][2]string) []byte {
	var b strings.Builder
	for _, l := range strings.Split(head, "\n") {
		b.WriteString("# " + l + "\n")
	}
	for _, v := range vars {
		b.WriteString(v[0] + "=" + v[1] + "\n")
	}
	return []byte(b.String())
}
