package e2e_test

import (
	"slices"
	"testing"

	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// TestTPMAttestationSwtpm attests agents on swtpm, a second TPM implementation (libtpms),
// whose EK certificates (RSA-2048 and ECC P-384) come from swtpm_localca's own root and
// intermediate: one agent per EK.
func TestTPMAttestationSwtpm(t *testing.T) {
	requireEngines(t)
	sw := testtpm.StartSwtpm(t)
	// ek_type = "any": both of swtpm's EKs, each its own agent ID.
	srv := spiretest.StartServer(t, spiretest.ServerConfig{NodeAttestors: tpmServerAttestors(t, sw.CABundle, "", spireconf.Setting{Key: "ek_type", Value: "any"})})

	tt, err := tpm.Open(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	eks, err := tpm.EndorsementKeys(tt)
	tt.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, ek := range eks {
		t.Run(ek.Kind.Name, func(t *testing.T) {
			hash, _ := verify.EKHash(ek.PublicKey)
			agent := spiretest.StartAgent(t, srv, spiretest.AgentConfig{
				Name:         "swtpm-" + ek.Kind.Name,
				NodeAttestor: tpmAgentAttestor(t, sw.Socket, spireconf.Setting{Key: "ek_type", Value: ek.Kind.Name}),
			})
			info := srv.Agent(t, "spiffe://funlab.casa/spire/agent/tpm/"+hash)
			for _, want := range []string{"tpm:pub_hash:" + hash, "tpm:ek_cert:issuer:cn:swtpm-localca"} {
				if !slices.Contains(info.Selectors, want) {
					t.Errorf("selector %s missing from %v", want, info.Selectors)
				}
			}
			agent.Stop(t)
		})
	}
	if len(eks) != 2 {
		t.Errorf("swtpm has %d EK certificates, want RSA-2048 and ECC-P384", len(eks))
	}
}
