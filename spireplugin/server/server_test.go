package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	agentna "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	servna "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/status"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/spireplugin/agent"
	"omens.dev/omens/spireplugin/server"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/verify"
)

// simHost serves a simulated TPM with an EK certificate on a socket, in this process.
type simHost struct {
	sim    *tpmsim.Sim
	socket string
	dir    string
}

func startSimHost(t *testing.T) *simHost {
	t.Helper()
	sim, sock := testtpm.ServeSim(t, tpmsim.Options{})
	return &simHost{sim: sim, socket: sock, dir: filepath.Dir(sock)}
}

func (h *simHost) ekHash(t *testing.T) string {
	eks, err := tpm.EndorsementKeys(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := verify.EKHash(eks[0].PublicKey)
	return s
}

type plugins struct {
	server       servna.NodeAttestorPluginClient
	serverConfig configv1.ConfigServiceClient
	agent        agentna.NodeAttestorPluginClient
	agentConfig  configv1.ConfigServiceClient
	// serverPlugin is the server plugin itself (for its clock); log what it logged.
	serverPlugin *server.Plugin
	log          *syncBuffer
	// relay, when set, changes the agent's first message on its way to the server: a
	// lying agent.
	relay func(payload []byte) []byte
}

// syncBuffer is a bytes.Buffer safe for the plugin's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func loadPlugins(t *testing.T) *plugins {
	p := &plugins{log: new(syncBuffer)}
	sp := server.New()
	p.serverPlugin = sp
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   servna.NodeAttestorPluginServer(sp),
		PluginClient:   &p.server,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(sp)},
		ServiceClients: []pluginsdk.ServiceClient{&p.serverConfig},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: p.log, DisableTime: true, Level: hclog.Info}),
	})
	ap := agent.New()
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   agentna.NodeAttestorPluginServer(ap),
		PluginClient:   &p.agent,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(ap)},
		ServiceClients: []pluginsdk.ServiceClient{&p.agentConfig},
	})
	return p
}

func (p *plugins) configure(t *testing.T, serverHCL, agentHCL string) {
	t.Helper()
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	if _, err := p.serverConfig.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: serverHCL}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.agentConfig.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: agentHCL}); err != nil {
		t.Fatal(err)
	}
}

// attest relays one attestation between the agent and server plugins, as SPIRE does.
func (p *plugins) attest(t *testing.T) (*servna.AgentAttributes, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	as, err := p.agent.AidAttestation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := p.server.Attest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := as.Recv()
	if err != nil {
		return nil, err
	}
	payload := m.GetPayload()
	if p.relay != nil {
		payload = p.relay(payload)
	}
	if err := ss.Send(&servna.AttestRequest{Request: &servna.AttestRequest_Payload{Payload: payload}}); err != nil {
		t.Fatal(err)
	}
	r, err := ss.Recv()
	if err != nil {
		return nil, err
	}
	if err := as.Send(&agentna.Challenge{Challenge: r.GetChallenge()}); err != nil {
		t.Fatal(err)
	}
	m, err = as.Recv()
	if err != nil {
		return nil, err
	}
	if err := ss.Send(&servna.AttestRequest{Request: &servna.AttestRequest_ChallengeResponse{ChallengeResponse: m.GetChallengeResponse()}}); err != nil {
		t.Fatal(err)
	}
	r, err = ss.Recv()
	if err != nil {
		return nil, err
	}
	return r.GetAgentAttributes(), nil
}

func TestAttestThroughPlugins(t *testing.T) {
	h := startSimHost(t)
	p := loadPlugins(t)
	p.configure(t,
		`devid_mode = "ek_cert"
		 ca_path = "`+h.sim.BundlePath()+`"
		 allow_insecure = false`,
		`tpm_path = "`+h.socket+`"
		 pcr_bank = "sha256"
		 pcr_selection = [0, 2, 4, 7]`)
	attrs, err := p.attest(t)
	if err != nil {
		t.Fatal(err)
	}
	hash := h.ekHash(t)
	if want := "spiffe://funlab.casa/spire/agent/tpm/" + hash; attrs.SpiffeId != want {
		t.Errorf("agent ID %s, want %s", attrs.SpiffeId, want)
	}
	if !attrs.CanReattest {
		t.Error("CanReattest is false: boot state would be checked only once")
	}
	sel := attrs.SelectorValues
	for _, want := range []string{
		"pub_hash:" + hash,
		"ek_cert:issuer:cn:omens Simulated TPM Manufacturer EK Intermediate CA",
		"manufacturer:MSFT",
		"model:omens-sim",
	} {
		if !slices.Contains(sel, want) {
			t.Errorf("selector %q missing from %v", want, sel)
		}
	}
	var pcrs []string
	for _, s := range sel {
		if strings.HasPrefix(s, "pcr:sha256:") {
			pcrs = append(pcrs, strings.Split(s, ":")[2])
		}
	}
	if !slices.Equal(pcrs, []string{"0", "2", "4", "7"}) {
		t.Errorf("PCR selectors for %v, want 0 2 4 7 (%v)", pcrs, sel)
	}
}

func TestUnknownCARejected(t *testing.T) {
	h := startSimHost(t)
	other := startOtherCA(t)
	p := loadPlugins(t)
	p.configure(t, `ca_path = "`+other+`"`, `tpm_path = "`+h.socket+`"`)
	_, err := p.attest(t)
	st, _ := status.FromError(err)
	if st.Code().String() != "PermissionDenied" || !strings.Contains(st.Message(), "tpm: verify: ek_certificate: verify: certificate not trusted") {
		t.Errorf("attestation with an EK from an unknown CA: %v", err)
	}
}

func TestValidateNamesEveryWrongKey(t *testing.T) {
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `
		devid_mode = "tpm2"
		ca_pth = "/x"
		pcr_bank = "md5"
		pcr_selection = [7, 0]
		expired_ek_cert = "maybe"
		ek_denylist_path = "/nonexistent/deny"
		ek_type = "RSA-1024"
	`})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`unknown key "ca_pth" (line 3)`,
		`devid_mode "tpm2" is not supported (want "ek_cert" or "devid")`,
		`ca_path (or endorsement_ca_path) is required unless ek_allowlist_path, hash_path or allow_insecure is set`,
		`ek_denylist_path: stat /nonexistent/deny: no such file or directory`,
		`pcr_bank: unknown PCR bank "md5" (want sha1, sha256 or sha384)`,
		`pcr_selection: [7 0]: list distinct PCRs in ascending order`,
		`expired_ek_cert "maybe": want "reject" or "warn"`,
		`ek_type "RSA-1024": want "RSA-2048", "ECC-P256", "ECC-P384" or "any"`,
	}
	if resp.Valid || !slices.Equal(resp.Notes, want) {
		t.Errorf("Validate = valid %v notes\n%s\nwant\n%s", resp.Valid, strings.Join(resp.Notes, "\n"), strings.Join(want, "\n"))
	}
	aresp, err := p.agentConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: `
		tpm_pth = "/dev/tpmrm0"
		ak_handle = "0x01000000"
		pcr_bank = "sha512"
	`})
	if err != nil {
		t.Fatal(err)
	}
	wantAgent := []string{
		`unknown key "tpm_pth" (line 2)`,
		`ak_handle "0x01000000" is not a persistent handle (0x81000000 to 0x81FFFFFF)`,
		`tpm: unknown PCR bank "sha512" (want sha1, sha256 or sha384)`,
	}
	if aresp.Valid || !slices.Equal(aresp.Notes, wantAgent) {
		t.Errorf("agent Validate notes\n%s\nwant\n%s", strings.Join(aresp.Notes, "\n"), strings.Join(wantAgent, "\n"))
	}
}

// TestListsAndBundleReloadWithoutRestart: the CA bundle and the deny list are files the
// operator edits; the next attestation uses the new content, with no Configure.
func TestListsAndBundleReloadWithoutRestart(t *testing.T) {
	h := startSimHost(t)
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	other, err := os.ReadFile(startOtherCA(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, other, 0o644); err != nil {
		t.Fatal(err)
	}
	denyPath := filepath.Join(dir, "deny.txt")
	if err := os.WriteFile(denyPath, []byte("# no TPM is banned yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	p.configure(t, `ca_path = "`+caPath+`"
		ek_denylist_path = "`+denyPath+`"`, `tpm_path = "`+h.socket+`"`)

	if _, err := p.attest(t); err == nil || !strings.Contains(err.Error(), "ek_certificate: verify: certificate not trusted") {
		t.Fatalf("with another manufacturer's CA: %v", err)
	}
	right, err := os.ReadFile(h.sim.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, right, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.attest(t); err != nil {
		t.Fatalf("after the CA bundle was corrected: %v", err)
	}
	hash := h.ekHash(t)
	if err := os.WriteFile(denyPath, []byte(hash+" # decommissioned\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = p.attest(t)
	want := "rpc error: code = PermissionDenied desc = tpm: verify: ek_denylist: EK " + hash + " is deny-listed"
	if err == nil || err.Error() != want {
		t.Fatalf("after deny-listing: %v\nwant %s", err, want)
	}
}

// TestPolicyRejectionNamesPCR: with a PCR policy that does not allow the host's boot
// state, the attestation is refused and the error names the PCR and both values.
func TestPolicyRejectionNamesPCR(t *testing.T) {
	h := startSimHost(t)
	hash := h.ekHash(t)
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.hcl")
	zero := strings.Repeat("00", 32)
	if err := os.WriteFile(policyPath, []byte(`
group "tower" {
  set "firmware-0.9" {
    pcrs = { "0" = "`+zero+`" }
  }
}
host "`+hash+`" {
  name  = "auth"
  group = "tower"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	p.configure(t, `ca_path = "`+h.sim.BundlePath()+`"
		pcr_policy_path = "`+policyPath+`"`, `tpm_path = "`+h.socket+`"`)
	_, err := p.attest(t)
	bank, _ := tpm.ParseBank("sha256")
	pcrs, rerr := tpm.ReadPCRs(h.sim, bank, []int{0})
	if rerr != nil {
		t.Fatal(rerr)
	}
	want := fmt.Sprintf("rpc error: code = PermissionDenied desc = tpm: policy: host %s (auth) PCR 0 is %x, allowed set tower/firmware-0.9 wants %s", hash, pcrs[0], zero)
	if err == nil || err.Error() != want {
		t.Fatalf("policy rejection:\n%v\nwant\n%s", err, want)
	}
}
