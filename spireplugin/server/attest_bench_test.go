package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	servna "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc"

	"omens.dev/omens/bench/softtpm"
	"omens.dev/omens/spireplugin/server"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
)

// BenchmarkPluginAttest is one attestation through the server plugin's Attest, as the
// plugin SDK calls it (without the gRPC transport), with software TPMs (bench/softtpm) on
// the agent side, for a manufacturer CA of each key type vendors use. "first" is a TPM the
// plugin has not seen: a new AK and a new EK certificate at each iteration (made outside
// the timer), so nothing of its Hello is remembered but the manufacturer intermediate, as
// after the fleet's first TPM. "reattest" is one of TPMs it has accepted. The agent's
// answer (activation and quote) is computed outside the timer, so the time is the
// plugin's; `omens bench attest` measures the same through a real SPIRE server.
func BenchmarkPluginAttest(b *testing.B) {
	for _, alg := range []mfgca.KeyAlgorithm{mfgca.RSA2048, mfgca.P384} {
		ca, err := mfgca.NewEphemeral("omens plugin bench", mfgca.WithKeyAlgorithm(alg))
		if err != nil {
			b.Fatal(err)
		}
		tpms := make([]*softtpm.TPM, 16)
		for i := range tpms {
			if tpms[i], err = softtpm.New(ca); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("ca=%s/first", alg), func(b *testing.B) {
			sp := configuredPlugin(b, ca)
			attestOnce(b, sp, tpms[0], false) // the intermediate known
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				t, err := softtpm.FromKeys(ca, tpms[i%len(tpms)].EK, ak)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				attestOnce(b, sp, t, true)
			}
		})
		b.Run(fmt.Sprintf("ca=%s/reattest", alg), func(b *testing.B) {
			sp := configuredPlugin(b, ca)
			for _, t := range tpms {
				attestOnce(b, sp, t, false)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				attestOnce(b, sp, tpms[i%len(tpms)], true)
			}
		})
	}
}

// configuredPlugin is the server plugin configured with ca's bundle and the default PCR
// selection, logging to nowhere.
func configuredPlugin(b *testing.B, ca *mfgca.CA) *server.Plugin {
	caPath := filepath.Join(b.TempDir(), "ca.pem")
	if err := os.WriteFile(caPath, ca.BundlePEM(), 0o644); err != nil {
		b.Fatal(err)
	}
	sp := server.New()
	sp.SetLogger(hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Info, JSONFormat: true}))
	hcl := fmt.Sprintf("ca_path = %q\npcr_bank = %q\npcr_selection = %s\n", caPath, tpmrules.DefaultPCRBank, hclInts(tpmrules.DefaultPCRs()))
	if _, err := sp.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}, HclConfiguration: hcl,
	}); err != nil {
		b.Fatal(err)
	}
	return sp
}

// attestOnce runs one attestation through Attest, as the plugin SDK calls it; the agent's
// answer is computed outside the timer.
func attestOnce(b *testing.B, sp *server.Plugin, t *softtpm.TPM, timed bool) {
	if timed {
		b.StopTimer()
	}
	hello, err := t.Hello()
	if err != nil {
		b.Fatal(err)
	}
	if timed {
		b.StartTimer()
	}
	s := &benchStream{b: b, tpm: t, timed: timed, next: &servna.AttestRequest{Request: &servna.AttestRequest_Payload{Payload: hello}}}
	if err := sp.Attest(s); err != nil {
		b.Fatal(err)
	}
	if s.attrs == nil {
		b.Fatal("no agent attributes")
	}
}

// benchStream is the server side of one Attest stream, with the agent (a software TPM)
// answering in Send.
type benchStream struct {
	grpc.ServerStream
	b     *testing.B
	tpm   *softtpm.TPM
	timed bool
	next  *servna.AttestRequest
	attrs *servna.AgentAttributes
}

func (s *benchStream) Context() context.Context { return context.Background() }

func (s *benchStream) Recv() (*servna.AttestRequest, error) {
	r := s.next
	s.next = nil
	if r == nil {
		return nil, io.EOF
	}
	return r, nil
}

func (s *benchStream) Send(r *servna.AttestResponse) error {
	if a := r.GetAgentAttributes(); a != nil {
		s.attrs = a
		return nil
	}
	if s.timed {
		s.b.StopTimer()
		defer s.b.StartTimer()
	}
	ev, err := s.tpm.Evidence(r.GetChallenge())
	if err != nil {
		return err
	}
	s.next = &servna.AttestRequest{Request: &servna.AttestRequest_ChallengeResponse{ChallengeResponse: ev}}
	return nil
}

func hclInts(v []int) string {
	s := "["
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(x)
	}
	return s + "]"
}
