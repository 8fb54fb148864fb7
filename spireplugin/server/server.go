// Package server is the SPIRE server side of NodeAttestor "tpm": a thin adapter from the
// plugin SDK to the verifier (package verify) and the boot-state policy (package policy).
//
// One attestation: the agent's Hello, the server's Challenge, the agent's Evidence (package
// protocol); then the PCR policy. In DevID mode the verifier also checks the DevID
// certificate (devid_ca_path, its CRL) and the AK's Certify of the DevID key; it accepts
// an agent in EK mode only as an EK-mode exception (ek_mode_hosts_path: a host rolled
// back from DevID mode while the others stay on it), with a verified EK certificate and
// the selector tpm:mode:ek_cert. The agent ID
// is spiffe://<trust domain>/spire/agent/tpm/<EK hash> in both modes, stable for the life
// of the chip, so a renewed DevID certificate keeps it. Every decision is one log line
// through SPIRE's logger, with agent_id, ek_hash, mode, result, check and pcr_digest (and
// devid_serial in DevID mode, and with a PCR policy the rule that decided: rule).
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"omens.dev/omens/internal/pgstate"
	"omens.dev/omens/policy"
	"omens.dev/omens/protocol"
	"omens.dev/omens/spireplugin"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// Plugin implements the server NodeAttestor and Config services.
type Plugin struct {
	nodeattestorv1.UnimplementedNodeAttestorServer
	configv1.UnimplementedConfigServer

	mu  sync.RWMutex
	rt  *runtime
	log hclog.Logger
	// tel reports through SPIRE's telemetry; expiry remembers the certificates of the
	// agents accepted lately, for the expiry gauges; stopReport ends the reporting loop
	// of the current configuration; expiryDue is set while an expiry report is scheduled.
	tel        spireplugin.Telemetry
	expiry     expiryTracker
	expiryDue  atomic.Bool
	stopReport context.CancelFunc

	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{log: hclog.NewNullLogger()} }

// SetLogger is called by the plugin framework with SPIRE's logger.
func (p *Plugin) SetLogger(l hclog.Logger) { p.log = l; p.tel.SetLogger(l) }

// BrokerHostServices is called by the plugin framework; it brokers SPIRE's metrics host
// service (telemetry.go).
func (p *Plugin) BrokerHostServices(b pluginsdk.ServiceBroker) error { return p.tel.Broker(b) }

// runtime is the configured state.
type runtime struct {
	cfg         *Config
	trustDomain string
	bankAlg     uint16

	mu          sync.Mutex
	bundle      *watched[*verify.Bundle]
	allow       *watched[map[string]bool]
	deny        *watched[map[string]bool]
	hashDir     *watched[map[string]bool]
	ekModeHosts *watched[map[string]bool]
	devidBundle *watched[*verify.Bundle]
	crlFile     *watched[*x509.RevocationList]
	policy      *policy.Store
	// crlURL fetches the DevID CRL from devid_crl_url; it has its own lock.
	crlURL *crlFetcher
	log    hclog.Logger
}

// Configure applies plugin_data.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	rt, notes, err := newRuntime(req.GetHclConfiguration(), req.GetCoreConfiguration().GetTrustDomain(), true)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(notes) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "tpm: bad configuration: %s", strings.Join(notes, "; "))
	}
	rt.log = p.log
	if rt.cfg.devIDModeInferred {
		p.log.Info("devid_mode is not set and devid_ca_path is: DevID mode", "mode", rt.cfg.DevIDMode, "devid_ca_path", rt.cfg.DevIDCAPath)
	}
	if rt.crlURL != nil {
		rt.crlURL.now = p.now
	}
	if rt.cfg.DevIDMode == protocol.ModeDevID && rt.crlFile == nil && rt.crlURL == nil {
		p.log.Warn("DevID mode without devid_crl_path or devid_crl_url: revoked DevID certificates are accepted until they expire", "mode", rt.cfg.DevIDMode)
	}
	if rt.cfg.PCRStateDatabase != "" {
		p.log.Info("boot-state policy state in PostgreSQL", "database", pgstate.DescribeString(rt.cfg.PCRStateDatabase))
	}
	// Before the first attestation: the counters at zero (telemetry.go).
	p.zeroCounters(rt)
	ctx, stop := context.WithCancel(context.Background())
	p.mu.Lock()
	old := p.rt
	p.rt = rt
	if p.stopReport != nil {
		p.stopReport()
	}
	p.stopReport = stop
	p.mu.Unlock()
	go p.reportLoop(ctx, rt)
	if old != nil && old.policy != nil {
		// Attestations that began under the old configuration may still use its
		// database connections for a moment.
		time.AfterFunc(time.Minute, old.policy.Close)
	}
	return &configv1.ConfigureResponse{}, nil
}

// Validate reports every problem of plugin_data without applying it.
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	_, notes, err := newRuntime(req.GetHclConfiguration(), req.GetCoreConfiguration().GetTrustDomain(), false)
	if err != nil {
		notes = append(notes, err.Error())
	}
	return &configv1.ValidateResponse{Valid: len(notes) == 0, Notes: notes}, nil
}

// newRuntime builds the configured state; connect opens the state database
// (pcr_state_database), which Validate does not.
func newRuntime(hclText, trustDomain string, connect bool) (*runtime, []string, error) {
	cfg, notes := buildConfig(hclText)
	if trustDomain == "" {
		notes = append(notes, "the core configuration names no trust domain")
	}
	if len(notes) > 0 {
		return nil, notes, nil
	}
	bank, _ := tpmrules.ParseBank(cfg.PCRBank)
	rt := &runtime{cfg: cfg, trustDomain: trustDomain, bankAlg: uint16(bank.Alg)}
	if cfg.CAPath != "" {
		rt.bundle = &watched[*verify.Bundle]{path: cfg.CAPath, load: loadBundle}
	}
	if cfg.EKAllowlistPath != "" {
		rt.allow = &watched[map[string]bool]{path: cfg.EKAllowlistPath, load: loadHashList}
	}
	if cfg.EKDenylistPath != "" {
		rt.deny = &watched[map[string]bool]{path: cfg.EKDenylistPath, load: loadHashList}
	}
	if cfg.EKModeHostsPath != "" {
		rt.ekModeHosts = &watched[map[string]bool]{path: cfg.EKModeHostsPath, load: loadHashList}
	}
	if cfg.HashPath != "" {
		rt.hashDir = &watched[map[string]bool]{path: cfg.HashPath, load: loadHashDir}
	}
	if cfg.DevIDCAPath != "" {
		rt.devidBundle = &watched[*verify.Bundle]{path: cfg.DevIDCAPath, load: loadBundle}
	}
	if cfg.DevIDCRLPath != "" {
		rt.crlFile = &watched[*x509.RevocationList]{path: cfg.DevIDCRLPath, load: loadCRL}
		if _, err := rt.crlFile.get(); err != nil {
			return nil, []string{"devid_crl_path: " + err.Error()}, nil
		}
	}
	if cfg.DevIDCRLURL != "" {
		rt.crlURL = &crlFetcher{url: cfg.DevIDCRLURL, refresh: cfg.crlRefresh, now: time.Now}
	}
	// Load once now, so a bad file is a configuration error rather than a surprise at the
	// first attestation.
	if _, err := rt.verifier(time.Now); err != nil {
		return nil, []string{err.Error()}, nil
	}
	if cfg.PCRPolicyPath != "" {
		var pol *policy.Policy
		var err error
		switch {
		case cfg.PCRStateDatabase == "":
			rt.policy, err = policy.Open(cfg.PCRPolicyPath, cfg.PCRStatePath)
		case connect:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			rt.policy, err = policy.OpenDB(ctx, cfg.PCRPolicyPath, cfg.PCRStateDatabase)
			cancel()
		default:
			// Validate checks the policy file; the database is reached at Configure.
			pol, err = policy.ReadPolicy(cfg.PCRPolicyPath)
		}
		if err != nil {
			return nil, []string{"pcr_policy_path: " + err.Error()}, nil
		}
		if rt.policy != nil {
			if pol, err = rt.policy.Policy(); err != nil {
				rt.policy.Close()
				return nil, []string{"pcr_policy_path: " + err.Error()}, nil
			}
		}
		if notes := checkPolicy(pol, cfg); len(notes) > 0 {
			if rt.policy != nil {
				rt.policy.Close()
			}
			return nil, notes, nil
		}
		if !connect && rt.policy != nil {
			rt.policy.Close()
		}
	}
	return rt, nil, nil
}

// verifier builds a Verifier from the current content of the watched files.
func (rt *runtime) verifier(now func() time.Time) (*verify.Verifier, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	v := &verify.Verifier{Mode: rt.cfg.DevIDMode, PCRs: rt.cfg.PCRSelection, Now: now}
	bank, _ := tpmrules.ParseBank(rt.cfg.PCRBank)
	v.PCRBank = bank.Alg
	v.EK.AllowInsecure = rt.cfg.AllowInsecure
	v.EK.RequireCertAndAllow = rt.cfg.RequireEKCertAndAllowlist
	v.EventLog = verify.EventLogPolicy{Mode: rt.cfg.EventLog, AllowSHA1: rt.cfg.EventLogAllowSHA1}
	if rt.cfg.EKType != EKTypeAny {
		v.EK.Type = rt.cfg.EKType
	}
	if rt.cfg.ExpiredEKCert == "warn" {
		v.EK.Expired = verify.ExpiredWarn
	}
	var err error
	if rt.bundle != nil {
		if v.EK.Bundle, err = rt.bundle.get(); err != nil {
			return nil, fmt.Errorf("ca_path: %w", err)
		}
	}
	if rt.allow != nil {
		if v.EK.Allow, err = rt.allow.get(); err != nil {
			return nil, fmt.Errorf("ek_allowlist_path: %w", err)
		}
	}
	if rt.hashDir != nil {
		hashes, err := rt.hashDir.get()
		if err != nil {
			return nil, fmt.Errorf("hash_path: %w", err)
		}
		if v.EK.Allow != nil {
			// Both lists: their union, without touching the cached maps.
			hashes = maps.Clone(hashes)
			maps.Copy(hashes, v.EK.Allow)
		}
		v.EK.Allow = hashes
	}
	if rt.ekModeHosts != nil {
		if v.EKModeHosts, err = rt.ekModeHosts.get(); err != nil {
			return nil, fmt.Errorf("ek_mode_hosts_path: %w", err)
		}
	}
	if rt.deny != nil {
		if v.EK.Deny, err = rt.deny.get(); err != nil {
			return nil, fmt.Errorf("ek_denylist_path: %w", err)
		}
	}
	if rt.devidBundle != nil {
		if v.DevID.Bundle, err = rt.devidBundle.get(); err != nil {
			return nil, fmt.Errorf("devid_ca_path: %w", err)
		}
		if rt.crlFile != nil || rt.crlURL != nil {
			roots := v.DevID.Bundle.Roots()
			v.DevID.CRL = func() (*x509.RevocationList, error) { return rt.currentCRL(roots) }
		}
	}
	return v, nil
}

// currentCRL is the newer of the CRLs of devid_crl_path and devid_crl_url, whichever are
// configured; an error only when neither yields one.
func (rt *runtime) currentCRL(roots []*x509.Certificate) (*x509.RevocationList, error) {
	var (
		best *x509.RevocationList
		errs []error
	)
	if rt.crlFile != nil {
		rt.mu.Lock()
		crl, err := rt.crlFile.get()
		rt.mu.Unlock()
		if err != nil {
			// The last good CRL stays in use, until its nextUpdate.
			errs = append(errs, fmt.Errorf("devid_crl_path: %w", err))
		}
		if crl != nil {
			best = crl
		}
	}
	if rt.crlURL != nil {
		crl, err := rt.crlURL.current(roots)
		if err != nil {
			errs = append(errs, err)
		}
		if crl != nil && newerCRL(crl, best) {
			best = crl
		}
	}
	if len(errs) > 0 && rt.log != nil {
		rt.log.Warn("DevID CRL source failed", "error", errors.Join(errs...).Error(), "crl_available", best != nil)
	}
	if best == nil {
		return nil, errors.Join(errs...)
	}
	return best, nil
}

func (p *Plugin) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// audit is one decision.
type audit struct {
	mode, agentID, ekHash, check, pcrDigest, policy, rule string
	devidSerial, devidCN                                  string
	warnings                                              []string
	// result is the verifier's, pinned whether the policy pinned it: for the metrics.
	result *verify.Result
	pinned bool
}

func (p *Plugin) logDecision(a audit, err error) {
	fields := []any{"mode", a.mode, "agent_id", a.agentID, "ek_hash", a.ekHash, "pcr_digest", a.pcrDigest}
	if a.devidSerial != "" {
		fields = append(fields, "devid_serial", a.devidSerial, "devid_cn", a.devidCN)
	}
	if a.policy != "" {
		fields = append(fields, "pcr_policy", a.policy)
	}
	if a.rule != "" {
		fields = append(fields, "rule", a.rule)
	}
	if err != nil {
		fields = append(fields, "result", "rejected", "check", a.check, "reason", err.Error())
		p.log.Warn("tpm attestation rejected", fields...)
		return
	}
	if len(a.warnings) > 0 {
		fields = append(fields, "warnings", strings.Join(a.warnings, "; "))
		p.log.Warn("tpm attestation accepted with warnings", append(fields, "result", "accepted")...)
		return
	}
	p.log.Info("tpm attestation accepted", append(fields, "result", "accepted")...)
}

// Attest runs one attestation over the stream.
func (p *Plugin) Attest(stream nodeattestorv1.NodeAttestor_AttestServer) error {
	p.mu.RLock()
	rt := p.rt
	p.mu.RUnlock()
	if rt == nil {
		return status.Error(codes.FailedPrecondition, "tpm: not configured")
	}
	a := audit{mode: rt.cfg.DevIDMode}
	start := time.Now()
	res, err := p.attest(stream, rt, &a)
	p.logDecision(a, err)
	p.countDecision(rt, a, start, err)
	if err != nil {
		return err
	}
	return stream.Send(&nodeattestorv1.AttestResponse{Response: &nodeattestorv1.AttestResponse_AgentAttributes{
		AgentAttributes: &nodeattestorv1.AgentAttributes{
			SpiffeId:       a.agentID,
			SelectorValues: res,
			CanReattest:    true,
		},
	}})
}

func (p *Plugin) attest(stream nodeattestorv1.NodeAttestor_AttestServer, rt *runtime, a *audit) ([]string, error) {
	a.check = verify.CheckProtocol
	req, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	hello := req.GetPayload()
	if hello == nil {
		return nil, status.Error(codes.InvalidArgument, "tpm: message out of order: expected the attestation payload first")
	}
	v, err := rt.verifier(p.now)
	if err != nil {
		a.check = "configuration"
		return nil, status.Errorf(codes.Internal, "tpm: %v", err)
	}
	sess, ch, err := v.Begin(hello)
	if err != nil {
		var ce *verify.CheckError
		if errors.As(err, &ce) && ce.EKHash != "" {
			a.ekHash, a.agentID = ce.EKHash, agentID(rt.trustDomain, ce.EKHash)
		}
		return nil, p.rejection(err, a)
	}
	a.ekHash, a.mode = sess.Identity.EKHash, sess.Identity.Mode
	a.agentID = agentID(rt.trustDomain, a.ekHash)
	if d := sess.Identity.DevID; d != nil {
		a.devidSerial, a.devidCN = fmt.Sprintf("%x", d.Cert.SerialNumber), d.Cert.Subject.CommonName
	}
	chBytes, err := protocol.Encode(ch)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "tpm: %v", err)
	}
	if err := stream.Send(&nodeattestorv1.AttestResponse{Response: &nodeattestorv1.AttestResponse_Challenge{Challenge: chBytes}}); err != nil {
		return nil, err
	}
	req, err = stream.Recv()
	if err != nil {
		return nil, err
	}
	evidence := req.GetChallengeResponse()
	if evidence == nil {
		a.check = verify.CheckProtocol
		return nil, status.Error(codes.InvalidArgument, "tpm: message out of order: expected the challenge response")
	}
	res, err := sess.Finish(evidence)
	if err != nil {
		return nil, p.rejection(err, a)
	}
	a.pcrDigest = res.PCRDigest
	a.warnings = res.Warnings
	a.result = res
	sel := selectors(res)
	if rt.policy != nil {
		d, rule, err := rt.policy.EvaluateBoot(res.EKHash, res.PCRBank, res.PCRs, res.Boot, p.now())
		a.rule = rule
		if err != nil {
			a.check = "pcr_policy"
			if errors.Is(err, policy.ErrRejected) {
				return nil, status.Errorf(codes.PermissionDenied, "tpm: %v", err)
			}
			return nil, status.Errorf(codes.Internal, "tpm: %v", err)
		}
		a.policy = d.Set
		a.pinned = d.Pinned
		if d.Pinned {
			a.warnings = append(a.warnings, "new boot state accepted in an allow-next window and pinned as "+d.Set)
		}
		sel = append(sel, "pcr_policy:"+d.Policy)
	}
	a.check = ""
	return sel, nil
}

// rejection turns a verifier error into a gRPC status: what the agent sent is at fault
// (InvalidArgument), or its TPM is not trusted (PermissionDenied).
func (p *Plugin) rejection(err error, a *audit) error {
	a.check = verify.FailedCheck(err)
	var ce *verify.CheckError
	if !errors.As(err, &ce) {
		return status.Errorf(codes.Internal, "tpm: %v", err)
	}
	code := codes.PermissionDenied
	switch ce.Check {
	case verify.CheckProtocol, verify.CheckPCRSelection:
		code = codes.InvalidArgument
	case verify.CheckDevIDCRL:
		// The server cannot tell whether the certificate is revoked: its own fault.
		code = codes.Unavailable
	}
	return status.Errorf(code, "tpm: %v", err)
}

// agentID is the SPIFFE ID of the agent on the TPM with EK hash h.
func agentID(trustDomain, h string) string {
	return fmt.Sprintf("spiffe://%s/spire/agent/tpm/%s", trustDomain, h)
}

// selectors are the tpm: selector values of an accepted attestation. Each comes from a
// proof the verifier checked, never from what the agent claims (its Hello's TPM
// properties are unsigned):
//
//	pub_hash:<hash>              the EK public area; its TPM activated the credential (TPM2_ActivateCredential)
//	ek_cert:issuer:cn:<cn>       the EK certificate, verified against ca_path, certifying that EK
//	ek_cert:serial:<hex>         the same certificate
//	ek_cert:expired              the same, expired, accepted by expired_ek_cert = "warn"
//	ek_cert:insecure, ek_cert:none   no verified certificate (allow_insecure, or an allow-listed EK)
//	manufacturer:<vendor id>     TPMManufacturer of the verified EK certificate's subjectAltName (signed by the manufacturer CA); none without a verified certificate
//	model:<model>                TPMModel of that subjectAltName; none without a verified certificate
//	firmware:<version>           TPMS_ATTEST.firmwareVersion of the quote, signed by the AK; the Hello's claim must equal it (firmware_mismatch)
//	pcr:<bank>:<pcr>:<hex>       PCR values that hash to the digest of the quote, which covers exactly the selection required
//	pcr_policy:<name>            the PCR policy (pcr_policy_path) that allowed those values
//	secure_boot:enabled          Secure Boot on, as the event log replayed against the quoted PCR 7 proves it (event_log = "verify" or "require")
//	boot:authority:<sha256>      a db certificate (SHA-256 of its DER) that verified the boot chain, from the same replayed log
//	mode:ek_cert                 an agent in EK mode accepted by a server in DevID mode as an EK-mode exception (ek_mode_hosts_path)
//	devid:subject:cn:, devid:issuer:cn:, devid:serial:   the DevID certificate, verified against devid_ca_path and its CRL, whose key the AK certified (TPM2_Certify)
func selectors(r *verify.Result) []string {
	s := []string{"pub_hash:" + r.EKHash}
	var manufacturer, model string
	switch r.CertStatus {
	case "valid", "expired":
		c := r.EKCert.Cert
		s = append(s, "ek_cert:issuer:cn:"+c.Issuer.CommonName, fmt.Sprintf("ek_cert:serial:%x", c.SerialNumber))
		if r.CertStatus == "expired" {
			s = append(s, "ek_cert:expired")
		}
		if r.EKCert.HasTPMSAN {
			manufacturer, model = r.EKCert.TPM.ManufacturerID, r.EKCert.TPM.Model
		}
	case "insecure":
		s = append(s, "ek_cert:insecure")
	default:
		s = append(s, "ek_cert:none")
	}
	if manufacturer != "" {
		s = append(s, "manufacturer:"+manufacturer)
	}
	if model != "" {
		s = append(s, "model:"+model)
	}
	if r.Firmware != "" {
		s = append(s, "firmware:"+r.Firmware)
	}
	for _, i := range sortedKeys(r.PCRs) {
		s = append(s, fmt.Sprintf("pcr:%s:%d:%x", r.PCRBank, i, r.PCRs[i]))
	}
	if b := r.Boot; b != nil && b.SecureBoot != nil {
		if b.SecureBoot.Enabled {
			s = append(s, "secure_boot:enabled")
		}
		for _, c := range b.SecureBoot.Authorities {
			s = append(s, "boot:authority:"+c.SHA256)
		}
	}
	if r.EKModeException {
		s = append(s, "mode:ek_cert")
	}
	if r.DevID != nil {
		c := r.DevID.Cert
		if c.Subject.CommonName != "" {
			s = append(s, "devid:subject:cn:"+c.Subject.CommonName)
		}
		if c.Issuer.CommonName != "" {
			s = append(s, "devid:issuer:cn:"+c.Issuer.CommonName)
		}
		s = append(s, fmt.Sprintf("devid:serial:%x", c.SerialNumber))
	}
	return s
}

func sortedKeys(m map[int][]byte) []int {
	return slices.Sorted(maps.Keys(m))
}

// checkPolicy refuses a policy whose rules reason over what the server does not verify: a
// PCR set naming a PCR the quote leaves out (pcr_selection), boot rules while the event log
// is ignored, or a boot rule over a PCR the quote leaves out.
func checkPolicy(pol *policy.Policy, cfg *Config) []string {
	var notes []string
	quoted := func(i int) bool { return slices.Contains(cfg.PCRSelection, i) }
	sets := func(where string, list []*policy.Set) {
		for _, set := range list {
			for _, i := range sortedKeys(set.PCRs) {
				if !quoted(i) {
					notes = append(notes, fmt.Sprintf("pcr_policy_path: set %q of %s names PCR %d, which pcr_selection %v does not quote", set.Name, where, i, cfg.PCRSelection))
				}
			}
		}
	}
	boot := func(r *policy.BootRules) {
		if r == nil {
			return
		}
		if cfg.EventLog != verify.EventLogVerify && cfg.EventLog != verify.EventLogRequire {
			notes = append(notes, fmt.Sprintf("pcr_policy_path: boot rules of %s (%s) need the event log, and event_log is %q: set event_log = %q or %q", r.Owner, strings.Join(r.RuleNames(), ", "), cfg.EventLog, verify.EventLogVerify, verify.EventLogRequire))
		}
		pcrs := r.PCRs()
		for _, name := range r.RuleNames() {
			if i := pcrs[name]; !quoted(i) {
				notes = append(notes, fmt.Sprintf("pcr_policy_path: boot rule %s of %s needs PCR %d, which pcr_selection %v does not quote", name, r.Owner, i, cfg.PCRSelection))
			}
		}
	}
	for _, g := range pol.Groups {
		sets("group "+g.Name, g.Sets)
		boot(g.Boot)
	}
	for _, h := range pol.Hosts {
		sets("host "+h.EKHash, h.Sets)
		boot(h.Boot)
	}
	return notes
}
