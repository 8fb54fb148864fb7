package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

// TestHostileFilesRefusedThroughPlugin: files over their size or nesting limit give a
// configuration error that names the key, the file and the limit, through the plugin's
// gRPC Validate and Configure, and do not crash the plugin (a million nested braces in
// the policy file once overflowed the HCL parser's stack).
func TestHostileFilesRefusedThroughPlugin(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, size int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if size > 0 {
			if err := os.Truncate(p, size); err != nil { // sparse
				t.Fatal(err)
			}
		}
		return p
	}
	deepPolicy := file("deep-policy.hcl", "unknown_hosts = \"reject\"\ngroup \"g\" "+strings.Repeat("{", 1_000_000), 0)
	goodPolicy := file("policy.hcl", "unknown_hosts = \"reject\"\n", 0)
	deepState := file("deep-state.json", `{"version": 1, "hosts": `+strings.Repeat(`{"a": `, 1_000_000), 0)
	bigList := file("allow.txt", "", 16<<20+1)
	bigBundle := file("ca.pem", "", 16<<20+1)
	bigCRL := file("devid.crl", "", 8<<20+1)
	devidCA := file("devid-ca.pem", "", 0)

	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	for _, tc := range []struct {
		name, hcl, want string
	}{
		{"million braces in the policy file", `allow_insecure = true
			pcr_policy_path = "` + deepPolicy + `"`,
			"pcr_policy_path: policy: policy file: limits: " + deepPolicy + ":2: nesting deeper than the 32-level limit for a PCR policy file"},
		{"deep state file", `allow_insecure = true
			pcr_policy_path = "` + goodPolicy + `"
			pcr_state_path = "` + deepState + `"`,
			"pcr_policy_path: policy: reading state file: limits: " + deepState + ":1: nesting deeper than the 32-level limit for a PCR policy state file"},
		{"deep plugin_data", "allow_insecure = true\nx = " + strings.Repeat("[", 100_000),
			"limits: plugin_data:2: nesting deeper than the 32-level limit for a plugin configuration"},
		{"oversize allow list", `ek_allowlist_path = "` + bigList + `"`,
			"ek_allowlist_path: limits: " + bigList + " is 16777217 bytes, over the 16777216-byte limit for an EK hash list"},
		{"oversize CA bundle", `ca_path = "` + bigBundle + `"`,
			"ca_path: verify: CA bundle: limits: " + bigBundle + " is 16777217 bytes, over the 16777216-byte limit for a CA bundle file"},
		{"oversize CRL", `devid_mode = "devid"
			allow_insecure = true
			devid_ca_path = "` + devidCA + `"
			devid_crl_path = "` + bigCRL + `"`,
			"devid_crl_path: limits: " + bigCRL + " is 8388609 bytes, over the 8388608-byte limit for a CRL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: tc.hcl})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Valid || !slices.Equal(resp.Notes, []string{tc.want}) {
				t.Errorf("Validate: valid %v, notes %q\nwant [%q]", resp.Valid, resp.Notes, tc.want)
			}
			_, err = p.serverConfig.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: tc.hcl})
			want := "rpc error: code = InvalidArgument desc = tpm: bad configuration: " + tc.want
			if err == nil || err.Error() != want {
				t.Errorf("Configure:\n got: %v\nwant: %s", err, want)
			}
		})
	}
	// The plugin is still serving: a good configuration is taken.
	if _, err := p.serverConfig.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: `allow_insecure = true
		pcr_policy_path = "` + goodPolicy + `"`}); err != nil {
		t.Fatalf("good configuration after the hostile ones: %v", err)
	}
	// The agent plugin decodes its plugin_data the same way.
	resp, err := p.agentConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: "x = " + strings.Repeat("{", 1_000_000)})
	if err != nil {
		t.Fatal(err)
	}
	want := "limits: plugin_data:1: nesting deeper than the 32-level limit for a plugin configuration"
	if resp.Valid || !slices.Equal(resp.Notes, []string{want}) {
		t.Errorf("agent Validate: valid %v, notes %q\nwant [%q]", resp.Valid, resp.Notes, want)
	}
}

// TestPolicyEditedTooDeepThroughPlugin: a policy file replaced by a million braces after
// Configure fails the next attestation closed, with an error that names the file.
func TestPolicyEditedTooDeepThroughPlugin(t *testing.T) {
	h := startSimHost(t)
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(policyPath, []byte("unknown_hosts = \"reject\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	p.configure(t, `ca_path = "`+h.sim.BundlePath()+`"
		pcr_policy_path = "`+policyPath+`"`, `tpm_path = "`+h.socket+`"`)
	if err := os.WriteFile(policyPath, []byte("x = "+strings.Repeat("{", 1_000_000)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := p.attest(t)
	want := "rpc error: code = Internal desc = tpm: policy: policy file: limits: " + policyPath + ":1: nesting deeper than the 32-level limit for a PCR policy file"
	if err == nil || err.Error() != want {
		t.Fatalf("attest:\n got: %v\nwant: %s", err, want)
	}
}
