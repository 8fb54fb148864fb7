package server_test

import (
	"context"
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
// plugin SDK calls it (without the gRPC transport), with software TPMs (bench/softtpm) on the agent side:
// "first" is a TPM the plugin has not seen (its EK certificate verified once; the
// manufacturer intermediate is already known), "reattest" one it has. Each runs for a
// manufacturer CA of each key type the vendors use. The agent side's work (activation and
// quote) is done outside the timer, so the time is the plugin's and gRPC's; `omens bench
// attest` measures the same through a real SPIRE server.
func BenchmarkPluginAttest(b *testing.B) {
	for _, alg := range []mfgca.KeyAlgorithm{mfgca.RSA2048, mfgca.P384} {
		ca, err := mfgca.NewEphemeral("omens plugin bench", mfgca.WithKeyAlgorithm(alg))
		if err != nil {
			b.Fatal(err)
		}
		tpms := make([]*softtpm.TPM, 65)
		for i := range tpms {
			if tpms[i], err = softtpm.New(ca); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("ca=%s/first", alg), func(b *testing.B) {
			runPluginAttest(b, ca, tpms, true)
		})
		b.Run(fmt.Sprintf("ca=%s/reattest", alg), func(b *testing.B) {
			runPluginAttest(b, ca, tpms, false)
		})
	}
}

func runPluginAttest(b *testing.B, ca *mfgca.CA, tpms []*softtpm.TPM, fresh bool) {
	dir := b.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.BundlePEM(), 0o644); err != nil {
		b.Fatal(err)
	}
	sp := server.New()
	sp.SetLogger(hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Info, JSONFormat: true}))
	hcl := fmt.Sprintf("ca_path = %q\npcr_bank = %q\npcr_selection = %s\n", caPath, tpmrules.DefaultPCRBank, hclInts(tpmrules.DefaultPCRs()))
	configure := func() {
		if _, err := sp.Configure(context.Background(), &configv1.ConfigureRequest{
			CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}, HclConfiguration: hcl,
		}); err != nil {
			b.Fatal(err)
		}
	}
	configure()
	hellos := make([][]byte, len(tpms))
	for i, t := range tpms {
		var err error
		if hellos[i], err = t.Hello(); err != nil {
			b.Fatal(err)
		}
	}
	// The last TPM is the fleet's first: after it, the intermediate is known.
	warm, n := len(tpms)-1, len(tpms)-1
	if !fresh {
		for i := range tpms {
			attestOnce(b, sp, tpms[i], hellos[i], false)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % n
		if fresh && k == 0 {
			// A new configuration forgets the EK certificates seen; the fleet's first
			// TPM makes the intermediate known again. Neither is timed.
			b.StopTimer()
			configure()
			attestOnce(b, sp, tpms[warm], hellos[warm], false)
			b.StartTimer()
		}
		attestOnce(b, sp, tpms[k], hellos[k], true)
	}
}

// attestOnce runs one attestation through Attest, as the plugin SDK calls it; the agent's
// answer is computed outside the timer.
func attestOnce(b *testing.B, sp *server.Plugin, t *softtpm.TPM, hello []byte, timed bool) {
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
