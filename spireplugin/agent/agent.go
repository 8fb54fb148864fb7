// Package agent is the SPIRE agent side of NodeAttestor "tpm": a thin adapter from the
// plugin SDK to the prover (package prover), which answers with the host's TPM.
package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"omens.dev/omens/metrics"
	"omens.dev/omens/prover"
	"omens.dev/omens/spireplugin"
	"omens.dev/omens/tpmrules"
)

// Config is the plugin_data of the agent's NodeAttestor "tpm". The plan's keys (tpm_path,
// pcr_bank, pcr_selection) work as written.
type Config struct {
	// TPMPath is the TPM device or unix socket; empty auto-detects /dev/tpmrm0, /dev/tpm0.
	TPMPath string `hcl:"tpm_path"`
	// PCRBank and PCRSelection must equal the server's (sha256 and [0, 2, 4, 7] by default).
	PCRBank      string `hcl:"pcr_bank"`
	PCRSelection []int  `hcl:"pcr_selection"`
	// AKHandle is the persistent handle of the attestation key, "0x81010010" by default.
	AKHandle string `hcl:"ak_handle"`
	// EventLogPath is the boot event log sent with each attestation when the file exists
	// (default /sys/kernel/security/tpm0/binary_bios_measurements).
	EventLogPath string `hcl:"event_log_path"`
	// EKType chooses the EK when the TPM has several: "RSA-2048", "ECC-P256" or
	// "ECC-P384". By default the first of these with a certificate in NV.
	EKType string `hcl:"ek_type"`
	// DevID mode (the server's devid_mode = "devid"), with the key names of SPIRE's
	// tpm_devid: DevIDCertPath is the DevID certificate then its issuers (PEM), read at
	// every attestation so that a renewed certificate is used without a restart;
	// DevIDPrivPath is the persistent handle of the DevID key ("0x81010002", as in the
	// plan) or the path of its private blob, DevIDPubPath the path of its public blob
	// (required with a private blob, optional with a handle).
	DevIDCertPath string `hcl:"devid_cert_path"`
	DevIDPrivPath string `hcl:"devid_priv_path"`
	DevIDPubPath  string `hcl:"devid_pub_path"`
}

// Plugin implements the agent NodeAttestor and Config services.
type Plugin struct {
	nodeattestorv1.UnimplementedNodeAttestorServer
	configv1.UnimplementedConfigServer

	mu     sync.RWMutex
	prover *prover.Prover
	log    hclog.Logger
	// tel reports through SPIRE's telemetry (names in package metrics).
	tel spireplugin.Telemetry
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{log: hclog.NewNullLogger()} }

// SetLogger is called by the plugin framework with SPIRE's logger.
func (p *Plugin) SetLogger(l hclog.Logger) { p.log = l; p.tel.SetLogger(l) }

// BrokerHostServices is called by the plugin framework; it brokers SPIRE's metrics host
// service.
func (p *Plugin) BrokerHostServices(b pluginsdk.ServiceBroker) error { return p.tel.Broker(b) }

// tpmError counts a failure of the TPM at stage, and the attestation it ended.
func (p *Plugin) tpmError(stage string) {
	p.tel.Count(metrics.TPMErrors, spireplugin.Label{Name: metrics.LabelStage, Value: stage})
	p.tel.Count(metrics.AgentAttestation, spireplugin.Label{Name: metrics.LabelResult, Value: metrics.ResultError})
}

func buildConfig(hclText string) (*prover.Config, []string) {
	c := new(Config)
	notes, err := spireplugin.DecodeHCL(hclText, c)
	if err != nil {
		return nil, []string{err.Error()}
	}
	pc := &prover.Config{TPMPath: c.TPMPath, Bank: c.PCRBank, PCRs: c.PCRSelection, EventLogPath: c.EventLogPath, EKType: c.EKType}
	if c.AKHandle != "" {
		h, err := tpmrules.ParsePersistentHandle(c.AKHandle)
		if err != nil {
			notes = append(notes, "ak_handle "+err.Error())
		}
		pc.AKHandle = h
	}
	devidNotes := c.devID(pc)
	notes = append(notes, devidNotes...)
	if len(devidNotes) > 0 {
		pc.DevID = nil // named above; prover.New would say it again
	}
	if _, err := prover.New(*pc); err != nil {
		notes = append(notes, err.Error())
	}
	return pc, notes
}

// devID sets pc.DevID from the devid_* keys and returns what is wrong with them.
func (c *Config) devID(pc *prover.Config) []string {
	if c.DevIDCertPath == "" && c.DevIDPrivPath == "" && c.DevIDPubPath == "" {
		return nil
	}
	var notes []string
	d := &prover.DevIDConfig{CertPath: c.DevIDCertPath, PubPath: c.DevIDPubPath}
	files := []struct{ key, path string }{{"devid_cert_path", c.DevIDCertPath}, {"devid_pub_path", c.DevIDPubPath}}
	if c.DevIDCertPath == "" {
		notes = append(notes, "devid_cert_path is required in DevID mode (set with devid_priv_path or devid_pub_path)")
	}
	switch priv := c.DevIDPrivPath; {
	case priv == "":
		notes = append(notes, `devid_priv_path is required in DevID mode: a persistent handle such as "0x81010002", or the path of the private blob`)
	case strings.HasPrefix(strings.ToLower(priv), "0x"):
		h, err := tpmrules.ParsePersistentHandle(priv)
		if err != nil {
			notes = append(notes, "devid_priv_path "+err.Error())
		}
		d.Handle = h
	default:
		d.PrivPath = priv
		files = append(files, struct{ key, path string }{"devid_priv_path", priv})
		if c.DevIDPubPath == "" {
			notes = append(notes, "devid_pub_path is required when devid_priv_path is the path of the private blob")
		}
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			notes = append(notes, fmt.Sprintf("%s: %v", f.key, err))
		}
	}
	pc.DevID = d
	return notes
}

// Configure applies plugin_data.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	pc, notes := buildConfig(req.GetHclConfiguration())
	if len(notes) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "tpm: bad configuration: %s", strings.Join(notes, "; "))
	}
	pr, err := prover.New(*pc)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "tpm: %v", err)
	}
	p.mu.Lock()
	p.prover = pr
	p.mu.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

// Validate reports every problem of plugin_data without applying it.
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	_, notes := buildConfig(req.GetHclConfiguration())
	return &configv1.ValidateResponse{Valid: len(notes) == 0, Notes: notes}, nil
}

// AidAttestation proves this host's TPM to the server.
func (p *Plugin) AidAttestation(stream nodeattestorv1.NodeAttestor_AidAttestationServer) error {
	p.mu.RLock()
	pr := p.prover
	p.mu.RUnlock()
	if pr == nil {
		return status.Error(codes.FailedPrecondition, "tpm: not configured")
	}
	x, hello, err := pr.Begin()
	if err != nil {
		p.log.Error("TPM attestation could not start", "error", err)
		p.tpmError(metrics.StageBegin)
		return status.Errorf(codes.Unavailable, "tpm: %v", err)
	}
	defer x.Close()
	if err := stream.Send(&nodeattestorv1.PayloadOrChallengeResponse{Data: &nodeattestorv1.PayloadOrChallengeResponse_Payload{Payload: hello}}); err != nil {
		return err
	}
	ch, err := stream.Recv()
	if err != nil {
		return err
	}
	ev, err := x.Answer(ch.GetChallenge())
	if err != nil {
		p.log.Error("TPM could not answer the challenge", "error", err)
		p.tpmError(metrics.StageAnswer)
		return status.Errorf(codes.Internal, "tpm: %v", err)
	}
	if err := stream.Send(&nodeattestorv1.PayloadOrChallengeResponse{Data: &nodeattestorv1.PayloadOrChallengeResponse_ChallengeResponse{ChallengeResponse: ev}}); err != nil {
		return err
	}
	p.tel.Count(metrics.AgentAttestation, spireplugin.Label{Name: metrics.LabelResult, Value: metrics.ResultAnswered})
	if na := x.DevIDNotAfter(); !na.IsZero() {
		p.tel.Gauge(metrics.AgentDevIDCertExpiry, time.Until(na).Seconds())
	}
	return nil
}
