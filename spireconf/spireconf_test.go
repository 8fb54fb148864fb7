package spireconf_test

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/spireconf"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// tower are the configurations of the lab's server and of an agent on its TPM, under
// dir.
func tower(dir, checksum string) (spireconf.Server, spireconf.Agent) {
	srv := spireconf.Server{
		TrustDomain: "funlab.casa", BindAddress: "127.0.0.1", BindPort: 8081,
		SocketPath: filepath.Join(dir, "api.sock"), DataDir: filepath.Join(dir, "data"), LogLevel: "INFO",
		CATTL: 24 * time.Hour, AgentTTL: 2 * time.Minute, DefaultX509SVIDTTL: time.Hour, DefaultJWTSVIDTTL: 5 * time.Minute,
		CacheReloadInterval: time.Second,
		Plugins: []spireconf.Plugin{
			spireconf.SQLite(filepath.Join(dir, "data", "datastore.sqlite3")),
			spireconf.ServerDiskKeyManager(filepath.Join(dir, "data", "keys.json")),
			{Type: "NodeAttestor", Name: "tpm", Cmd: filepath.Join(dir, "omens-attestor-server"), Checksum: checksum,
				Data: []spireconf.Setting{
					{Key: "devid_mode", Value: "devid"},
					{Key: "endorsement_ca_path", Value: filepath.Join(dir, "ek-ca.pem")},
					{Key: "pcr_bank", Value: "sha256"},
					{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
				}},
			spireconf.JoinToken(),
		},
		Telemetry: &spireconf.Telemetry{PrometheusHost: "127.0.0.1", PrometheusPort: 9988},
	}
	agent := spireconf.Agent{
		TrustDomain: "funlab.casa", ServerAddress: "127.0.0.1", ServerPort: 8081,
		DataDir: filepath.Join(dir, "agent"), SocketPath: filepath.Join(dir, "public", "api.sock"),
		AdminSocketPath: filepath.Join(dir, "private", "admin.sock"), TrustBundlePath: filepath.Join(dir, "bundle.pem"),
		LogLevel: "INFO", SyncInterval: time.Second,
		Plugins: []spireconf.Plugin{
			{Type: "NodeAttestor", Name: "tpm", Cmd: filepath.Join(dir, "omens-attestor-agent"), Checksum: checksum,
				Data: []spireconf.Setting{
					{Key: "tpm_path", Value: "/dev/tpmrm0"},
					{Key: "devid_priv_path", Value: "0x81010002"},
					{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
				}},
			spireconf.AgentDiskKeyManager(filepath.Join(dir, "agent")),
			spireconf.UnixWorkloadAttestor(),
		},
		Telemetry: &spireconf.Telemetry{PrometheusPort: 9989},
	}
	return srv, agent
}

// towerHA is one of several servers of the tower on one PostgreSQL cluster: SPIRE's
// datastore and the plugin's boot-state state in databases of their own.
func towerHA(dir, checksum string) spireconf.Server {
	srv, _ := tower(dir, checksum)
	srv.Plugins = slices.Clone(srv.Plugins)
	srv.Plugins[0] = spireconf.Postgres("host=db.funlab.casa port=5432 dbname=spire user=spire sslmode=verify-full")
	tpm := srv.Plugins[2]
	tpm.Data = append(slices.Clone(tpm.Data),
		spireconf.Setting{Key: "pcr_policy_path", Value: filepath.Join(dir, "pcr-policy.hcl")},
		spireconf.Setting{Key: "pcr_state_database", Value: "postgres://omens@db.funlab.casa:5432/pcr?sslmode=verify-full"})
	srv.Plugins[2] = tpm
	return srv
}

func TestGolden(t *testing.T) {
	srv, agent := tower("/opt/tower", strings.Repeat("ab", 32))
	ha := towerHA("/opt/tower", strings.Repeat("ab", 32))
	for _, c := range []struct {
		name   string
		render func() ([]byte, error)
	}{
		{"server.conf", srv.Render},
		{"agent.conf", agent.Render},
		{"server-ha.conf", ha.Render},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.render()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", c.name)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("rendering differs from %s:\n%s", golden, got)
			}
			var v map[string]any
			if err := hcl.Unmarshal(got, &v); err != nil {
				t.Errorf("hcl does not parse it: %v", err)
			}
		})
	}
}

// TestQuote renders values that would end an HCL string or open an interpolation, and
// reads them back with the HCL parser SPIRE uses.
func TestQuote(t *testing.T) {
	for _, s := range []string{
		``, `plain`, `a "quoted" word`, `back\slash`, `trailing\`, "new\nline", "tab\there",
		`${env.HOME}`, `$HOME`, `"}${"`, `\"`, `" } } plugins { x = "`, "é ünïcödé", "\x00\x7f",
		"invalid \xff utf-8",
	} {
		agent := spireconf.Agent{TrustDomain: "funlab.casa", ServerAddress: "127.0.0.1", DataDir: "/d", JoinToken: s,
			Plugins: []spireconf.Plugin{{Type: "NodeAttestor", Name: "join_token", Data: []spireconf.Setting{{Key: "x", Value: s}}}}}
		b, err := agent.Render()
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		var conf struct {
			Agent struct {
				JoinToken string `hcl:"join_token"`
			} `hcl:"agent"`
			Plugins struct {
				NodeAttestor map[string]struct {
					PluginData struct {
						X string `hcl:"x"`
					} `hcl:"plugin_data"`
				} `hcl:"NodeAttestor"`
			} `hcl:"plugins"`
		}
		if err := hcl.Unmarshal(b, &conf); err != nil {
			t.Errorf("%q: hcl: %v\n%s", s, err, b)
			continue
		}
		if got := conf.Plugins.NodeAttestor["join_token"].PluginData.X; conf.Agent.JoinToken != s || got != s {
			t.Errorf("%q read back as join_token %q, x %q\n%s", s, conf.Agent.JoinToken, conf.Plugins.NodeAttestor["join_token"].PluginData.X, b)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	base := spireconf.Server{TrustDomain: "funlab.casa", DataDir: "/d"}
	for _, c := range []struct {
		name string
		srv  spireconf.Server
		want string
	}{
		{"no trust domain", spireconf.Server{DataDir: "/d"}, "spireconf: server: trust_domain and data_dir are required"},
		{"key", func() spireconf.Server {
			s := base
			s.Extra = []spireconf.Setting{{Key: `x = 1 y`, Value: "v"}}
			return s
		}(), `spireconf: key "x = 1 y" is not an identifier`},
		{"plugin type", func() spireconf.Server {
			s := base
			s.Plugins = []spireconf.Plugin{{Type: `NodeAttestor "x" {`, Name: "tpm"}}
			return s
		}(), `spireconf: plugin "NodeAttestor \"x\" {" "tpm": a plugin needs a type (an identifier) and a name`},
		{"value type", func() spireconf.Server {
			s := base
			s.Plugins = []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm", Data: []spireconf.Setting{{Key: "f", Value: 1.5}}}}
			return s
		}(), "spireconf: f: cannot render a value of type float64"},
		{"telemetry port", func() spireconf.Server {
			s := base
			s.Telemetry = &spireconf.Telemetry{PrometheusHost: "127.0.0.1"}
			return s
		}(), "spireconf: telemetry: Prometheus port 0 is not a port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.srv.Render()
			if err == nil || err.Error() != c.want {
				t.Errorf("Render: %v, want %s", err, c.want)
			}
		})
	}
	if _, err := (spireconf.Agent{TrustDomain: "funlab.casa", DataDir: "/d"}).Render(); err == nil ||
		err.Error() != "spireconf: agent: trust_domain, server_address and data_dir are required" {
		t.Errorf("agent without server_address: %v", err)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Minute: "2m", time.Hour: "1h", 90 * time.Minute: "1h30m", 20 * time.Second: "20s",
		time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := spireconf.Duration(d); got != want {
			t.Errorf("Duration(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestChecksum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(path, []byte("a plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("a plugin"))
	got, err := spireconf.Checksum(path)
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Errorf("Checksum = %s, %v; want %x", got, err, sum)
	}
	if _, err := spireconf.Checksum(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.HasPrefix(err.Error(), "spireconf: plugin checksum: open ") {
		t.Errorf("Checksum of a missing file: %v", err)
	}
}

// TestSPIREValidates has the real spire-server and spire-agent (`validate -config`)
// check what the renderer writes, with a plugin_checksum of a real file.
func TestSPIREValidates(t *testing.T) {
	server := enginetest.Path(t, engines.SPIREServer)
	agentBin := enginetest.Path(t, engines.SPIREAgent)
	dir := t.TempDir()
	for _, d := range []string{"data", "agent", "public", "private"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	plugin := filepath.Join(dir, "omens-attestor-server")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := spireconf.Checksum(plugin)
	if err != nil {
		t.Fatal(err)
	}
	srv, agent := tower(dir, sum)
	agent.JoinToken = `a "token" with ${x} and \ in it`
	for _, c := range []struct {
		name, bin string
		render    func() ([]byte, error)
	}{
		{"server.conf", server, srv.Render},
		{"agent.conf", agentBin, agent.Render},
	} {
		b, err := c.render()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(c.bin, "validate", "-config", path).CombinedOutput()
		if err != nil {
			t.Errorf("%s validate -config %s: %v\n%s\n%s", filepath.Base(c.bin), c.name, err, out, b)
		}
		t.Logf("%s validate: %s", filepath.Base(c.bin), strings.TrimSpace(string(out)))
	}
}

// A header comes out as comment lines above the agent block; join_token_file keeps the
// token out of the file.
func TestHeaderAndJoinTokenFile(t *testing.T) {
	b, err := spireconf.Agent{
		Header:      "Rendered for host auth.\n\nEdit the inventory.",
		TrustDomain: "funlab.casa", ServerAddress: "spire", DataDir: "/d", JoinTokenFile: "/etc/spire/join-token",
		Plugins: []spireconf.Plugin{spireconf.JoinToken()},
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := "# Rendered for host auth.\n#\n# Edit the inventory.\nagent {\n    data_dir = \"/d\"\n    server_address = \"spire\"\n    trust_domain = \"funlab.casa\"\n    join_token_file = \"/etc/spire/join-token\"\n}\n" +
		"plugins {\n    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }\n}\n"
	if string(b) != want {
		t.Errorf("got:\n%s\nwant:\n%s", b, want)
	}
}
