package registry_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/registry"
)

// The example inventory names where the SPIRE server, step-ca and the RA run, the paths
// and each host's phase.
func TestParseInventoryDeploy(t *testing.T) {
	inv, err := registry.LoadInventory(filepath.Join("..", "examples", "tower.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s := inv.Server
	if s == nil || s.Host != "spire" || s.Address != "spire.funlab.casa" || s.Port != 8081 || s.BindAddress != "0.0.0.0" || s.EventLog != "verify" {
		t.Errorf("spire_server: %+v", s)
	}
	if c := inv.StepCA; c == nil || c.Host != "ca" || c.URL != "https://ca.funlab.casa" || c.Provisioner != "tower-of-omens" || c.CRLURL() != "https://ca.funlab.casa/1.0/crl" {
		t.Errorf("step_ca: %+v", c)
	}
	if r := inv.RA; r == nil || r.Host != "ca" || r.URL != "https://ca.funlab.casa:8443" || r.Name() != "ca.funlab.casa" || r.ListenAddress() != ":8443" {
		t.Errorf("ra: %+v", r)
	}
	for host, want := range map[string]registry.Phase{"spire": registry.PhaseDevID, "auth": registry.PhaseDevID, "ca": registry.PhaseJoinToken} {
		if got := inv.Host(host).Phase; got != want {
			t.Errorf("%s: phase %q, want %q", host, got, want)
		}
	}
	// The example writes out the defaults.
	if got := inv.PathsOf(inv.Host("auth")); got != registry.DefaultPaths() {
		t.Errorf("auth's paths %+v, want the defaults %+v", got, registry.DefaultPaths())
	}
	if got := inv.Host("auth").DevIDHandleOf(); got != "0x81010002" {
		t.Errorf("DevID handle %s", got)
	}
}

// An inventory written for omens apply alone parses as before, with nothing to render.
func TestParseInventoryWithoutDeploy(t *testing.T) {
	inv := parse(t, towerInventory("unix:user:openbao", stepCA))
	if inv.Server != nil || inv.RA != nil || inv.StepCA != nil || inv.Paths != (registry.Paths{}) {
		t.Errorf("deploy blocks of an inventory without them: %+v %+v %+v %+v", inv.Server, inv.RA, inv.StepCA, inv.Paths)
	}
	if inv.Host("auth").Phase != "" {
		t.Errorf("phase %q", inv.Host("auth").Phase)
	}
}

// A host's paths block overrides the top-level one, which overrides the defaults.
func TestPathsOf(t *testing.T) {
	inv := parse(t, `trust_domain = "funlab.casa"
spire_server {
  host      = "a"
  address   = "127.0.0.1"
  port      = 9081
  agent_ttl = "2m"
  expired_ek_cert = "warn"
}
paths {
  spire_bin_dir = "/srv/spire/bin"
  tpm           = "/run/tpm.sock"
}
host "a" {
  devid_subject = "a"
  phase         = "ek"
  devid_handle  = "0x81010003"
  paths {
    tpm = "/lab/a/tpm.sock"
  }
}
host "b" {
  devid_subject = "b"
}
`)
	a, b := inv.PathsOf(inv.Host("a")), inv.PathsOf(inv.Host("b"))
	if a.TPM != "/lab/a/tpm.sock" || b.TPM != "/run/tpm.sock" || a.SPIREBinDir != "/srv/spire/bin" || b.SPIREBinDir != "/srv/spire/bin" || a.BinDir != "/usr/bin" {
		t.Errorf("paths: a %+v, b %+v", a, b)
	}
	if inv.Server.Port != 9081 || inv.Server.AgentTTL != 2*time.Minute || inv.Server.ExpiredEKCert != "warn" {
		t.Errorf("spire_server %+v", inv.Server)
	}
	if h := inv.Host("a"); h.Phase != registry.PhaseEK || h.DevIDHandleOf() != "0x81010003" {
		t.Errorf("host a: %+v", h)
	}
	var keys []string
	p := registry.DefaultPaths()
	p.Each(func(key string, v *string) { keys = append(keys, key) })
	if len(keys) != 25 || keys[0] != "bin_dir" {
		t.Errorf("path keys %v", keys)
	}
}

func TestParseInventoryDeployErrors(t *testing.T) {
	const td = "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"a\"\n}\n"
	for _, tc := range []struct {
		name, src, want string
	}{
		{"bad phase", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"a\"\n  phase = \"tpm\"\n}\n",
			`registry: tower.hcl:4: host "a": phase: "tpm": want "join_token", "ek" or "devid"`},
		{"bad DevID handle", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"a\"\n  devid_handle = \"0x01000000\"\n}\n",
			`registry: tower.hcl:4: host "a": devid_handle: "0x01000000" is not a persistent handle`},
		{"server on unknown host", td + "spire_server {\n  host = \"b\"\n  address = \"spire\"\n}\n",
			`registry: tower.hcl:5: spire_server: host: "b" is not a host of the inventory`},
		{"server without address", td + "spire_server {\n  host = \"a\"\n}\n",
			`registry: tower.hcl:5: spire_server: address: missing`},
		{"bad port", td + "spire_server {\n  host = \"a\"\n  address = \"spire\"\n  port = 70000\n}\n",
			`registry: tower.hcl:8: spire_server: port: 70000: want a whole number from 1 to 65535`},
		{"port a string", td + "spire_server {\n  host = \"a\"\n  address = \"spire\"\n  port = \"8081\"\n}\n",
			`registry: tower.hcl:8: spire_server: port: want a number`},
		{"bad address", td + "spire_server {\n  host = \"a\"\n  address = \"spire funlab\"\n}\n",
			`registry: tower.hcl:7: spire_server: address: "spire funlab": want a DNS name or an IP address`},
		{"server twice", td + "spire_server {\n  host = \"a\"\n  address = \"s\"\n}\nspire_server {\n  host = \"a\"\n  address = \"s\"\n}\n",
			`registry: tower.hcl:9: spire_server: set twice (first at line 5)`},
		{"RA without step-ca", td + "ra {\n  host = \"a\"\n  url = \"https://a:8443\"\n}\n",
			`registry: tower.hcl:5: ra: needs a step_ca block`},
		{"RA away from step-ca", td + "host \"b\" {\n  devid_subject = \"b\"\n}\nra {\n  host = \"a\"\n  url = \"https://a:8443\"\n}\nstep_ca {\n  host = \"b\"\n  url = \"https://b\"\n}\n",
			`registry: tower.hcl:8: ra: host: "a", but step_ca runs on "b": the RA reads step-ca's ca.json, so it runs on step-ca's host`},
		{"RA URL over http", td + "ra {\n  host = \"a\"\n  url = \"http://a:8443\"\n}\nstep_ca {\n  host = \"a\"\n  url = \"https://a\"\n}\n",
			`registry: tower.hcl:7: ra: url: "http://a:8443": want an https URL`},
		{"step-ca URL with a path", td + "step_ca {\n  host = \"a\"\n  url = \"https://a/1.0/crl\"\n}\n",
			`registry: tower.hcl:7: step_ca: url: "https://a/1.0/crl": want an https URL`},
		{"relative path", td + "paths {\n  tpm = \"dev/tpmrm0\"\n}\n",
			`registry: tower.hcl:6: paths: tpm: "dev/tpmrm0": want an absolute path`},
		{"path with a space", td + "paths {\n  bin_dir = \"/opt/my bin\"\n}\n",
			`registry: tower.hcl:6: paths: bin_dir: "/opt/my bin": want an absolute path`},
		{"path with a specifier", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"a\"\n  paths {\n    bin_dir = \"/opt/%n\"\n  }\n}\n",
			`registry: tower.hcl:5: host "a": paths: bin_dir: "/opt/%n": want an absolute path`},
		{"unknown path key", td + "paths {\n  bindir = \"/usr/bin\"\n}\n",
			`registry: tower.hcl:6: paths: unknown key "bindir" (want bin_dir, plugin_dir, `},
		{"agent_ttl too short", td + "spire_server {\n  host = \"a\"\n  address = \"s\"\n  agent_ttl = \"10s\"\n}\n",
			`registry: tower.hcl:8: spire_server: agent_ttl: "10s": want a duration of at least 1m`},
		{"expired_ek_cert neither reject nor warn", td + "spire_server {\n  host = \"a\"\n  address = \"s\"\n  expired_ek_cert = \"accept\"\n}\n",
			`registry: tower.hcl:8: spire_server: expired_ek_cert: "accept": want "reject" or "warn"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.ParseInventory("tower.hcl", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}
