package hostconf_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/registry"
	agentplugin "omens.dev/omens/spireplugin/agent"
	srvplugin "omens.dev/omens/spireplugin/server"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

// tower is the example inventory of the Tower.
func tower(t *testing.T) *registry.Inventory {
	t.Helper()
	inv, err := registry.LoadInventory(filepath.Join("..", "examples", "tower.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// placeholderPlugins writes stand-ins for the plugin binaries, whose checksums are
// fixed, into a new directory.
func placeholderPlugins(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{hostconf.ServerPlugin, hostconf.AgentPlugin} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n# a stand-in for "+name+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func setPhases(inv *registry.Inventory, phases map[string]registry.Phase) {
	for i := range inv.Hosts {
		if p, ok := phases[inv.Hosts[i].Name]; ok {
			inv.Hosts[i].Phase = p
		}
	}
}

func all(p registry.Phase) map[string]registry.Phase {
	return map[string]registry.Phase{"spire": p, "auth": p, "ca": p}
}

func roles(files []hostconf.File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Role+"="+f.Path)
	}
	return out
}

// Each host gets the files of its roles, at the default paths.
func TestRenderRoles(t *testing.T) {
	inv := tower(t)
	opt := hostconf.Options{PluginDir: placeholderPlugins(t, t.TempDir())}
	agent := []string{"spire-agent.conf=/etc/spire/agent.conf", "spire-agent.service=/lib/systemd/system/spire-agent.service"}
	renew := []string{"omens-devid.env=/etc/omens/devid.env", "omens-devid-renew.service=/lib/systemd/system/omens-devid-renew.service",
		"omens-devid-renew.timer=/lib/systemd/system/omens-devid-renew.timer"}
	for host, want := range map[string][]string{
		"spire": slices.Concat([]string{"spire-server.conf=/etc/spire/server.conf", "spire-server.service=/lib/systemd/system/spire-server.service"}, agent, renew,
			[]string{"svid-helper=/etc/omens/svid-helper-openbao.hcl", "openbao-listener=/etc/omens/openbao-listener.hcl"}),
		"auth": slices.Concat(agent, renew),
		"ca": slices.Concat(agent, []string{"omens-ra.env=/etc/omens/ra.env", "omens-ra.service=/lib/systemd/system/omens-ra.service"}, renew,
			[]string{"svid-helper=/etc/omens/svid-helper-step-ca.hcl"}),
	} {
		files, err := hostconf.Render(inv, host, opt)
		if err != nil {
			t.Fatal(err)
		}
		if got := roles(files); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", host, got, want)
		}
	}
}

// The server's NodeAttestors follow the phases of all hosts; each agent's follows its own.
func TestRenderPhases(t *testing.T) {
	opt := hostconf.Options{PluginDir: placeholderPlugins(t, t.TempDir())}
	for _, tc := range []struct {
		name      string
		phases    map[string]registry.Phase
		server    []string // in spire-server.conf
		notServer []string
		auth      []string // in auth's spire-agent.conf
		notAuth   []string
	}{
		{"every host on a join token", all(registry.PhaseJoinToken),
			[]string{`devid_mode = "devid"`, `NodeAttestor "join_token"`}, nil,
			[]string{`join_token_file = "/etc/spire/join-token"`, `NodeAttestor "join_token"`}, []string{`NodeAttestor "tpm"`}},
		{"every host in EK mode", all(registry.PhaseEK),
			[]string{`devid_mode = "ek_cert"`, `ca_path = "/etc/omens/tpm-ek-ca-certs"`}, []string{"join_token", "devid_ca_path", "devid_crl_url"},
			[]string{`NodeAttestor "tpm"`, `plugin_cmd = "/usr/lib/omens/omens-attestor-agent"`, `tpm_path = "/dev/tpmrm0"`, `pcr_selection = [0, 2, 4, 7]`},
			[]string{"join_token", "devid_cert_path"}},
		{"one host in EK mode, the others on join tokens", map[string]registry.Phase{"spire": registry.PhaseJoinToken, "auth": registry.PhaseEK, "ca": registry.PhaseJoinToken},
			[]string{`devid_mode = "ek_cert"`, `NodeAttestor "join_token"`}, []string{"devid_ca_path"},
			[]string{`NodeAttestor "tpm"`}, []string{"join_token", "devid_cert_path"}},
		{"every host in DevID mode", all(registry.PhaseDevID),
			[]string{`devid_mode = "devid"`, `devid_ca_path = "/etc/omens/step-ca-root.pem"`, `devid_crl_url = "https://ca.funlab.casa/1.0/crl"`,
				`pcr_policy_path = "/etc/omens/pcr-policy.hcl"`, `event_log = "verify"`}, []string{"join_token", "expired_ek_cert"},
			[]string{`devid_cert_path = "/var/lib/omens/devid/devid.crt"`, `devid_priv_path = "0x81010002"`}, []string{"join_token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := tower(t)
			setPhases(inv, tc.phases)
			check := func(host, role string, want, not []string) {
				files, err := hostconf.Render(inv, host, opt)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					if f.Role != role {
						continue
					}
					for _, w := range want {
						if !strings.Contains(string(f.Data), w) {
							t.Errorf("%s of %s lacks %s:\n%s", role, host, w, f.Data)
						}
					}
					for _, n := range not {
						if strings.Contains(string(f.Data), n) {
							t.Errorf("%s of %s has %s:\n%s", role, host, n, f.Data)
						}
					}
				}
			}
			check("spire", hostconf.RoleServerConf, tc.server, tc.notServer)
			check("auth", hostconf.RoleAgentConf, tc.auth, tc.notAuth)
		})
	}
}

// The spire_server block's expired_ek_cert reaches NodeAttestor "tpm" on the server.
func TestRenderExpiredEKCert(t *testing.T) {
	inv := tower(t)
	setPhases(inv, all(registry.PhaseDevID))
	inv.Server.ExpiredEKCert = "warn"
	files, err := hostconf.Render(inv, "spire", hostconf.Options{PluginDir: placeholderPlugins(t, t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Role == hostconf.RoleServerConf && !strings.Contains(string(f.Data), `expired_ek_cert = "warn"`) {
			t.Errorf("the server's configuration lacks expired_ek_cert = \"warn\":\n%s", f.Data)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	plugins := placeholderPlugins(t, t.TempDir())
	for _, tc := range []struct {
		name, host string
		change     func(*registry.Inventory)
		pluginDir  string
		want       string
	}{
		{"unknown host", "db", nil, plugins, `hostconf: tower.hcl: host "db" is not in the inventory (its hosts: spire, auth, ca)`},
		{"no server block", "auth", func(inv *registry.Inventory) { inv.Server = nil }, plugins,
			`hostconf: tower.hcl: spire_server: missing: add a spire_server block naming the server's host and address`},
		{"agent without phase", "auth", func(inv *registry.Inventory) { inv.Host("auth").Phase = "" }, plugins,
			`hostconf: tower.hcl: host "auth": phase: missing: set phase = "join_token", "ek" or "devid" (how its agent attests)`},
		{"server, a host without phase", "spire", func(inv *registry.Inventory) { inv.Host("ca").Phase = "" }, plugins,
			`hostconf: tower.hcl: host "ca": phase: missing: the server's configuration follows every host's phase`},
		{"EK mode exception without an EK hash", "spire", func(inv *registry.Inventory) { inv.Host("ca").Phase = registry.PhaseEK }, plugins,
			`hostconf: tower.hcl: host "ca": ek_hash: missing: in phase ek while spire, auth are in phase devid, the server accepts it in EK mode by its EK hash; set ek_hash (omens ek show prints it)`},
		{"DevID without step-ca", "spire", func(inv *registry.Inventory) { inv.StepCA, inv.RA = nil, nil }, plugins,
			`hostconf: tower.hcl: step_ca: missing: hosts in phase devid need the DevID CA`},
		{"plugin missing", "auth", nil, t.TempDir(),
			`(plugin_checksum is that binary's SHA-256: install the omens package, or give the directory that holds it with --plugin-dir)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := tower(t)
			if tc.change != nil {
				tc.change(inv)
			}
			_, err := hostconf.Render(inv, tc.host, hostconf.Options{PluginDir: tc.pluginDir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render:\n got: %v\nwant: …%s…", err, tc.want)
			}
		})
	}
	// Every host on a join token, without step-ca: EK mode, nothing to check a DevID with.
	inv := tower(t)
	inv.StepCA, inv.RA = nil, nil
	setPhases(inv, all(registry.PhaseJoinToken))
	if mode, jt, err := hostconf.ServerMode(inv); err != nil || mode != protocol.ModeEKCert || !jt {
		t.Errorf("ServerMode without step-ca: %s %v %v", mode, jt, err)
	}
}

// TestRenderEKModeExceptions: a host in phase ek while others are in devid is an EK-mode
// exception of the server in DevID mode: its EK hash in the file of ek_mode_hosts_path,
// rendered with the server's configuration; its node alias needs its EK hash alone.
func TestRenderEKModeExceptions(t *testing.T) {
	inv := tower(t)
	inv.Host("auth").Phase = registry.PhaseEK
	files, err := hostconf.Render(inv, "spire", hostconf.Options{PluginDir: placeholderPlugins(t, t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	byRole := map[string]string{}
	for _, f := range files {
		roles = append(roles, f.Role)
		byRole[f.Role] = string(f.Data)
	}
	if want := []string{hostconf.RoleServerConf, hostconf.RoleEKModeHosts, hostconf.RoleServerUnit, hostconf.RoleAgentConf}; !slices.Equal(roles[:4], want) {
		t.Errorf("roles %q, want %q first", roles, want)
	}
	for _, s := range []string{`devid_mode = "devid"`, `ek_mode_hosts_path = "/etc/omens/ek-mode-hosts"`, `(auth in EK mode, as exceptions)`} {
		if !strings.Contains(byRole[hostconf.RoleServerConf], s) {
			t.Errorf("server configuration lacks %s:\n%s", s, byRole[hostconf.RoleServerConf])
		}
	}
	if got, want := byRole[hostconf.RoleEKModeHosts], "\n# auth\n0000000000000000000000000000000000000000000000000000000000000002\n"; !strings.HasSuffix(got, want) {
		t.Errorf("ek-mode-hosts:\n%s\nwant it to end with %q", got, want)
	}
	if got, want := inv.Host("auth").NodeSelectors(), []string{"tpm:pub_hash:0000000000000000000000000000000000000000000000000000000000000002", "tpm:pcr_policy:tower"}; !slices.Equal(got, want) {
		t.Errorf("auth's alias selectors in phase ek: %q, want %q", got, want)
	}
	// Back in phase devid: no exceptions.
	inv.Host("auth").Phase = registry.PhaseDevID
	srv, err := hostconf.Server(inv, hostconf.Options{PluginDir: placeholderPlugins(t, t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := srv.Render()
	if strings.Contains(string(b), "ek_mode_hosts_path") {
		t.Errorf("ek_mode_hosts_path without a host in phase ek:\n%s", b)
	}
}

// TestRenderValidates renders, for every host of the Tower at every phase, its files and
// has the real engines check them: spire-server validate and spire-agent validate (which
// start the plugins, built here, and run their Validate) and systemd-analyze verify, with
// every path of the inventory pointing at real files in a temporary root.
func TestRenderValidates(t *testing.T) {
	server := enginetest.Path(t, engines.SPIREServer)
	agent := enginetest.Path(t, engines.SPIREAgent)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		enginetest.Missing(t, "systemd-analyze not found (Debian package systemd): "+err.Error())
	}
	root := t.TempDir()
	bin := filepath.Join(root, "usr", "bin")
	if out, err := exec.Command("go", "build", "-o", bin+"/", "omens.dev/omens/cmd/omens",
		"omens.dev/omens/cmd/omens-attestor-server", "omens.dev/omens/cmd/omens-attestor-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	spireBin := filepath.Join(root, "opt", "spire", "bin")
	if err := os.MkdirAll(spireBin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{server, agent} {
		if err := os.Symlink(e, filepath.Join(spireBin, filepath.Base(e))); err != nil {
			t.Fatal(err)
		}
	}
	inv := tower(t)
	p := registry.DefaultPaths()
	p.Each(func(key string, v *string) {
		if *v != "" && key != "tpm" {
			*v = filepath.Join(root, *v)
		}
	})
	p.BinDir, p.PluginDir = bin, bin
	inv.Paths = p
	if err := os.MkdirAll(p.SPIREServerData, 0o700); err != nil { // systemd's StateDirectory
		t.Fatal(err)
	}
	// The files the configurations name, as an operator puts them in place: CA bundles
	// (a root made here stands for the manufacturers' and step-ca's), the example PCR
	// policy, the server's bundle, a join token, a DevID certificate.
	policy, err := os.ReadFile(filepath.Join("..", "policy", "example.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	ca := selfSignedPEM(t)
	for f, data := range map[string][]byte{p.EKCA: ca, p.StepCARoot: ca, p.PCRPolicy: policy, p.TrustBundle: ca,
		p.JoinTokenFile: []byte("a-join-token\n"), filepath.Join(p.DevIDDir, "devid.crt"): ca} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, argv ...string) string {
		t.Helper()
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	cases := map[string]map[string]registry.Phase{"as in the example": nil}
	for _, ph := range registry.Phases {
		cases["every host in phase "+string(ph)] = all(ph)
	}
	for name, phases := range cases {
		t.Run(name, func(t *testing.T) {
			inv := *inv
			inv.Hosts = slices.Clone(inv.Hosts)
			setPhases(&inv, phases)
			for _, h := range inv.Hosts {
				files, err := hostconf.Render(&inv, h.Name, hostconf.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := hostconf.Write("/", files); err != nil {
					t.Fatal(err)
				}
				var units []string
				for _, f := range files {
					switch f.Role {
					case hostconf.RoleServerConf:
						run(t, server, "validate", "-config", f.Path)
						if notes := validateTPM(t, f.Path, srvplugin.New()); len(notes) > 0 {
							t.Errorf("%s: NodeAttestor \"tpm\" Validate: %v", f.Path, notes)
						}
						// And it runs: SPIRE starts the plugin binary, whose checksum
						// matches, and the plugin's Configure accepts its data.
						spiretest.RunServerConfig(t, f.Path, p.SPIREServerSocket)
					case hostconf.RoleAgentConf:
						run(t, agent, "validate", "-config", f.Path)
						if h.Phase != registry.PhaseJoinToken {
							if notes := validateTPM(t, f.Path, agentplugin.New()); len(notes) > 0 {
								t.Errorf("%s: NodeAttestor \"tpm\" Validate: %v", f.Path, notes)
							}
						}
					case hostconf.RoleServerUnit, hostconf.RoleAgentUnit, hostconf.RoleRAUnit, hostconf.RoleRenewService, hostconf.RoleRenewTimer:
						units = append(units, f.Path)
					}
				}
				if out := run(t, append([]string{analyze, "verify"}, units...)...); out != "" {
					t.Errorf("systemd-analyze verify %s: %s", h.Name, out)
				}
			}
		})
	}

	// The plugin's Validate judges what it is handed: without the DevID CA it names the key.
	setPhases(inv, all(registry.PhaseDevID))
	files, err := hostconf.Render(inv, "spire", hostconf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hostconf.Write("/", files); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.StepCARoot); err != nil {
		t.Fatal(err)
	}
	notes := validateTPM(t, p.SPIREServerConf, srvplugin.New())
	if want := "devid_ca_path: stat " + p.StepCARoot + ": no such file or directory"; !slices.Contains(notes, want) {
		t.Errorf("Validate without the DevID CA: %v, want %s", notes, want)
	}
}

// selfSignedPEM is a CA certificate of a key made here, PEM.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hostconf test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// validateTPM hands the plugin_data of NodeAttestor "tpm" in the configuration file path,
// as SPIRE hands it over, to the plugin's Validate and returns its notes. (SPIRE v1.13's
// validate command does not start plugins.)
func validateTPM(t *testing.T, path string, p interface {
	Validate(context.Context, *configv1.ValidateRequest) (*configv1.ValidateResponse, error)
}) []string {
	t.Helper()
	data, err := spiretest.PluginData(path, "NodeAttestor", "tpm")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Validate(context.Background(), &configv1.ValidateRequest{HclConfiguration: data,
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Valid != (len(resp.Notes) == 0) {
		t.Errorf("Validate: valid %v with notes %v", resp.Valid, resp.Notes)
	}
	return resp.Notes
}
