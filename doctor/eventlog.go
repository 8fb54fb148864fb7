package doctor

import (
	"fmt"
	"strings"

	"omens.dev/omens/prover"
	"omens.dev/omens/verify"
)

// checkEventLog reads the boot event log as the agent does (prover.ReadEventLog) and
// replays it against the current values of the PCRs the agent quotes, as the server
// does with event_log = "verify" (verify.ReplayEventLog). A log the agent is told to
// send (--event-log, or event_log_path in its configuration) must be there; the kernel's
// may be missing on a machine whose firmware measures no boot (a warning).
func (h *host) checkEventLog() {
	path, named := h.opts.EventLogPath, "--event-log"
	if path == "" && h.attestor != nil && h.attestor.EventLogPath != "" {
		path, named = h.attestor.EventLogPath, "the agent's event_log_path"
	}
	if path == "" {
		path, named = prover.DefaultEventLogPath, ""
	}
	log, err := prover.ReadEventLog(path)
	switch {
	case err != nil:
		h.logWhy = "the event log cannot be read (see event_log)"
		h.add("event_log", Fail, err.Error(), "check that the file is readable by the agent (root), and not over the protocol's limit")
		return
	case log == nil && named != "":
		h.logWhy = "no event log (see event_log)"
		h.add("event_log", Fail, fmt.Sprintf("no event log at %s, which %s names", path, named),
			"fix the path; the kernel's log is "+prover.DefaultEventLogPath)
		return
	case log == nil:
		h.logWhy = "no event log (see event_log)"
		h.add("event_log", Warn, fmt.Sprintf("no event log at %s: the server can check PCR values only, no boot rules", path),
			"on UEFI hardware mount securityfs (mount -t securityfs securityfs /sys/kernel/security); a simulated TPM's log is given with --event-log FILE")
		return
	}
	if h.values == nil {
		h.logWhy = "the PCRs could not be read (see pcr_bank)"
		h.add("event_log", Warn, fmt.Sprintf("%s (%d bytes) not replayed: the %s PCRs could not be read", path, len(log), h.bank.Name), "fix check pcr_bank first")
		return
	}
	facts, err := verify.ReplayEventLog(log, []verify.PCRBank{{Alg: h.bank.Alg, PCRs: h.values}}, verify.EventLogPolicy{Mode: verify.EventLogVerify})
	if err != nil {
		h.logWhy = "the event log does not replay (see event_log)"
		h.add("event_log", Fail, fmt.Sprintf("%s: %v", path, err),
			`a server with event_log = "verify" or "require" refuses this host; was the TPM reset, or a PCR extended outside the firmware's log?`)
		return
	}
	h.facts = facts
	h.pass("event_log", "%s: %d events (banks %s), replays to the current %s PCRs %s", path, facts.Events, strings.Join(facts.Banks, ", "), h.bank.Name, pcrList(h.pcrs))
}

// checkSecureBoot reports the Secure Boot state the replayed log proves.
func (h *host) checkSecureBoot() {
	switch {
	case h.facts == nil:
		h.add("secure_boot", Warn, "not known: "+h.logWhy, "boot rules (secure_boot, kernels, ...) need a log that replays")
	case h.facts.SecureBoot == nil:
		h.add("secure_boot", Warn, "not known: the log has no Secure Boot events in PCR 7, or pcr_selection omits PCR 7",
			"quote PCR 7 (pcr_selection) on a machine with UEFI Secure Boot")
	case !h.facts.SecureBoot.Enabled:
		h.add("secure_boot", Warn, "off, as the event log proves it (PCR 7)",
			`turn Secure Boot on in the firmware setup: a policy with secure_boot = "required" refuses this host`)
	default:
		n := len(h.facts.SecureBoot.Authorities)
		what := fmt.Sprintf("%d db certificates verified", n)
		if n == 1 {
			what = "1 db certificate verified"
		}
		h.pass("secure_boot", "on, as the event log proves it (PCR 7; %s the boot chain)", what)
	}
}
