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

// TestEKModeException: a server in DevID mode accepts an agent in EK mode only when its
// EK hash is listed in ek_mode_hosts_path (re-read when it changes), with the same agent
// ID as in DevID mode and the selector tpm:mode:ek_cert; the DevID-mode agent of the same
// host still attests.
func TestEKModeException(t *testing.T) {
	h := startDevIDHost(t)
	hash := h.ekHash(t)
	wantID := "spiffe://funlab.casa/spire/agent/tpm/" + hash
	list := filepath.Join(t.TempDir(), "ek-mode-hosts")
	other := strings.Repeat("ab", 32)
	write := func(hashes ...string) {
		t.Helper()
		if err := os.WriteFile(list, []byte("# rolled back to EK mode\n"+strings.Join(hashes, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(other)
	serverHCL := h.serverHCL + "\nek_mode_hosts_path = \"" + list + "\""
	ekAgentHCL := `tpm_path = "` + h.socket + `"`

	p := loadPlugins(t)
	p.configure(t, serverHCL, ekAgentHCL)
	_, err := p.attest(t)
	want := `rpc error: code = PermissionDenied desc = tpm: verify: ek_mode_exception: EK ` + hash + ` is not an EK-mode exception (ek_mode_hosts_path): this server serves mode "devid"`
	if err == nil || err.Error() != want {
		t.Fatalf("EK-mode agent not listed: %v\nwant %s", err, want)
	}
	if log := p.log.String(); !strings.Contains(log, "tpm attestation rejected: mode=devid agent_id="+wantID) || !strings.Contains(log, "check=ek_mode_exception") {
		t.Errorf("audit line:\n%s", log)
	}

	write(other, strings.ToUpper(hash))
	attrs, err := p.attest(t)
	if err != nil {
		t.Fatalf("EK-mode agent listed: %v", err)
	}
	if attrs.SpiffeId != wantID {
		t.Errorf("agent ID %s, want %s (the same as in DevID mode)", attrs.SpiffeId, wantID)
	}
	for _, s := range []string{"pub_hash:" + hash, "mode:ek_cert", "ek_cert:issuer:cn:omens Simulated TPM Manufacturer EK Intermediate CA"} {
		if !slices.Contains(attrs.SelectorValues, s) {
			t.Errorf("selector %q missing from %v", s, attrs.SelectorValues)
		}
	}
	if got := devidSelectors(attrs.SelectorValues); len(got) != 0 {
		t.Errorf("DevID selectors %q in EK mode", got)
	}
	if log := p.log.String(); !strings.Contains(log, "tpm attestation accepted: mode=ek_cert agent_id="+wantID) {
		t.Errorf("audit line:\n%s", log)
	}

	// The same host back in DevID mode: accepted, without the EK-mode selector.
	p.configure(t, serverHCL, h.agentHCL)
	if attrs, err = p.attest(t); err != nil {
		t.Fatalf("DevID-mode agent: %v", err)
	}
	if attrs.SpiffeId != wantID || slices.Contains(attrs.SelectorValues, "mode:ek_cert") {
		t.Errorf("DevID mode: agent ID %s, selectors %v", attrs.SpiffeId, attrs.SelectorValues)
	}

	// Taken off the list: EK mode refused again, without a restart.
	write(other)
	p.configure(t, serverHCL, ekAgentHCL)
	if _, err := p.attest(t); err == nil || err.Error() != want {
		t.Fatalf("after removal from the list: %v\nwant %s", err, want)
	}
}

// TestEKModeExceptionNeedsVerifiedCertificate: an EK-mode exception whose EK certificate
// does not verify (accepted only by allow_insecure) is refused.
func TestEKModeExceptionNeedsVerifiedCertificate(t *testing.T) {
	h := startDevIDHost(t)
	hash := h.ekHash(t)
	list := filepath.Join(t.TempDir(), "ek-mode-hosts")
	if err := os.WriteFile(list, []byte(hash+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	p.configure(t, `devid_mode = "devid"
		ca_path = "`+startOtherCA(t)+`"
		allow_insecure = true
		devid_ca_path = "`+h.caPath+`"
		ek_mode_hosts_path = "`+list+`"`, `tpm_path = "`+h.socket+`"`)
	_, err := p.attest(t)
	want := `rpc error: code = PermissionDenied desc = tpm: verify: ek_mode_exception: EK ` + hash + ` is an EK-mode exception but its EK certificate is "insecure": an exception needs an EK certificate that verifies against ca_path`
	if err == nil || err.Error() != want {
		t.Fatalf("%v\nwant %s", err, want)
	}
}

// TestEKModeHostsValidate: ek_mode_hosts_path is refused outside DevID mode, without a
// manufacturer bundle, and when it holds something else than EK hashes.
func TestEKModeHostsValidate(t *testing.T) {
	h := startDevIDHost(t)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte(strings.Repeat("ab", 32)+"\n"), 0o644)
	os.WriteFile(bad, []byte("auth.funlab.casa\n"), 0o644)
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	for _, tc := range []struct{ hcl, want string }{
		{`ca_path = "` + h.sim.BundlePath() + `"
		  ek_mode_hosts_path = "` + good + `"`,
			`ek_mode_hosts_path is set, but devid_mode is "ek_cert": EK-mode exceptions are for a server in DevID mode; remove it`},
		{`devid_mode = "devid"
		  allow_insecure = true
		  devid_ca_path = "` + h.caPath + `"
		  ek_mode_hosts_path = "` + good + `"`,
			`ek_mode_hosts_path needs ca_path (or endorsement_ca_path): an EK-mode exception must present an EK certificate that verifies`},
		{h.serverHCL + "\nek_mode_hosts_path = \"" + bad + "\"",
			`ek_mode_hosts_path: ` + bad + ` line 1: "auth.funlab.casa" is not an EK hash (64 hex digits)`},
	} {
		resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: tc.hcl})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Valid || !slices.Equal(resp.Notes, []string{tc.want}) {
			t.Errorf("%s:\nnotes %q\nwant  %q", tc.hcl, resp.Notes, tc.want)
		}
	}
}
