package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/verify"
)

// spireTPMPluginGoldenHash is spire-tpm-plugin's own golden pub_hash for the reference
// simulator on seed 0 (see testtpm.SpireTPMPluginSeed0PubHash).
const spireTPMPluginGoldenHash = testtpm.SpireTPMPluginSeed0PubHash

// spireTPMPluginServerHCL is the server plugin_data of spire-tpm-plugin's README (Quick
// Start, Server Configuration), as its users have it; the tests move its directory.
const spireTPMPluginServerHCL = `
		ca_path = "/opt/spire/.data/certs"
		hash_path = "/opt/spire/.data/hashes"
`

// TestSpireTPMPluginGoldenPubHash: omens' EK hash of the fixed-seed simulator is the
// golden pub_hash of spire-tpm-plugin, so the agent ID and tpm:pub_hash carry over.
func TestSpireTPMPluginGoldenPubHash(t *testing.T) {
	sim, err := simulator.GetWithFixedSeedInsecure(0)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	eks, err := tpm.EndorsementKeys(transport.FromReadWriter(sim))
	if err != nil {
		t.Fatal(err)
	}
	if len(eks) != 1 || eks[0].Certificate != nil {
		t.Fatalf("the bare simulator has %d EKs (want 1, without certificate)", len(eks))
	}
	got, err := verify.EKHash(eks[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got != spireTPMPluginGoldenHash {
		t.Errorf("EK hash %s, want spire-tpm-plugin's %s", got, spireTPMPluginGoldenHash)
	}
}

// seed0Host is tpmsim on the fixed seed 0 (its seed file), served on a socket: the EK of
// the golden hash, here with an EK certificate in NV, like a real TPM.
func seed0Host(t *testing.T) *simHost {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "seed"), []byte(testtpm.Seed0+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sim, sock := testtpm.ServeSim(t, tpmsim.Options{StateDir: dir})
	return &simHost{sim: sim, socket: sock, dir: filepath.Dir(sock)}
}

// spireTPMPluginDirs lays out spire-tpm-plugin's two directories under root: certs/ with
// the given CA bundle (when not empty) and hashes/ with an empty file per hash.
func spireTPMPluginDirs(t *testing.T, root, bundle string, hashes ...string) {
	t.Helper()
	for _, d := range []string{"certs", "hashes"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if bundle != "" {
		b, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "certs", "manufacturer.pem"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hashes {
		if err := os.WriteFile(filepath.Join(root, "hashes", h), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpireTPMPluginConfig: a server with spire-tpm-plugin's documented plugin_data, only
// plugin_cmd changed, gives the fixed-seed TPM the agent ID and tpm:pub_hash selector that
// plugin gives it (spiffe://<trust domain>/spire/agent/tpm/<pub_hash>, pub_hash:<hash>).
// spire-tpm-plugin's agent takes no keys: an empty plugin_data is valid here too (it
// finds /dev/tpmrm0 or /dev/tpm0); the test names the simulator's socket.
func TestSpireTPMPluginConfig(t *testing.T) {
	h := seed0Host(t)
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	agentResp, err := p.agentConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: ""})
	if err != nil {
		t.Fatal(err)
	}
	if !agentResp.Valid {
		t.Errorf("agent: spire-tpm-plugin's empty plugin_data refused: %q", agentResp.Notes)
	}
	other := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name, bundle string
		hashes       []string
		hcl          string
		wantErr      string
		wantSel      []string
	}{
		{name: "README config, hash and CA", bundle: h.sim.BundlePath(), hashes: []string{spireTPMPluginGoldenHash},
			hcl:     spireTPMPluginServerHCL,
			wantSel: []string{"pub_hash:" + spireTPMPluginGoldenHash, "ek_cert:issuer:cn:omens Simulated TPM Manufacturer EK Intermediate CA"}},
		{name: "README config, CA only (empty hash directory)", bundle: h.sim.BundlePath(),
			hcl:     spireTPMPluginServerHCL,
			wantSel: []string{"pub_hash:" + spireTPMPluginGoldenHash, "ek_cert:issuer:cn:omens Simulated TPM Manufacturer EK Intermediate CA"}},
		{name: "hash_path only", hashes: []string{spireTPMPluginGoldenHash},
			hcl:     `hash_path = "/opt/spire/.data/hashes"`,
			wantSel: []string{"pub_hash:" + spireTPMPluginGoldenHash, "ek_cert:none"}},
		{name: "hash_path only, another TPM's hash", hashes: []string{other},
			hcl:     `hash_path = "/opt/spire/.data/hashes"`,
			wantErr: "rpc error: code = PermissionDenied desc = tpm: verify: ek_certificate: no manufacturer CA bundle is configured (ca_path) to verify the EK certificate (ek_hash=" + spireTPMPluginGoldenHash + ")"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			spireTPMPluginDirs(t, root, c.bundle, c.hashes...)
			hcl := strings.ReplaceAll(c.hcl, "/opt/spire/.data", root)
			resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: hcl})
			if err != nil {
				t.Fatal(err)
			}
			if !resp.Valid {
				t.Fatalf("server Validate refused spire-tpm-plugin's config: %q", resp.Notes)
			}
			p.configure(t, hcl, `tpm_path = "`+h.socket+`"`)
			attrs, err := p.attest(t)
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("attest: %v\nwant %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "spiffe://funlab.casa/spire/agent/tpm/" + spireTPMPluginGoldenHash; attrs.SpiffeId != want {
				t.Errorf("agent ID %s, want spire-tpm-plugin's %s", attrs.SpiffeId, want)
			}
			for _, want := range c.wantSel {
				if !slices.Contains(attrs.SelectorValues, want) {
					t.Errorf("selector %q missing from %v", want, attrs.SelectorValues)
				}
			}
		})
	}
}

// TestHashPathReloadAndRefusals: the hash directory is re-read when it changes, like the
// other lists; an entry not named by a hash is refused by name, dot files are skipped.
func TestHashPathReloadAndRefusals(t *testing.T) {
	h := seed0Host(t)
	p := loadPlugins(t)
	root := t.TempDir()
	spireTPMPluginDirs(t, root, "", strings.Repeat("cd", 32))
	if err := os.WriteFile(filepath.Join(root, "hashes", ".keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hashes := filepath.Join(root, "hashes")
	p.configure(t, `hash_path = "`+hashes+`"
		ca_path = "`+h.sim.BundlePath()+`"`, `tpm_path = "`+h.socket+`"`)
	if _, err := p.attest(t); err != nil {
		t.Fatalf("a TPM with a valid EK certificate, not in hash_path: %v", err)
	}
	// Now without ca_path: only the directory decides.
	p.configure(t, `hash_path = "`+hashes+`"`, `tpm_path = "`+h.socket+`"`)
	if _, err := p.attest(t); err == nil {
		t.Fatal("a TPM not in hash_path was accepted without ca_path")
	}
	if err := os.WriteFile(filepath.Join(hashes, strings.ToUpper(spireTPMPluginGoldenHash)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	attrs, err := p.attest(t)
	if err != nil {
		t.Fatalf("after adding its hash (in upper case) to hash_path: %v", err)
	}
	if want := "spiffe://funlab.casa/spire/agent/tpm/" + spireTPMPluginGoldenHash; attrs.SpiffeId != want {
		t.Errorf("agent ID %s, want %s", attrs.SpiffeId, want)
	}

	if err := os.WriteFile(filepath.Join(hashes, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `hash_path = "` + hashes + `"`})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`hash_path: ` + hashes + `: entry "README" is not named by an EK hash (64 hex digits)`}
	if resp.Valid || !slices.Equal(resp.Notes, want) {
		t.Errorf("Validate notes %q, want %q", resp.Notes, want)
	}
}
