package agent_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/protocol"
	"omens.dev/omens/spireplugin/agent"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/verify"
)

// loadAgent serves the agent plugin in this process through the plugin SDK, as SPIRE's
// agent would load it.
func loadAgent(t *testing.T) (nodeattestorv1.NodeAttestorPluginClient, configv1.ConfigServiceClient) {
	t.Helper()
	var na nodeattestorv1.NodeAttestorPluginClient
	var cfg configv1.ConfigServiceClient
	p := agent.New()
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   nodeattestorv1.NodeAttestorPluginServer(p),
		PluginClient:   &na,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(p)},
		ServiceClients: []pluginsdk.ServiceClient{&cfg},
	})
	return na, cfg
}

var core = &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}

func TestValidateNamesEveryWrongKey(t *testing.T) {
	_, cfg := loadAgent(t)
	missing := filepath.Join(t.TempDir(), "devid.crt")
	resp, err := cfg.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `
		tpm_pth = "/dev/tpmrm0"
		ak_handle = "0x80000001"
		devid_cert_path = "` + missing + `"
		devid_priv_path = "0x8101"
	`})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`unknown key "tpm_pth" (line 2)`,
		`ak_handle "0x80000001" is not a persistent handle (0x81000000 to 0x81FFFFFF)`,
		`devid_priv_path "0x8101" is not a persistent handle (0x81000000 to 0x81FFFFFF)`,
		`devid_cert_path: stat ` + missing + `: no such file or directory`,
	}
	if resp.Valid || !slices.Equal(resp.Notes, want) {
		t.Errorf("Validate = valid %v notes\n%s\nwant\n%s", resp.Valid, strings.Join(resp.Notes, "\n"), strings.Join(want, "\n"))
	}
}

func TestConfigureRefuses(t *testing.T) {
	for _, c := range []struct{ name, hcl, want string }{
		{"not HCL", `tpm_path = "/dev/tpmrm0`, "tpm: bad configuration: plugin_data is not valid HCL: At 1:24: literal not terminated"},
		{"PCR selection", `pcr_selection = [7, 0]`, "tpm: bad configuration: prover: PCR selection [7 0]: want ascending indices from 0 to 23"},
		{"PCR bank", `pcr_bank = "md5"`, `tpm: bad configuration: tpm: unknown PCR bank "md5" (want sha1, sha256 or sha384)`},
		{"EK type", `ek_type = "RSA-1024"`, `tpm: bad configuration: prover: EK type "RSA-1024": want RSA-2048, ECC-P256 or ECC-P384`},
		{"DevID key", `devid_pub_path = "/x"`, "tpm: bad configuration: devid_cert_path is required in DevID mode (set with devid_priv_path or devid_pub_path); " +
			`devid_priv_path is required in DevID mode: a persistent handle such as "0x81010002", or the path of the private blob; devid_pub_path: stat /x: no such file or directory`},
		{"DevID blob", `devid_cert_path = "/x"
		               devid_priv_path = "/y"`, "tpm: bad configuration: devid_pub_path is required when devid_priv_path is the path of the private blob; " +
			"devid_cert_path: stat /x: no such file or directory; devid_priv_path: stat /y: no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, cfg := loadAgent(t)
			_, err := cfg.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: c.hcl})
			st, _ := status.FromError(err)
			if st.Code() != codes.InvalidArgument || st.Message() != c.want {
				t.Errorf("Configure: %v\nwant InvalidArgument %s", err, c.want)
			}
		})
	}
}

func TestAttestationNeedsConfiguration(t *testing.T) {
	na, _ := loadAgent(t)
	stream, err := na.AidAttestation(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || st.Message() != "tpm: not configured" {
		t.Errorf("AidAttestation before Configure: %v, want FailedPrecondition tpm: not configured", err)
	}
}

func TestAttestationUnavailableTPM(t *testing.T) {
	na, cfg := loadAgent(t)
	sock := filepath.Join(t.TempDir(), "no-tpm.sock")
	if _, err := cfg.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: `tpm_path = "` + sock + `"`}); err != nil {
		t.Fatal(err)
	}
	stream, err := na.AidAttestation(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), "tpm: ") || !strings.Contains(st.Message(), sock) {
		t.Errorf("AidAttestation without a TPM: %v, want Unavailable naming %s", err, sock)
	}
}

// TestAttestation runs one exchange of the plugin, on the in-process simulator served on a
// socket, with the verifier as the server plugin runs it.
func TestAttestation(t *testing.T) {
	sim, sock := testtpm.ServeSim(t, tpmsim.Options{})
	bundle, _, err := verify.LoadBundle(sim.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	v := &verify.Verifier{EK: verify.EKPolicy{Bundle: bundle}, PCRBank: tpm2.TPMAlgSHA256, PCRs: []int{0, 2, 4, 7}}

	na, cfg := loadAgent(t)
	if _, err := cfg.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: `
		tpm_path = "` + sock + `"
		pcr_bank = "sha256"
		pcr_selection = [0, 2, 4, 7]
		event_log_path = "` + filepath.Join(t.TempDir(), "none") + `"`}); err != nil {
		t.Fatal(err)
	}
	stream, err := na.AidAttestation(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hello, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	sess, ch, err := v.Begin(hello.GetPayload())
	if err != nil {
		t.Fatal(err)
	}
	chBytes, err := protocol.Encode(ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&nodeattestorv1.Challenge{Challenge: chBytes}); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.Finish(ev.GetChallengeResponse())
	if err != nil {
		t.Fatalf("the verifier refused the plugin's evidence: %v", err)
	}
	if res.CertStatus != "valid" || res.PCRBank != "sha256" || len(res.PCRs) != 4 || res.EventLog != nil {
		t.Errorf("result: cert %s, bank %s, PCRs %v, event log %d bytes", res.CertStatus, res.PCRBank, res.PCRs, len(res.EventLog))
	}
}
