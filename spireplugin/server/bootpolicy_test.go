package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/status"

	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm/tpmsim"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// bootPolicy is a policy whose group tower has boot rules; host hash is in it.
func bootPolicy(hash, authority string, kernels ...string) string {
	return `
group "tower" {
  boot {
    secure_boot  = "required"
    boot_loaders = ["` + sha256Hex([]byte("shim")) + `", "` + sha256Hex([]byte("grub")) + `"]
    kernels      = ["` + strings.Join(kernels, `", "`) + `"]
    authorities  = ["` + authority + `"]
  }
}
host "` + hash + `" {
  group = "tower"
}
`
}

// TestBootPolicyThroughPlugins: a host booted from a log with Secure Boot on is allowed by
// boot rules over the replayed facts, gets the Secure Boot and authority selectors, and
// the decision log names the rule; once its kernel is no longer approved it is refused
// naming the rule, the event and both values.
func TestBootPolicyThroughPlugins(t *testing.T) {
	certs := map[string]*x509.Certificate{}
	for _, cn := range []string{"PK", "KEK", "UEFI CA"} {
		c, err := eventlogtest.Certificate("Test " + cn)
		if err != nil {
			t.Fatal(err)
		}
		certs[cn] = c
	}
	l := eventlogtest.Standard(eventlogtest.SecureBoot{Enabled: true, PK: certs["PK"], KEK: certs["KEK"],
		DB: []*x509.Certificate{certs["UEFI CA"]}, Authority: certs["UEFI CA"],
		Chain: [][32]byte{sha256.Sum256([]byte("shim")), sha256.Sum256([]byte("grub")), sha256.Sum256([]byte("kernel-1"))}})
	logPath := filepath.Join(t.TempDir(), "boot.log")
	if err := os.WriteFile(logPath, l.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sim, sock := testtpm.ServeSim(t, tpmsim.Options{BootLog: logPath})
	h := &simHost{sim: sim, socket: sock, dir: filepath.Dir(sock)}
	hash := h.ekHash(t)
	authority := sha256Hex(certs["UEFI CA"].Raw)
	k1, k2, k3 := sha256Hex([]byte("kernel-1")), sha256Hex([]byte("kernel-2")), sha256Hex([]byte("kernel-3"))
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(policyPath, []byte(bootPolicy(hash, authority, k1, k2)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	p.configure(t, `ca_path = "`+h.sim.BundlePath()+`"
		event_log = "require"
		pcr_policy_path = "`+policyPath+`"`,
		`tpm_path = "`+h.socket+`"
		 event_log_path = "`+sim.EventLogPath()+`"`)
	attrs, err := p.attest(t)
	if err != nil {
		t.Fatalf("attestation under boot rules: %v\n%s", err, p.log.String())
	}
	for _, want := range []string{"secure_boot:enabled", "boot:authority:" + authority, "pcr_policy:tower"} {
		if !slices.Contains(attrs.SelectorValues, want) {
			t.Errorf("selectors %q lack %q", attrs.SelectorValues, want)
		}
	}
	if want := `rule="boot of group tower (secure_boot, authorities, boot_loaders, kernels)"`; !strings.Contains(p.log.String(), want) {
		t.Errorf("the decision log line lacks %s:\n%s", want, p.log.String())
	}

	// kernel-1 is withdrawn: kernels now approves kernel-2 and kernel-3 only.
	if err := os.WriteFile(policyPath, []byte(bootPolicy(hash, authority, k2, k3, sha256Hex([]byte("kernel-4")))), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = p.attest(t)
	st, _ := status.FromError(err)
	apps, aerr := eventlogtest.ApplicationEvents(l.Bytes())
	if aerr != nil {
		t.Fatal(aerr)
	}
	want := "tpm: policy: boot rule kernels of group tower: PCR 4 event #" + strconv.Itoa(apps[2]) + " of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 3 of 3, the kernel) digest " + k1 +
		" is not approved (approved: " + k2 + ", " + k3 + ", " + sha256Hex([]byte("kernel-4")) + ")"
	if st.Code().String() != "PermissionDenied" || st.Message() != want {
		t.Errorf("withdrawn kernel: %v\nwant PermissionDenied: %s", err, want)
	}
	if !strings.Contains(p.log.String(), "rule=kernels") || !strings.Contains(p.log.String(), "check=pcr_policy") {
		t.Errorf("the rejection log line lacks rule=kernels and check=pcr_policy:\n%s", p.log.String())
	}
}

// TestBootPolicyConfig: a policy whose rules reason over what the server does not verify
// is a configuration error naming the rule and the PCR.
func TestBootPolicyConfig(t *testing.T) {
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(policyPath, []byte(`
group "tower" {
  boot {
    secure_boot = "required"
    kernels     = ["`+sha256Hex([]byte("kernel"))+`"]
  }
  set "lab" {
    pcrs = { "0" = "`+sha256Hex(nil)+`", "9" = "`+sha256Hex(nil)+`" }
  }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	for _, tc := range []struct {
		hcl  string
		want []string
	}{
		{`pcr_selection = [0, 2, 4, 7, 9]`, []string{
			`pcr_policy_path: boot rules of group tower (secure_boot, kernels) need the event log, and event_log is "ignore": set event_log = "verify" or "require"`,
		}},
		{`event_log = "verify"`, []string{
			`pcr_policy_path: set "lab" of group tower names PCR 9, which pcr_selection [0 2 4 7] does not quote`,
		}},
		{`event_log = "verify"
		  pcr_selection = [0, 4, 9]`, []string{
			`pcr_policy_path: boot rule secure_boot of group tower needs PCR 7, which pcr_selection [0 4 9] does not quote`,
		}},
		{`event_log = "verify"
		  pcr_selection = [0, 4, 7, 9]`, nil},
	} {
		resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `
			allow_insecure = true
			pcr_policy_path = "` + policyPath + `"
			` + tc.hcl})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Valid != (tc.want == nil) || !slices.Equal(resp.Notes, tc.want) {
			t.Errorf("%s: Validate notes %q, want %q", tc.hcl, resp.Notes, tc.want)
		}
	}
}

// TestBootSelectorsFromReplayedFactsOnly: the Secure Boot and authority selectors come
// from a log the server replayed against the quote: none under event_log = "ignore", none
// when the replayed log shows Secure Boot off.
func TestBootSelectorsFromReplayedFactsOnly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		enabled   bool
		eventLog  string
		want, not []string
	}{
		{name: "Secure Boot on, log verified", enabled: true, eventLog: "verify", want: []string{"secure_boot:enabled", "boot:authority:"}},
		{name: "Secure Boot on, log ignored", enabled: true, eventLog: "ignore", not: []string{"secure_boot:", "boot:"}},
		{name: "Secure Boot off, log verified", enabled: false, eventLog: "verify", not: []string{"secure_boot:", "boot:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := eventlogtest.Certificate("Test UEFI CA")
			if err != nil {
				t.Fatal(err)
			}
			sb := eventlogtest.SecureBoot{Enabled: tc.enabled, DB: []*x509.Certificate{ca},
				Chain: [][32]byte{sha256.Sum256([]byte("shim")), sha256.Sum256([]byte("kernel"))}}
			if tc.enabled {
				sb.Authority = ca
				if sb.PK, err = eventlogtest.Certificate("Test PK"); err != nil {
					t.Fatal(err)
				}
				sb.KEK = sb.PK
			}
			logPath := filepath.Join(t.TempDir(), "boot.log")
			if err := os.WriteFile(logPath, eventlogtest.Standard(sb).Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			sim, sock := testtpm.ServeSim(t, tpmsim.Options{BootLog: logPath})
			p := loadPlugins(t)
			p.configure(t, `ca_path = "`+sim.BundlePath()+`"
				event_log = "`+tc.eventLog+`"`,
				`tpm_path = "`+sock+`"
				 event_log_path = "`+sim.EventLogPath()+`"`)
			attrs, err := p.attest(t)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if len(selectorsWith(attrs.SelectorValues, w)) != 1 {
					t.Errorf("selectors %q: want one %s…", attrs.SelectorValues, w)
				}
			}
			if len(tc.want) > 1 && !slices.Contains(attrs.SelectorValues, "boot:authority:"+sha256Hex(ca.Raw)) {
				t.Errorf("selectors %q lack the authority %s", attrs.SelectorValues, sha256Hex(ca.Raw))
			}
			for _, n := range tc.not {
				if got := selectorsWith(attrs.SelectorValues, n); len(got) > 0 {
					t.Errorf("selectors %q from a log not replayed or with Secure Boot off", got)
				}
			}
		})
	}
}
