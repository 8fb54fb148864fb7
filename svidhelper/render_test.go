package svidhelper_test

import (
	"reflect"
	"testing"

	"github.com/hashicorp/hcl"

	"omens.dev/omens/svidhelper"
)

// TestRenderPlan renders the helper configurations of the plan's two services and
// OpenBao's listener: each configuration reads back (Parse) to the settings rendered,
// and the listener reads exactly the files OpenBao's helper writes.
func TestRenderPlan(t *testing.T) {
	services := svidhelper.Plan("funlab.casa", "/run/spire/agent/public/api.sock")
	if len(services) != 2 {
		t.Fatalf("%d services, want OpenBao and step-ca", len(services))
	}
	want := map[string]string{
		"openbao": `# omens svid helper for openbao on spire (spiffe://funlab.casa/openbao), run as user openbao:
#   omens svid helper --config FILE
agent_address = "/run/spire/agent/public/api.sock"
cert_dir = "/run/openbao/svid"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
renew_signal = "SIGHUP"
pid_file_name = "/run/openbao/openbao.pid"
`,
		"step-ca": `# omens svid helper for step-ca on ca (spiffe://funlab.casa/step-ca), run as user step:
#   omens svid helper --config FILE
agent_address = "/run/spire/agent/public/api.sock"
cert_dir = "/run/step-ca/svid"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
renew_signal = "SIGHUP"
cmd = "/usr/bin/step-ca"
cmd_args = "/etc/step-ca/config/ca.json --password-file /etc/step-ca/password.txt"
`,
	}
	for _, s := range services {
		b, err := svidhelper.RenderConfig(s)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want[s.Workload] {
			t.Errorf("%s helper configuration:\n%s\nwant:\n%s", s.Workload, b, want[s.Workload])
		}
		c, err := svidhelper.Parse(s.Workload, b)
		if err != nil {
			t.Fatal(err)
		}
		got := *c
		got.Args, got.Signal, got.Warnings = nil, 0, nil
		if !reflect.DeepEqual(got, s.Helper) {
			t.Errorf("%s: read back %+v, rendered %+v", s.Workload, got, s.Helper)
		}
	}

	openbao := services[0]
	if openbao.Workload != "openbao" || openbao.Host != "spire" || openbao.Listener == nil || services[1].Listener != nil {
		t.Fatalf("services %+v", services)
	}
	b, err := openbao.Listener.Render()
	if err != nil {
		t.Fatal(err)
	}
	const wantListener = `# The files omens svid helper writes; OpenBao reloads them on SIGHUP.
listener "tcp" {
  address            = "0.0.0.0:8200"
  tls_cert_file      = "/run/openbao/svid/svid.pem"
  tls_key_file       = "/run/openbao/svid/svid_key.pem"
  tls_client_ca_file = "/run/openbao/svid/svid_bundle.pem"
  tls_require_and_verify_client_cert = true
}
`
	if string(b) != wantListener {
		t.Errorf("listener:\n%s\nwant:\n%s", b, wantListener)
	}
	// Read as OpenBao reads its configuration (HCL v1), the block names the helper's files.
	type fields = struct {
		Address         string `hcl:"address"`
		TLSCertFile     string `hcl:"tls_cert_file"`
		TLSKeyFile      string `hcl:"tls_key_file"`
		TLSClientCAFile string `hcl:"tls_client_ca_file"`
		Require         bool   `hcl:"tls_require_and_verify_client_cert"`
	}
	var parsed struct {
		Listener map[string]fields `hcl:"listener"`
	}
	if err := hcl.Decode(&parsed, string(b)); err != nil {
		t.Fatal(err)
	}
	cert, key, bundle := openbao.Helper.Paths()
	if got, want := parsed.Listener["tcp"], (fields{"0.0.0.0:8200", cert, key, bundle, true}); got != want {
		t.Errorf("OpenBao reads %+v, want %+v", got, want)
	}
}

// TestRenderQuotes renders values that HCL would misread unquoted.
func TestRenderQuotes(t *testing.T) {
	s := svidhelper.Plan("funlab.casa", "")[0]
	s.Helper.CertDir = `/srv/a "b" ${c}\d`
	b, err := svidhelper.RenderConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := svidhelper.Parse("q", b)
	if err != nil {
		t.Fatal(err)
	}
	if c.CertDir != s.Helper.CertDir || c.AgentAddress != "" {
		t.Fatalf("read back cert_dir %q agent_address %q from\n%s", c.CertDir, c.AgentAddress, b)
	}
	if _, err := (&svidhelper.OpenBaoListener{Address: "x"}).Render(); err == nil {
		t.Fatal("a listener without files rendered")
	}
}
