// Package metrics names what omens reports: the one home of its metric names and labels.
//
// The SPIRE plugins report through SPIRE's own telemetry (the plugin SDK's metrics host
// service), so their metrics appear wherever SPIRE's do, under SPIRE's prefix: a key
// "tpm_attestation" of the server plugin is spire_server_tpm_attestation on SPIRE's
// Prometheus endpoint (a SPIRE "telemetry { Prometheus { ... } }" block), with SPIRE's
// own label "host" beside omens'. The RA serves its own /metrics (client_golang), named
// omens_ra_*. docs/metrics.md lists every name with its type, labels and meaning.
//
// Labels stay bounded: a result, a verifier check (verify/checks.go, a fixed set), a mode,
// a stage, a step-ca operation. No label names an agent, an EK, a host or a serial.
package metrics

// Keys of the server plugin (NodeAttestor "tpm" in spire-server). On SPIRE's Prometheus
// endpoint each is prefixed with SPIREServerPrefix.
const (
	// Attestation counts attestations, by LabelResult, LabelCheck and LabelMode.
	Attestation = "tpm_attestation"
	// VerificationTime is the time from the agent's Hello to the decision (a summary in
	// milliseconds, as SPIRE's timers are), by LabelResult.
	VerificationTime = "tpm_verification_elapsed_time"
	// BootStatePinned counts boot states accepted in an allow-next window and pinned.
	BootStatePinned = "tpm_boot_state_pinned"
	// WindowsOpen is the number of allow-next windows open now (a gauge).
	WindowsOpen = "tpm_boot_state_windows_open"
	// CRLAge is the seconds since the thisUpdate of the DevID CRL in use (a gauge).
	CRLAge = "tpm_devid_crl_age_seconds"
	// CRLNextUpdate is the seconds until the nextUpdate of the DevID CRL in use,
	// negative once it is stale (a gauge).
	CRLNextUpdate = "tpm_devid_crl_next_update_seconds"
	// EKCertExpiry is the seconds left to the EK certificate that expires first, among
	// the agents accepted in the last 24 hours; negative when one has expired (a
	// gauge, accepted under expired_ek_cert = "warn").
	EKCertExpiry = "tpm_ek_cert_expiry_seconds"
	// DevIDCertExpiry is the same for DevID certificates.
	DevIDCertExpiry = "tpm_devid_cert_expiry_seconds"
)

// Keys of the agent plugin (NodeAttestor "tpm" in spire-agent), prefixed with
// SPIREAgentPrefix on SPIRE's Prometheus endpoint.
const (
	// AgentAttestation counts the attestations the agent's TPM took part in, by
	// LabelResult ("answered" or "error").
	AgentAttestation = "tpm_agent_attestation"
	// TPMErrors counts the TPM's failures, by LabelStage.
	TPMErrors = "tpm_agent_tpm_errors"
	// AgentDevIDCertExpiry is the seconds left to this host's DevID certificate (a gauge,
	// set at each attestation in DevID mode).
	AgentDevIDCertExpiry = "tpm_agent_devid_cert_expiry_seconds"
)

// Prefixes SPIRE puts before a plugin's keys on its Prometheus endpoint (its service
// name, the default MetricPrefix).
const (
	SPIREServerPrefix = "spire_server_"
	SPIREAgentPrefix  = "spire_agent_"
)

// Metrics the RA serves on /metrics (omens ra serve --metrics-listen).
const (
	// RAEnrollments counts first enrollments of a host, by LabelResult and LabelCheck.
	RAEnrollments = "omens_ra_enrollments_total"
	// RARenewals counts enrollments of a host that already held a DevID certificate.
	RARenewals = "omens_ra_renewals_total"
	// RARevocations counts the revocations the RA makes (superseded, unrecorded), by
	// LabelResult and LabelReason.
	RARevocations = "omens_ra_revocations_total"
	// RARequests counts every request to the enrollment endpoints, by LabelResult and
	// LabelCheck, a refused begin included (an enrollment or renewal is known only at
	// finish).
	RARequests = "omens_ra_requests_total"
	// StepCADuration is the latency of the RA's requests to step-ca, by LabelOp (a
	// histogram in seconds).
	StepCADuration = "omens_ra_stepca_request_duration_seconds"
	// StepCAErrors counts the RA's failed requests to step-ca, by LabelOp.
	StepCAErrors = "omens_ra_stepca_errors_total"
)

// Labels, each with a bounded set of values.
const (
	// LabelResult: "accepted" or "rejected" (the server plugin); "answered" or "error"
	// (the agent plugin); "accepted" or "refused" (the RA); "revoked" or "error"
	// (revocations).
	LabelResult = "result"
	// LabelCheck: the check that refused (verify/checks.go, the RA's checks, and
	// "configuration", "internal"), or CheckNone when accepted.
	LabelCheck = "check"
	// LabelMode: "ek_cert" or "devid".
	LabelMode = "mode"
	// LabelStage: "begin" (opening the TPM, reading the EK, making the AK, quoting) or
	// "answer" (activating the credential, the quote of the challenge).
	LabelStage = "stage"
	// LabelOp: "sign", "revoke", "crl", "health".
	LabelOp = "op"
	// LabelReason: "superseded" (after a renewal's grace), "unrecorded" (a certificate the RA
	// could not record).
	LabelReason = "reason"
	// LabelPath: the RA endpoint, "begin" or "finish".
	LabelPath = "path"
)

// Label values.
const (
	ResultAccepted = "accepted"
	ResultRejected = "rejected"
	ResultRefused  = "refused"
	ResultAnswered = "answered"
	ResultError    = "error"
	ResultRevoked  = "revoked"
	// CheckNone is the check label of an accepted attestation or request.
	CheckNone   = "none"
	StageBegin  = "begin"
	StageAnswer = "answer"
)
