// Package doctor checks that a host is ready to attest with omens: its TPM, EK
// certificates and PCR bank, its boot event log and Secure Boot state, its LUKS2/Clevis
// binding, and, given the SPIRE agent's configuration, the plugin binary and checksum,
// the AK, the DevID certificate and key, and the SPIRE server. Run returns one Check per
// check, in a fixed order; `omens doctor` prints them.
//
// A check fails when the agent would fail, or the server refuse it, as the host stands
// (no EK certificate, a PCR bank the agent quotes switched off, a plugin that does not
// match its checksum, an expired DevID certificate, ...). It warns on what is allowed
// but will bite (a DevID certificate that expires within 14 days, a disk bound to PCR
// 4, Secure Boot off) and on what it could not check because it was not given (no
// --agent-config, no --ca, no --luks, no event log on a machine whose firmware writes
// none). Every check that is not a pass says what to do next.
//
// Where each check lives: tpm.go (tpm, tpm_info), ek.go (ek_cert_*), pcr.go
// (pcr_bank), eventlog.go (event_log, secure_boot), luks.go (luks; luksmeta.go parses
// cryptsetup's LUKS2 metadata), agent.go (agent_config, plugin, plugin_checksum, ak,
// devid_cert, devid_key, spire_server; agentconf.go parses spire-agent.conf).
//
// The bytes it reads from outside (the agent configuration, cryptsetup's JSON, the
// event log, the TPM's answers) are capped (internal/limits) before any parser runs.
package doctor

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/prover"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// Status is the result of one check.
type Status string

// The results of a check.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one line of the doctor's report.
type Check struct {
	// Name names the check: tpm, tpm_info, ek_cert_rsa_2048, pcr_bank, event_log, ...
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Next says what to do, for a check that is not a pass.
	Next string `json:"next,omitempty"`
}

// Options says what to check.
type Options struct {
	// TPMPath is the TPM device or socket; "" takes the agent configuration's tpm_path,
	// then the first of tpm.DefaultDevices that exists.
	TPMPath string
	// CAPath is the TPM manufacturers' CA bundle (a file or a directory) to verify the EK
	// certificates' chains against; "" leaves the chains unchecked.
	CAPath string
	// EventLogPath is the boot event log; "" takes the agent configuration's
	// event_log_path, then the kernel's (prover.DefaultEventLogPath).
	EventLogPath string
	// LUKSDevice is a LUKS2 device or image file whose Clevis TPM2 binding is compared
	// with the PCRs the agent quotes; "" leaves it unchecked.
	LUKSDevice string
	// AgentConfigPath is the SPIRE agent's configuration (spire-agent.conf); "" leaves
	// the agent's checks unchecked, and the others use the plugin's defaults.
	AgentConfigPath string
	// Now is the time certificates are checked at; zero means time.Now().
	Now time.Time
	// Cryptsetup is the cryptsetup executable; "" means "cryptsetup" from PATH.
	Cryptsetup string
	// DialTimeout bounds the connection to the SPIRE server; zero means 5 seconds.
	DialTimeout time.Duration
}

// Report is the result of Run.
type Report struct {
	Checks []Check `json:"checks"`
	Pass   int     `json:"pass"`
	Warn   int     `json:"warn"`
	Fail   int     `json:"fail"`
}

// Failed reports whether a check failed.
func (r *Report) Failed() bool { return r.Fail > 0 }

// host is what the checks learn and share, in the order Run runs them.
type host struct {
	opts Options
	now  time.Time

	agent    *AgentConfig   // the parsed agent configuration; nil without one
	attestor *prover.Config // its NodeAttestor "tpm" plugin_data as the plugin reads it
	tpmPath  string
	t        transport.TPMCloser // nil when no TPM could be opened
	bank     tpmrules.Bank       // the bank the agent quotes
	pcrs     []int               // the PCRs it quotes
	values   map[int][]byte      // their current values; nil when they could not be read
	facts    *verify.BootFacts   // what the replayed event log proves; nil when it did not replay
	logWhy   string              // why facts is nil

	checks []Check
}

// Run runs every check and returns the report.
func Run(opts Options) *Report {
	h := &host{opts: opts, now: opts.Now}
	if h.now.IsZero() {
		h.now = time.Now()
	}
	defer func() {
		if h.t != nil {
			h.t.Close()
		}
	}()
	for _, step := range []func(){
		h.checkAgentConfig,
		h.checkTPM,
		h.checkTPMInfo,
		h.checkEKs,
		h.checkPCRBank,
		h.checkEventLog,
		h.checkSecureBoot,
		h.checkLUKS,
		h.checkPlugin,
		h.checkAK,
		h.checkDevID,
		h.checkServer,
	} {
		step()
	}
	r := &Report{Checks: h.checks}
	for _, c := range h.checks {
		switch c.Status {
		case Pass:
			r.Pass++
		case Warn:
			r.Warn++
		case Fail:
			r.Fail++
		}
	}
	return r
}

func (h *host) add(name string, s Status, detail, next string) {
	h.checks = append(h.checks, Check{Name: name, Status: s, Detail: detail, Next: next})
}

func (h *host) pass(name, format string, args ...any) {
	h.add(name, Pass, fmt.Sprintf(format, args...), "")
}

// noTPM is the line of a check that needs the TPM when none could be opened.
func (h *host) noTPM(name string) {
	h.add(name, Warn, "not checked: no TPM (see check tpm)", "fix check tpm first")
}

// pcrList writes PCR indices as "0,2,4,7".
func pcrList(pcrs []int) string {
	s := make([]string, len(pcrs))
	for i, p := range pcrs {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// pcrWords writes "PCR 1" or "PCRs 1,3".
func pcrWords(pcrs []int) string {
	if len(pcrs) == 1 {
		return "PCR " + pcrList(pcrs)
	}
	return "PCRs " + pcrList(pcrs)
}
