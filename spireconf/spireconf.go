// Package spireconf renders SPIRE server and agent configuration files (HCL) from typed
// values: the server and agent blocks, and a plugins section of plugin blocks, such as
// NodeAttestor "tpm" with its plugin_cmd, plugin_checksum and plugin_data.
//
// It is the one renderer of those files in omens: the lab, the test kits and `omens
// config render` use it. Every string is quoted so that the HCL parser SPIRE uses
// (hashicorp/hcl v1) reads back exactly the value given: a quote, a backslash, a newline
// or a "${" cannot end the string or open an interpolation, and a "$" is written as an
// escape so that `-expandEnv` leaves it alone. Keys are checked to be identifiers.
//
// Blocks and settings come out in a fixed order (the order of the fields below, then
// the order of the slices), so a rendering can be compared with a golden file.
package spireconf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Setting is one `key = value` line of a block. Value is a string, bool, int,
// time.Duration (written as a quoted Go duration, "2m"), []int, []string, or []Setting
// (a nested block `key { ... }`).
type Setting struct {
	Key   string
	Value any
}

// Plugin is one block of the plugins section: `Type "Name" { ... }`.
type Plugin struct {
	// Type is the plugin type: NodeAttestor, DataStore, KeyManager, WorkloadAttestor, ...
	Type string
	// Name is the plugin name, such as "tpm", "join_token", "sql", "disk".
	Name string
	// Cmd is plugin_cmd, the executable of an external plugin; empty for a built-in one.
	Cmd string
	// Checksum is plugin_checksum, the SHA-256 of Cmd in hex (see Checksum); SPIRE
	// refuses to load a plugin whose executable does not match it.
	Checksum string
	// Data is plugin_data, in order.
	Data []Setting
}

// Server is a spire-server configuration.
type Server struct {
	// Header is written first, each line as a # comment: where the file comes from.
	Header      string
	TrustDomain string // trust_domain (required)
	BindAddress string // bind_address
	BindPort    int    // bind_port
	SocketPath  string // socket_path, the server API socket
	DataDir     string // data_dir (required)
	LogLevel    string // log_level (DEBUG, INFO, WARN, ERROR)
	// CATTL is ca_ttl, the lifetime of the server's signing CA.
	CATTL time.Duration
	// AgentTTL is agent_ttl, the lifetime of agent SVIDs; agents renew (or re-attest)
	// at about half of it.
	AgentTTL time.Duration
	// DefaultX509SVIDTTL is default_x509_svid_ttl, the lifetime of workload X.509-SVIDs.
	DefaultX509SVIDTTL time.Duration
	// DefaultJWTSVIDTTL is default_jwt_svid_ttl, the lifetime of workload JWT-SVIDs.
	DefaultJWTSVIDTTL time.Duration
	// CacheReloadInterval is experimental.cache_reload_interval: how soon new entries
	// reach agents.
	CacheReloadInterval time.Duration
	// Extra are more settings of the server block, after the ones above.
	Extra []Setting
	// Plugins are the blocks of the plugins section, in order.
	Plugins []Plugin
	// Telemetry, when set, is the telemetry section, after the plugins.
	Telemetry *Telemetry
}

// Telemetry is SPIRE's telemetry section with its Prometheus sink: SPIRE serves its
// metrics, those of omens' plugins included, at http://PrometheusHost:PrometheusPort/metrics.
type Telemetry struct {
	// PrometheusHost is the listen host (SPIRE's default is localhost).
	PrometheusHost string
	// PrometheusPort is the listen port (required).
	PrometheusPort int
}

// Agent is a spire-agent configuration.
type Agent struct {
	// Header is written first, each line as a # comment: where the file comes from.
	Header          string
	TrustDomain     string // trust_domain (required)
	ServerAddress   string // server_address (required)
	ServerPort      int    // server_port
	DataDir         string // data_dir (required)
	SocketPath      string // socket_path, the Workload API socket
	AdminSocketPath string // admin_socket_path
	TrustBundlePath string // trust_bundle_path
	LogLevel        string // log_level
	// JoinToken is join_token, for NodeAttestor "join_token".
	JoinToken string
	// JoinTokenFile is join_token_file: the file the agent reads its join token from,
	// so that the configuration holds no secret.
	JoinTokenFile string
	// NoRetryBootstrap writes retry_bootstrap = false: the agent exits at the first
	// rejected attestation instead of retrying.
	NoRetryBootstrap bool
	// SyncInterval is experimental.sync_interval: how often the agent syncs entries.
	SyncInterval time.Duration
	// Extra are more settings of the agent block, after the ones above.
	Extra []Setting
	// Plugins are the blocks of the plugins section, in order.
	Plugins []Plugin
	// Telemetry, when set, is the telemetry section, after the plugins.
	Telemetry *Telemetry
}

// SQLite is the server's DataStore "sql" on a sqlite3 database file.
func SQLite(path string) Plugin {
	return Plugin{Type: "DataStore", Name: "sql", Data: []Setting{
		{"database_type", "sqlite3"}, {"connection_string", path},
	}}
}

// Postgres is the server's DataStore "sql" on a PostgreSQL database: several SPIRE
// servers on one such database serve one trust domain together (SPIRE's high
// availability). connString is a libpq key=value string or a postgres:// URL; it may hold
// a password, which then sits in the configuration file (keep it 0600).
func Postgres(connString string) Plugin {
	return Plugin{Type: "DataStore", Name: "sql", Data: []Setting{
		{"database_type", "postgres"}, {"connection_string", connString},
	}}
}

// ServerDiskKeyManager is the server's KeyManager "disk", its keys in the file keysPath.
func ServerDiskKeyManager(keysPath string) Plugin {
	return Plugin{Type: "KeyManager", Name: "disk", Data: []Setting{{"keys_path", keysPath}}}
}

// AgentDiskKeyManager is the agent's KeyManager "disk", its keys in directory dir.
func AgentDiskKeyManager(dir string) Plugin {
	return Plugin{Type: "KeyManager", Name: "disk", Data: []Setting{{"directory", dir}}}
}

// MemoryKeyManager is KeyManager "memory".
func MemoryKeyManager() Plugin { return Plugin{Type: "KeyManager", Name: "memory"} }

// JoinToken is NodeAttestor "join_token", for the server or the agent.
func JoinToken() Plugin { return Plugin{Type: "NodeAttestor", Name: "join_token"} }

// UnixWorkloadAttestor is the agent's WorkloadAttestor "unix".
func UnixWorkloadAttestor() Plugin { return Plugin{Type: "WorkloadAttestor", Name: "unix"} }

// Checksum returns the SHA-256 of the file at path in hex, as plugin_checksum wants it.
func Checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("spireconf: plugin checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("spireconf: plugin checksum: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Render returns the server configuration file.
func (s Server) Render() ([]byte, error) {
	if s.TrustDomain == "" || s.DataDir == "" {
		return nil, errors.New("spireconf: server: trust_domain and data_dir are required")
	}
	var body []Setting
	body = appendString(body, "bind_address", s.BindAddress)
	if s.BindPort != 0 {
		body = append(body, Setting{"bind_port", strconv.Itoa(s.BindPort)})
	}
	body = appendString(body, "socket_path", s.SocketPath)
	body = appendString(body, "trust_domain", s.TrustDomain)
	body = appendString(body, "data_dir", s.DataDir)
	body = appendString(body, "log_level", s.LogLevel)
	body = appendDuration(body, "ca_ttl", s.CATTL)
	body = appendDuration(body, "agent_ttl", s.AgentTTL)
	body = appendDuration(body, "default_x509_svid_ttl", s.DefaultX509SVIDTTL)
	body = appendDuration(body, "default_jwt_svid_ttl", s.DefaultJWTSVIDTTL)
	if s.CacheReloadInterval != 0 {
		body = append(body, Setting{"experimental", []Setting{{"cache_reload_interval", s.CacheReloadInterval}}})
	}
	return render(s.Header, "server", append(body, s.Extra...), s.Plugins, s.Telemetry)
}

// Render returns the agent configuration file.
func (a Agent) Render() ([]byte, error) {
	if a.TrustDomain == "" || a.ServerAddress == "" || a.DataDir == "" {
		return nil, errors.New("spireconf: agent: trust_domain, server_address and data_dir are required")
	}
	var body []Setting
	body = appendString(body, "data_dir", a.DataDir)
	body = appendString(body, "log_level", a.LogLevel)
	body = appendString(body, "server_address", a.ServerAddress)
	if a.ServerPort != 0 {
		body = append(body, Setting{"server_port", strconv.Itoa(a.ServerPort)})
	}
	body = appendString(body, "socket_path", a.SocketPath)
	body = appendString(body, "admin_socket_path", a.AdminSocketPath)
	body = appendString(body, "trust_bundle_path", a.TrustBundlePath)
	body = appendString(body, "trust_domain", a.TrustDomain)
	body = appendString(body, "join_token", a.JoinToken)
	body = appendString(body, "join_token_file", a.JoinTokenFile)
	if a.NoRetryBootstrap {
		body = append(body, Setting{"retry_bootstrap", false})
	}
	if a.SyncInterval != 0 {
		body = append(body, Setting{"experimental", []Setting{{"sync_interval", a.SyncInterval}}})
	}
	return render(a.Header, "agent", append(body, a.Extra...), a.Plugins, a.Telemetry)
}

func appendString(s []Setting, key, v string) []Setting {
	if v == "" {
		return s
	}
	return append(s, Setting{key, v})
}

func appendDuration(s []Setting, key string, d time.Duration) []Setting {
	if d == 0 {
		return s
	}
	return append(s, Setting{key, d})
}

// render writes the header, the main block named section, the plugins section, then the
// telemetry section when tel is set.
func render(header, section string, body []Setting, plugins []Plugin, tel *Telemetry) ([]byte, error) {
	w := &writer{}
	if header != "" {
		for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
			w.line(0, strings.TrimRight("# "+l, " "))
		}
	}
	w.block(0, section, body)
	w.line(0, "plugins {")
	for _, p := range plugins {
		if !identifier.MatchString(p.Type) || p.Name == "" {
			w.fail(fmt.Errorf("plugin %q %q: a plugin needs a type (an identifier) and a name", p.Type, p.Name))
			continue
		}
		w.line(1, p.Type+" "+Quote(p.Name)+" {")
		if p.Cmd != "" {
			w.line(2, "plugin_cmd = "+Quote(p.Cmd))
		}
		if p.Checksum != "" {
			w.line(2, "plugin_checksum = "+Quote(p.Checksum))
		}
		if len(p.Data) == 0 {
			w.line(2, "plugin_data {}")
		} else {
			w.block(2, "plugin_data", p.Data)
		}
		w.line(1, "}")
	}
	w.line(0, "}")
	if tel != nil {
		if tel.PrometheusPort <= 0 || tel.PrometheusPort > 65535 {
			w.fail(fmt.Errorf("telemetry: Prometheus port %d is not a port", tel.PrometheusPort))
		}
		prom := appendString(nil, "host", tel.PrometheusHost)
		prom = append(prom, Setting{"port", tel.PrometheusPort})
		w.block(0, "telemetry", []Setting{{"Prometheus", prom}})
	}
	if w.err != nil {
		return nil, w.err
	}
	return []byte(w.b.String()), nil
}

// identifier is what a key or a plugin type may be.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

type writer struct {
	b   strings.Builder
	err error
}

func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = fmt.Errorf("spireconf: %w", err)
	}
}

func (w *writer) line(depth int, s string) {
	w.b.WriteString(strings.Repeat("    ", depth))
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

func (w *writer) block(depth int, name string, settings []Setting) {
	w.line(depth, name+" {")
	for _, s := range settings {
		if !identifier.MatchString(s.Key) {
			w.fail(fmt.Errorf("key %q is not an identifier", s.Key))
			continue
		}
		if nested, ok := s.Value.([]Setting); ok {
			w.block(depth+1, s.Key, nested)
			continue
		}
		v, err := value(s.Value)
		if err != nil {
			w.fail(fmt.Errorf("%s: %w", s.Key, err))
			continue
		}
		w.line(depth+1, s.Key+" = "+v)
	}
	w.line(depth, "}")
}

// value renders one value.
func value(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return Quote(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case time.Duration:
		return Quote(Duration(v)), nil
	case []int:
		parts := make([]string, len(v))
		for i, n := range v {
			parts[i] = strconv.Itoa(n)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = Quote(s)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	default:
		return "", fmt.Errorf("cannot render a value of type %T", v)
	}
}

// Quote returns s as an HCL string literal that hashicorp/hcl v1 reads back as s: Go's
// escapes (which HCL shares) for quotes, backslashes and control characters, and "$"
// as \u0024, so that neither "${" (an interpolation, inside which quotes do not end the
// string) nor SPIRE's -expandEnv sees one.
func Quote(s string) string {
	return strings.ReplaceAll(strconv.Quote(s), "$", `\u0024`)
}

// Duration writes d as a Go duration without zero units: 2m rather than 2m0s.
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
