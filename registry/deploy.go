package registry

import (
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"

	"omens.dev/omens/tpmrules"
)

// What `omens config render` reads from an inventory besides the registration: where the
// SPIRE server, the RA and step-ca run, where files live, and each host's phase. Every
// key is optional when parsing, so inventories written for `omens apply` alone still
// parse; package hostconf says which one a rendering needs, naming it.

// Phase is where a host is in the migration off join tokens: the NodeAttestor its SPIRE
// agent attests with.
type Phase string

// The phases, in the order a host goes through them.
const (
	// PhaseJoinToken: NodeAttestor "join_token", as the Tower runs today.
	PhaseJoinToken Phase = "join_token"
	// PhaseEK: NodeAttestor "tpm" in EK certificate mode (devid_mode = "ek_cert").
	PhaseEK Phase = "ek"
	// PhaseDevID: NodeAttestor "tpm" in DevID mode, with the DevID step-ca issued.
	PhaseDevID Phase = "devid"
)

// Phases lists every phase.
var Phases = []Phase{PhaseJoinToken, PhaseEK, PhaseDevID}

// SPIREServer is the spire_server block: the host that runs the SPIRE server and where
// agents reach it.
type SPIREServer struct {
	Host    string // the inventory host that runs it
	Address string // what agents dial (server_address), such as "spire.funlab.casa"
	Port    int    // bind_port and the agents' server_port; DefaultSPIREPort when unset
	// BindAddress is the server's bind_address, "0.0.0.0" when unset.
	BindAddress string
	// AgentTTL is the server's agent_ttl (agents re-attest at about half of it); zero
	// leaves SPIRE's default.
	AgentTTL time.Duration
	// EventLog is NodeAttestor "tpm"'s event_log ("ignore", "verify", "require"); empty
	// leaves the plugin's default.
	EventLog string
	// ExpiredEKCert is NodeAttestor "tpm"'s expired_ek_cert ("reject", "warn"); empty
	// leaves the plugin's default, "reject".
	ExpiredEKCert string
	Line          int
}

// RA is the ra block: the host that runs `omens ra serve` and the URL devices enroll at.
// The RA reads step-ca's ca.json, so it runs on step-ca's host.
type RA struct {
	Host string
	URL  string // https://NAME:PORT, what `omens devid enroll/renew --ra` take
	// Listen is what it listens on; ":PORT" of URL when unset.
	Listen string
	Line   int
}

// Name is the RA's DNS name, the host of its URL (its TLS certificate's name).
func (r *RA) Name() string { u, _ := url.Parse(r.URL); return u.Hostname() }

// ListenAddress is Listen, or all addresses on the port of URL.
func (r *RA) ListenAddress() string {
	if r.Listen != "" {
		return r.Listen
	}
	u, _ := url.Parse(r.URL)
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return ":" + port
}

// StepCA is the step_ca block: the CA that issues DevID certificates.
type StepCA struct {
	Host        string
	URL         string // https://NAME[:PORT]; it serves its CRL at URL/1.0/crl
	Provisioner string // the JWK provisioner the RA uses; DefaultProvisioner when unset
	Line        int
}

// CRLURL is where step-ca serves its CRL.
func (s *StepCA) CRLURL() string { return strings.TrimSuffix(s.URL, "/") + "/1.0/crl" }

// Defaults of the deploy blocks.
const (
	DefaultSPIREPort   = 8081
	DefaultProvisioner = "tower-of-omens"
)

// Paths are where the files of a host live. An empty field takes its default
// (DefaultPaths: the Debian package's layout and the plan's); the inventory's top-level
// paths block sets them for every host, a host's own paths block for that host.
type Paths struct {
	BinDir      string // omens (bin_dir)
	PluginDir   string // the SPIRE plugins omens-attestor-server and -agent (plugin_dir)
	SPIREBinDir string // spire-server and spire-agent (spire_bin_dir)
	UnitDir     string // systemd units (unit_dir)

	SPIREServerConf   string // spire_server_conf
	SPIREServerData   string // spire_server_data_dir
	SPIREServerSocket string // spire_server_socket, the server API
	SPIREAgentConf    string // spire_agent_conf
	SPIREAgentData    string // spire_agent_data_dir
	SPIREAgentSocket  string // spire_agent_socket, the Workload API
	// SPIREAgentAdminSocket is the agent's admin_socket_path; empty (the default) leaves
	// the admin API off.
	SPIREAgentAdminSocket string // spire_agent_admin_socket
	TrustBundle           string // trust_bundle: the SPIRE server's bundle, to bootstrap agents
	JoinTokenFile         string // join_token_file: the agent's join token, in phase join_token

	EKCA          string // ek_ca: TPM manufacturer CAs (file or directory), for the server and the RA
	EKModeHosts   string // ek_mode_hosts: EK hashes of the hosts in phase ek while others are in devid (the server's ek_mode_hosts_path)
	StepCARoot    string // step_ca_root: step-ca's root, the DevID CA
	StepCAConfig  string // step_ca_config: step-ca's ca.json, which holds the provisioner key
	ProvisionerPW string // provisioner_password_file
	PCRPolicy     string // pcr_policy: the boot-state policy
	RAState       string // ra_state_dir
	RAEnv         string // ra_env: the RA's settings, for omens-ra.service
	DevIDDir      string // devid_dir: the host's DevID certificate and key blobs
	DevIDEnv      string // devid_env: the renewal's settings, for omens-devid-renew.service
	TPM           string // tpm: the TPM device (or socket)
	EventLogPath  string // event_log: the boot event log; empty leaves the plugin's default
}

// pathKeys names the fields of Paths and their defaults, in the order they are listed.
var pathKeys = []struct {
	key   string
	field func(*Paths) *string
	def   string
}{
	{"bin_dir", func(p *Paths) *string { return &p.BinDir }, "/usr/bin"},
	{"plugin_dir", func(p *Paths) *string { return &p.PluginDir }, "/usr/lib/omens"},
	{"spire_bin_dir", func(p *Paths) *string { return &p.SPIREBinDir }, "/opt/spire/bin"},
	{"unit_dir", func(p *Paths) *string { return &p.UnitDir }, "/lib/systemd/system"},
	{"spire_server_conf", func(p *Paths) *string { return &p.SPIREServerConf }, "/etc/spire/server.conf"},
	{"spire_server_data_dir", func(p *Paths) *string { return &p.SPIREServerData }, "/var/lib/spire/server"},
	{"spire_server_socket", func(p *Paths) *string { return &p.SPIREServerSocket }, "/run/spire-server/private/api.sock"},
	{"spire_agent_conf", func(p *Paths) *string { return &p.SPIREAgentConf }, "/etc/spire/agent.conf"},
	{"spire_agent_data_dir", func(p *Paths) *string { return &p.SPIREAgentData }, "/var/lib/spire/agent"},
	{"spire_agent_socket", func(p *Paths) *string { return &p.SPIREAgentSocket }, "/run/spire-agent/public/api.sock"},
	{"spire_agent_admin_socket", func(p *Paths) *string { return &p.SPIREAgentAdminSocket }, ""},
	{"trust_bundle", func(p *Paths) *string { return &p.TrustBundle }, "/etc/spire/bundle.pem"},
	{"join_token_file", func(p *Paths) *string { return &p.JoinTokenFile }, "/etc/spire/join-token"},
	{"ek_ca", func(p *Paths) *string { return &p.EKCA }, "/etc/omens/tpm-ek-ca-certs"},
	{"ek_mode_hosts", func(p *Paths) *string { return &p.EKModeHosts }, "/etc/omens/ek-mode-hosts"},
	{"step_ca_root", func(p *Paths) *string { return &p.StepCARoot }, "/etc/omens/step-ca-root.pem"},
	{"step_ca_config", func(p *Paths) *string { return &p.StepCAConfig }, "/etc/step-ca/config/ca.json"},
	{"provisioner_password_file", func(p *Paths) *string { return &p.ProvisionerPW }, "/etc/omens/provisioner-password"},
	{"pcr_policy", func(p *Paths) *string { return &p.PCRPolicy }, "/etc/omens/pcr-policy.hcl"},
	{"ra_state_dir", func(p *Paths) *string { return &p.RAState }, "/var/lib/omens/ra"},
	{"ra_env", func(p *Paths) *string { return &p.RAEnv }, "/etc/omens/ra.env"},
	{"devid_dir", func(p *Paths) *string { return &p.DevIDDir }, "/var/lib/omens/devid"},
	{"devid_env", func(p *Paths) *string { return &p.DevIDEnv }, "/etc/omens/devid.env"},
	{"tpm", func(p *Paths) *string { return &p.TPM }, "/dev/tpmrm0"},
	{"event_log", func(p *Paths) *string { return &p.EventLogPath }, ""},
}

// DefaultPaths are the paths of a host that sets none: omens from the Debian package
// (/usr/bin, /usr/lib/omens, /lib/systemd/system), SPIRE in /opt/spire/bin as the plan
// installs it, configuration in /etc/spire and /etc/omens, state in /var/lib.
func DefaultPaths() Paths {
	var p Paths
	for _, k := range pathKeys {
		*k.field(&p) = k.def
	}
	return p
}

// Each calls f with the inventory key and a pointer to each field, in a fixed order.
func (p *Paths) Each(f func(key string, value *string)) {
	for _, k := range pathKeys {
		f(k.key, k.field(p))
	}
}

// Over returns p with every field that over sets replaced by over's.
func (p Paths) Over(over Paths) Paths {
	for _, k := range pathKeys {
		if v := *k.field(&over); v != "" {
			*k.field(&p) = v
		}
	}
	return p
}

// PathsOf returns the paths of host: the defaults, under the inventory's paths block,
// under the host's.
func (inv *Inventory) PathsOf(h *Host) Paths {
	return DefaultPaths().Over(inv.Paths).Over(h.Paths)
}

// DevIDHandleOf returns the persistent handle of host's DevID key: its devid_handle, or
// the plan's 0x81010002.
func (h *Host) DevIDHandleOf() string {
	if h.DevIDHandle != "" {
		return h.DevIDHandle
	}
	return tpmrules.FormatHandle(tpmrules.PlanDevIDHandle)
}

// pathChars are the characters a path in an inventory may not hold: they would need
// quoting in a systemd unit (whitespace, quotes, backslash, specifiers, variables) or
// end a line.
const pathChars = " \t\r\n\"'\\%$;`"

// paths decodes a paths block into p.
func (d *decoder) paths(item *ast.ObjectItem, outer string, p *Paths) bool {
	body, ok := item.Val.(*ast.ObjectType)
	if len(item.Keys) != 1 || !ok || item.Assign.IsValid() {
		d.errorf(item.Pos(), outer, "paths: want a block: paths { ... }")
		return false
	}
	block := "paths"
	if outer != "" {
		block = outer + ": paths"
	}
	var known []string
	fields := map[string]*string{}
	p.Each(func(key string, v *string) { known = append(known, key); fields[key] = v })
	good := true
	d.fields(body.List, block, known, func(key string, it *ast.ObjectItem) {
		s, ok := d.str(it, block)
		if !ok {
			good = false
			return
		}
		if !filepath.IsAbs(s) || strings.ContainsAny(s, pathChars) || strings.Contains(s, "//") {
			d.errorf(it.Pos(), block, "%s: %q: want an absolute path without spaces, quotes, backslashes, %%, $ or ;", key, s)
			good = false
			return
		}
		*fields[key] = filepath.Clean(s)
	})
	return good
}

// sectionBody checks that item is `kind { ... }`, a block without a name.
func (d *decoder) sectionBody(item *ast.ObjectItem, kind string) (*ast.ObjectList, bool) {
	body, ok := item.Val.(*ast.ObjectType)
	if len(item.Keys) != 1 || !ok || item.Assign.IsValid() {
		d.errorf(item.Pos(), "", "%s: want a block: %s { ... }", kind, kind)
		return nil, false
	}
	return body.List, true
}

// number returns item's value, which must be a whole number in [lo, hi].
func (d *decoder) number(item *ast.ObjectItem, block string, lo, hi int) (int, bool) {
	key := keyName(item.Keys[0])
	lit, ok := item.Val.(*ast.LiteralType)
	if len(item.Keys) != 1 || !ok || lit.Token.Type != token.NUMBER {
		d.errorf(item.Pos(), block, "%s: want a number", key)
		return 0, false
	}
	n, err := strconv.Atoi(lit.Token.Text)
	if err != nil || n < lo || n > hi {
		d.errorf(item.Pos(), block, "%s: %s: want a whole number from %d to %d", key, lit.Token.Text, lo, hi)
		return 0, false
	}
	return n, true
}

// httpsURL checks that s is https://HOST[:PORT] with nothing after but an optional "/".
func (d *decoder) httpsURL(pos token.Pos, block, key, s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, pathChars) {
		d.errorf(pos, block, "%s: %q: want an https URL such as \"https://ca.funlab.casa:8443\" (scheme, host, port, no path)", key, s)
		return false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			d.errorf(pos, block, "%s: %q: port %s is not from 1 to 65535", key, s, p)
			return false
		}
	}
	return true
}

// hostPort checks a listen address such as ":8443" or "127.0.0.1:8443".
func (d *decoder) hostPort(pos token.Pos, block, key, s string) bool {
	h, p, err := net.SplitHostPort(s)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(h, pathChars) {
		d.errorf(pos, block, "%s: %q: want HOST:PORT or :PORT, such as \":8443\"", key, s)
		return false
	}
	return true
}

// dnsName checks an address agents dial: a DNS name or an IP address.
func (d *decoder) dnsName(pos token.Pos, block, key, s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	ok := len(s) <= 253
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || strings.Trim(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
			label[0] == '-' || label[len(label)-1] == '-' {
			ok = false
		}
	}
	if !ok {
		d.errorf(pos, block, "%s: %q: want a DNS name or an IP address", key, s)
	}
	return ok
}

func (d *decoder) spireServer(item *ast.ObjectItem) (*SPIREServer, bool) {
	body, ok := d.sectionBody(item, "spire_server")
	if !ok {
		return nil, false
	}
	s := &SPIREServer{Line: item.Pos().Line}
	const block = "spire_server"
	good := true
	d.fields(body, block, []string{"host", "address", "port", "bind_address", "agent_ttl", "event_log", "expired_ek_cert"}, func(key string, it *ast.ObjectItem) {
		if key == "port" {
			n, ok := d.number(it, block, 1, 65535)
			s.Port, good = n, good && ok
			return
		}
		v, ok := d.str(it, block)
		if !ok {
			good = false
			return
		}
		switch key {
		case "host":
			s.Host = v
		case "address":
			good = d.dnsName(it.Pos(), block, key, v) && good
			s.Address = v
		case "bind_address":
			if net.ParseIP(v) == nil {
				d.errorf(it.Pos(), block, "bind_address: %q: want an IP address, such as \"0.0.0.0\"", v)
				good = false
			}
			s.BindAddress = v
		case "agent_ttl":
			t, err := time.ParseDuration(v)
			if err != nil || t < time.Minute {
				d.errorf(it.Pos(), block, "agent_ttl: %q: want a duration of at least 1m, such as \"1h\"", v)
				good = false
			}
			s.AgentTTL = t
		case "event_log":
			if v != "ignore" && v != "verify" && v != "require" {
				d.errorf(it.Pos(), block, "event_log: %q: want \"ignore\", \"verify\" or \"require\"", v)
				good = false
			}
			s.EventLog = v
		case "expired_ek_cert":
			if v != "reject" && v != "warn" {
				d.errorf(it.Pos(), block, "expired_ek_cert: %q: want \"reject\" or \"warn\"", v)
				good = false
			}
			s.ExpiredEKCert = v
		}
	})
	good = d.required(item, block, good, "host", s.Host, "address", s.Address)
	if s.Port == 0 {
		s.Port = DefaultSPIREPort
	}
	if s.BindAddress == "" {
		s.BindAddress = "0.0.0.0"
	}
	return s, good
}

// required names the first of its key, value pairs whose value is empty, once the
// block's fields decoded (good), and says whether the block is still good.
func (d *decoder) required(item *ast.ObjectItem, block string, good bool, keyValues ...string) bool {
	for i := 0; good && i+1 < len(keyValues); i += 2 {
		if keyValues[i+1] == "" {
			d.errorf(item.Pos(), block, "%s: missing", keyValues[i])
			return false
		}
	}
	return good
}

func (d *decoder) ra(item *ast.ObjectItem) (*RA, bool) {
	body, ok := d.sectionBody(item, "ra")
	if !ok {
		return nil, false
	}
	r := &RA{Line: item.Pos().Line}
	const block = "ra"
	good := true
	d.fields(body, block, []string{"host", "url", "listen"}, func(key string, it *ast.ObjectItem) {
		v, ok := d.str(it, block)
		if !ok {
			good = false
			return
		}
		switch key {
		case "host":
			r.Host = v
		case "url":
			good = d.httpsURL(it.Pos(), block, key, v) && good
			r.URL = strings.TrimSuffix(v, "/")
		case "listen":
			good = d.hostPort(it.Pos(), block, key, v) && good
			r.Listen = v
		}
	})
	good = d.required(item, block, good, "host", r.Host, "url", r.URL)
	return r, good
}

func (d *decoder) stepCA(item *ast.ObjectItem) (*StepCA, bool) {
	body, ok := d.sectionBody(item, "step_ca")
	if !ok {
		return nil, false
	}
	s := &StepCA{Line: item.Pos().Line}
	const block = "step_ca"
	good := true
	d.fields(body, block, []string{"host", "url", "provisioner"}, func(key string, it *ast.ObjectItem) {
		v, ok := d.str(it, block)
		if !ok {
			good = false
			return
		}
		switch key {
		case "host":
			s.Host = v
		case "url":
			good = d.httpsURL(it.Pos(), block, key, v) && good
			s.URL = strings.TrimSuffix(v, "/")
		case "provisioner":
			if strings.ContainsAny(v, pathChars) {
				d.errorf(it.Pos(), block, "provisioner: %q: a provisioner name has no spaces, quotes or $", v)
				good = false
			}
			s.Provisioner = v
		}
	})
	good = d.required(item, block, good, "host", s.Host, "url", s.URL)
	if s.Provisioner == "" {
		s.Provisioner = DefaultProvisioner
	}
	return s, good
}

// crossCheckDeploy checks that the deploy blocks name hosts of the inventory, and that the
// RA runs beside step-ca.
func (d *decoder) crossCheckDeploy(inv *Inventory, hosts map[string]int) {
	check := func(block, host string, line int) {
		if _, ok := hosts[host]; host != "" && !ok {
			d.errorf(token.Pos{Line: line}, block, "host: %q is not a host of the inventory", host)
		}
	}
	if s := inv.Server; s != nil {
		check("spire_server", s.Host, s.Line)
	}
	if r := inv.RA; r != nil {
		check("ra", r.Host, r.Line)
		switch {
		case inv.StepCA == nil:
			d.errorf(token.Pos{Line: r.Line}, "ra", "needs a step_ca block: the CA the RA gets DevID certificates from")
		case r.Host != inv.StepCA.Host:
			d.errorf(token.Pos{Line: r.Line}, "ra", "host: %q, but step_ca runs on %q: the RA reads step-ca's ca.json, so it runs on step-ca's host", r.Host, inv.StepCA.Host)
		}
	}
	if s := inv.StepCA; s != nil {
		check("step_ca", s.Host, s.Line)
	}
}

// phase parses a host's phase.
func (d *decoder) phase(it *ast.ObjectItem, block, s string) (Phase, bool) {
	for _, p := range Phases {
		if Phase(s) == p {
			return p, true
		}
	}
	d.errorf(it.Pos(), block, "phase: %q: want \"join_token\", \"ek\" or \"devid\"", s)
	return "", false
}
