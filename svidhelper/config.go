package svidhelper

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"omens.dev/omens/internal/limits"
)

// DefaultAgentAddress is the Workload API socket used when neither agent_address nor the
// environment variable SPIFFE_ENDPOINT_SOCKET names one: SPIRE agent's default
// socket_path, as spiffe-helper assumes it.
const DefaultAgentAddress = "/tmp/spire-agent/public/api.sock"

// Config is a helper configuration file, with spiffe-helper's keys and meanings.
type Config struct {
	// AgentAddress is agent_address: the Workload API, as a socket path or a unix:// or
	// tcp:// address. Empty means SPIFFE_ENDPOINT_SOCKET, then DefaultAgentAddress
	// (see Address).
	AgentAddress string
	// CertDir is cert_dir: the directory the files are written to, which must exist.
	// Empty means the working directory.
	CertDir string
	// SVIDFileName, SVIDKeyFileName and SVIDBundleFileName are svid_file_name,
	// svid_key_file_name and svid_bundle_file_name: the names, in CertDir, of the
	// certificate chain (leaf first), the private key (PKCS #8, mode 0600) and the trust
	// domain's X.509 bundle, all PEM.
	SVIDFileName       string
	SVIDKeyFileName    string
	SVIDBundleFileName string
	// RenewSignal is renew_signal, such as "SIGHUP": sent to the process of PIDFileName,
	// and to Cmd's process, after each rotation.
	RenewSignal string
	// Cmd and CmdArgs are cmd and cmd_args: a program started after the first SVID is
	// written and, at each rotation, signalled with RenewSignal while it runs, restarted
	// (SIGTERM, then started again) when there is no RenewSignal, and started again when
	// it has exited. CmdArgs is split at spaces; double quotes group words into one
	// argument and "" inside them is a literal quote (spiffe-helper's rule).
	Cmd     string
	CmdArgs string
	// PIDFileName is pid_file_name: a file holding the pid of a process that is not the
	// helper's child (nginx, OpenBao), read again at each rotation and sent RenewSignal.
	PIDFileName string
	// DaemonMode is daemon_mode (true when absent): keep running and rewrite the files
	// at every rotation; false writes them once and returns.
	DaemonMode bool

	// Args is CmdArgs split into arguments.
	Args []string
	// Signal is RenewSignal as a signal (0 for none).
	Signal syscall.Signal
	// Warnings are settings that are accepted but have no effect, as spiffe-helper
	// accepts them: cmd and renew_signal when daemon_mode is false.
	Warnings []string
}

// Address returns the Workload API address to dial, in go-spiffe's form: agent_address,
// else env("SPIFFE_ENDPOINT_SOCKET"), else DefaultAgentAddress; a path becomes unix://.
func (c *Config) Address(env func(string) string) string {
	a := c.AgentAddress
	if a == "" && env != nil {
		a = env("SPIFFE_ENDPOINT_SOCKET")
	}
	if a == "" {
		a = DefaultAgentAddress
	}
	if strings.HasPrefix(a, "/") {
		a = "unix://" + a
	}
	return a
}

// Paths returns the paths of the certificate, key and bundle files.
func (c *Config) Paths() (cert, key, bundle string) {
	dir := c.CertDir
	if dir == "" {
		dir = "."
	}
	return filepath.Join(dir, c.SVIDFileName), filepath.Join(dir, c.SVIDKeyFileName), filepath.Join(dir, c.SVIDBundleFileName)
}

// signals are the renew_signal values accepted, by name as spiffe-helper spells them.
var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGTERM": syscall.SIGTERM,
	"SIGWINCH": syscall.SIGWINCH,
}

func signalNames() string {
	names := make([]string, 0, len(signals))
	for n := range signals {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// keys are the keys a configuration may hold.
var keys = []string{"agent_address", "cert_dir", "svid_file_name", "svid_key_file_name", "svid_bundle_file_name",
	"renew_signal", "cmd", "cmd_args", "pid_file_name", "daemon_mode"}

// unsupported are spiffe-helper keys that omens svid helper does not implement: a
// configuration that relies on them is refused rather than half served.
var unsupported = map[string]string{
	"jwt_svids":                   "JWT-SVIDs",
	"jwt_bundle_file_name":        "JWT bundles",
	"jwt_bundle_file_mode":        "JWT bundles",
	"jwt_svid_file_mode":          "JWT-SVIDs",
	"add_intermediates_to_bundle": "intermediates in the bundle file (they are written after the leaf, in svid_file_name)",
	"include_federated_domains":   "federated bundles",
	"omit_expired":                "omitting expired CAs",
	"cert_file_mode":              "file modes (certificate and bundle 0644, key 0600)",
	"key_file_mode":               "file modes (certificate and bundle 0644, key 0600)",
	"hint":                        "hints (the Workload API's first, default SVID is written)",
	"health_checks":               "health checks",
}

// Load reads and checks the configuration file at path, capped by limits.HelperConfig.
func Load(path string) (*Config, error) {
	src, err := limits.ReadFile(path, limits.HelperConfig)
	if err != nil {
		return nil, fmt.Errorf("svidhelper: config: %w", err)
	}
	return Parse(path, src)
}

// Parse parses and checks a configuration; name labels its errors. Every problem is
// reported, each as "svidhelper: <name>:<line>: <key>: <what is wrong and what to do>".
func Parse(name string, src []byte) (cfg *Config, err error) {
	if err := limits.Check(name, src, limits.HelperConfig); err != nil {
		return nil, fmt.Errorf("svidhelper: %w", err)
	}
	// The HCL parser is third-party code fed with outside bytes (its token values panic
	// on some malformed literals): whatever it does, the caller gets an error, not a
	// crash. The nesting cap above keeps its recursion from overflowing the stack.
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, fmt.Errorf("svidhelper: %s: cannot parse: %v", name, r)
		}
	}()
	f, err := hclparser.ParseDontErrorOnDuplicateKeys(src)
	if err != nil {
		var pe *hclparser.PosError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("svidhelper: %s:%d:%d: %v", name, pe.Pos.Line, pe.Pos.Column, pe.Err)
		}
		return nil, fmt.Errorf("svidhelper: %s: %w", name, err)
	}
	root, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("svidhelper: %s: not an HCL body", name)
	}
	d := &decoder{file: name}
	c := &Config{DaemonMode: true}
	lines := map[string]int{}
	for _, item := range root.Items {
		key := keyName(item.Keys[0])
		line := item.Pos().Line
		if len(item.Keys) > 1 {
			d.errorf(line, "%s: a block, want key = value", key)
			continue
		}
		if what, ok := unsupported[key]; ok {
			d.errorf(line, "%s: spiffe-helper's key is not supported by omens svid helper, which does not do %s: remove it", key, what)
			continue
		}
		if !slices.Contains(keys, key) {
			d.errorf(line, "unknown key %q (want one of %s)", key, strings.Join(keys, ", "))
			continue
		}
		if first, seen := lines[key]; seen {
			d.errorf(line, "%s: set twice (first on line %d): keep one", key, first)
			continue
		}
		lines[key] = line
		if key == "daemon_mode" {
			if b, ok := d.boolean(item, key); ok {
				c.DaemonMode = b
			}
			continue
		}
		s, ok := d.str(item, key)
		if !ok {
			continue
		}
		switch key {
		case "agent_address":
			c.AgentAddress = s
		case "cert_dir":
			c.CertDir = s
		case "svid_file_name":
			c.SVIDFileName = s
		case "svid_key_file_name":
			c.SVIDKeyFileName = s
		case "svid_bundle_file_name":
			c.SVIDBundleFileName = s
		case "renew_signal":
			c.RenewSignal = s
		case "cmd":
			c.Cmd = s
		case "cmd_args":
			c.CmdArgs = s
		case "pid_file_name":
			c.PIDFileName = s
		}
	}
	d.check(c, lines)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return c, nil
}

// check validates the values and their combinations, filling Args, Signal and Warnings.
func (d *decoder) check(c *Config, lines map[string]int) {
	at := func(key string) int { return lines[key] }
	if c.AgentAddress != "" {
		switch {
		case strings.HasPrefix(c.AgentAddress, "/"):
		case strings.Contains(c.AgentAddress, "://"):
			if _, err := workloadapi.TargetFromAddress(c.AgentAddress); err != nil {
				d.errorf(at("agent_address"), "agent_address: %q: %v: give the agent's socket path, such as %q", c.AgentAddress, err, DefaultAgentAddress)
			}
		default:
			d.errorf(at("agent_address"), "agent_address: %q is neither an absolute socket path nor a unix:// or tcp:// address: give the agent's socket path, such as %q", c.AgentAddress, DefaultAgentAddress)
		}
	}
	files := []struct{ key, value, example string }{
		{"svid_file_name", c.SVIDFileName, "svid.pem"},
		{"svid_key_file_name", c.SVIDKeyFileName, "svid_key.pem"},
		{"svid_bundle_file_name", c.SVIDBundleFileName, "svid_bundle.pem"},
	}
	seen := map[string]string{}
	for _, f := range files {
		switch {
		case f.value == "":
			d.errorf(0, "%s: missing: name the file in cert_dir, such as %q", f.key, f.example)
			continue
		case strings.ContainsRune(f.value, '/') || f.value == "." || f.value == "..":
			d.errorf(at(f.key), "%s: %q is not a file name: give a name without \"/\" and put the directory in cert_dir", f.key, f.value)
			continue
		}
		if other, ok := seen[f.value]; ok {
			d.errorf(at(f.key), "%s: %q is also %s: give each file its own name", f.key, f.value, other)
			continue
		}
		seen[f.value] = f.key
	}
	if c.RenewSignal != "" {
		sig, ok := signals[c.RenewSignal]
		if !ok {
			d.errorf(at("renew_signal"), "renew_signal: %q is not a signal omens sends (want one of %s)", c.RenewSignal, signalNames())
		}
		c.Signal = sig
	}
	if c.CmdArgs != "" && c.Cmd == "" {
		d.errorf(at("cmd_args"), "cmd_args: set without cmd: name the program in cmd, or remove cmd_args")
	}
	if c.Cmd != "" {
		args, err := SplitArgs(c.CmdArgs)
		if err != nil {
			d.errorf(at("cmd_args"), "cmd_args: %v", err)
		}
		c.Args = args
	}
	if c.PIDFileName != "" && c.RenewSignal == "" {
		d.errorf(at("pid_file_name"), "pid_file_name: set without renew_signal: name the signal that makes the process reload its certificates, such as renew_signal = \"SIGHUP\"")
	}
	if !c.DaemonMode {
		if c.PIDFileName != "" {
			d.errorf(at("pid_file_name"), "pid_file_name: set with daemon_mode = false, which writes the files once and signals nothing: remove one of them")
		}
		if c.Cmd != "" {
			c.Warnings = append(c.Warnings, "cmd is ignored with daemon_mode = false: the files are written once and nothing is started")
		}
		if c.RenewSignal != "" {
			c.Warnings = append(c.Warnings, "renew_signal is ignored with daemon_mode = false: the files are written once and nothing is signalled")
		}
	}
}

// SplitArgs splits cmd_args into arguments as spiffe-helper does: at spaces, a pair of
// double quotes making one argument of what they enclose (the quotes removed), "" inside
// them standing for one literal quote. Nothing else is special: no shell runs.
func SplitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quoted && ch == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			quoted = !quoted
			inArg = true
		case ch == ' ' && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("a double quote is not closed: close it, or write \"\" for a literal quote inside quotes")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// decoder collects the errors of one configuration file.
type decoder struct {
	file string
	errs []error
}

func (d *decoder) errorf(line int, format string, args ...any) {
	where := d.file
	if line > 0 {
		where = fmt.Sprintf("%s:%d", d.file, line)
	}
	d.errs = append(d.errs, fmt.Errorf("svidhelper: %s: %s", where, fmt.Sprintf(format, args...)))
}

func (d *decoder) literal(item *ast.ObjectItem) (token.Token, bool) {
	lit, ok := item.Val.(*ast.LiteralType)
	if !ok {
		return token.Token{}, false
	}
	return lit.Token, true
}

func (d *decoder) str(item *ast.ObjectItem, key string) (string, bool) {
	tok, ok := d.literal(item)
	if !ok || tok.Type != token.STRING {
		d.errorf(item.Pos().Line, "%s: want a quoted string", key)
		return "", false
	}
	s, ok := tok.Value().(string)
	if !ok {
		d.errorf(item.Pos().Line, "%s: want a quoted string", key)
		return "", false
	}
	return s, true
}

func (d *decoder) boolean(item *ast.ObjectItem, key string) (bool, bool) {
	tok, ok := d.literal(item)
	if !ok || tok.Type != token.BOOL {
		d.errorf(item.Pos().Line, "%s: want true or false", key)
		return false, false
	}
	b, _ := tok.Value().(bool)
	return b, true
}

// keyName is an item key's name, unquoted.
func keyName(k *ast.ObjectKey) string {
	if s, ok := k.Token.Value().(string); ok {
		return s
	}
	return k.Token.Text
}

// Override checks cfg again after a command-line flag changed one of its settings (as
// --daemon-mode overrides daemon_mode), with the errors Parse would give, without lines.
func Override(name string, cfg *Config) (*Config, error) {
	c := *cfg
	c.Warnings, c.Args, c.Signal = nil, nil, 0
	d := &decoder{file: name}
	d.check(&c, nil)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return &c, nil
}
