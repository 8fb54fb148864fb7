// Package policy is the boot-state policy the SPIRE server plugin applies at every
// attestation: PCR sets, with windows for BIOS and firmware updates, and boot rules over
// the facts of the replayed event log.
//
// The verifier has already checked the quote, so the PCR values handed to Evaluate are the
// ones the host's TPM holds. This package decides whether that boot state is allowed for
// the host, and which named policy allowed it (for the selector tpm:pcr_policy:<name>).
//
// # Policy file
//
// The policy file is HCL (version 1, the dialect of SPIRE's own configuration), written by
// the operator. See example.hcl in this directory for a complete file.
// A policy file of more than 1 MiB or nested more than 32 levels deep (package
// internal/limits) is refused before the HCL parser reads it, as is a state file of more
// than 64 MiB or 32 levels; the error names the file and the limit.
//
//	unknown_hosts = "reject"          # or the name of a group
//
//	group "tower" {
//	  set "firmware-1.0" {
//	    bank = "sha256"               # sha1, sha256 (default) or sha384
//	    pcrs = {
//	      "0" = "<64 hex digits>"     # PCR index (0-23, quoted) = digest in that bank
//	      "7" = "<64 hex digits>"
//	    }
//	  }
//	  set "firmware-1.1" { ... }      # several sets at once: a fleet rolling an update
//	}
//
//	host "<EK hash: 64 hex digits>" {
//	  name  = "spire"                 # optional label, accepted by `omens pcr allow-next`
//	  group = "tower"                 # optional: the group's sets apply to this host
//	  set "lab" { ... }               # optional: sets for this host only
//	}
//
// A set names the values of some PCRs of one bank; a boot state matches the set when every
// PCR the set names has that value (PCRs the set does not name are not looked at). The
// sets that apply to a known host are, in this order: its own sets (selector name "host"),
// its group's sets (the group name), and the sets pinned for it through windows ("pinned").
// The first set that matches is reported.
//
// Group, set and host names are 1 to 64 of A-Z a-z 0-9 . _ -; a host name label may not be
// 64 hex digits (it would read as an EK hash). The group names "reject", "host" and
// "pinned" are reserved. A host may have no group and no sets: it is then allowed only
// through what a window pins.
//
// unknown_hosts says what happens to an EK hash the file does not list. "reject", the
// default, refuses it: a TPM whose EK certificate chains to a trusted manufacturer proves
// only that it is a genuine TPM, not that it belongs to the fleet, so it must be listed
// first. Naming a group instead applies that group's sets (and any pins) to every unlisted
// host, for fleets whose membership is decided by the EK CA alone.
//
// The file is read again when its size or modification time changes, so a running SPIRE
// server follows the operator's edits. A file that no longer parses rejects every host
// (each error names the file and the line) until it is fixed: the store fails closed.
//
// # Boot rules
//
// A group or a host may hold one boot block: rules over what the verifier proved from the
// boot event log it replayed against the quote (verify.BootFacts), rather than over PCR
// values, so that a kernel update does not need a new PCR set:
//
//	group "tower" {
//	  boot {
//	    secure_boot    = "required"           # Secure Boot on (PCR 7)
//	    boot_loaders   = ["<hex>", ...]       # PCR 4 applications before the last (shim, grub)
//	    kernels        = ["<hex>", "<hex>"]   # the last PCR 4 application: approve the new kernel before the reboot
//	    authorities    = ["<sha256 of DER>"]  # db certificates that may have verified the boot chain
//	    pk             = ["<sha256 of DER>"]  # certificates that may be enrolled in PK, KEK, db
//	    kek            = [...]
//	    db             = [...]
//	    dbx_includes   = ["<sha256>", ...]    # the dbx must hold at least these image hashes
//	    kernel_cmdline = "ro quiet"           # the command line grub measured (PCR 8)
//	  }
//	}
//
// Every rule that is set must hold; a rule not set is not checked. The boot blocks that
// apply to a host are its own and its group's (for an unlisted host, the unknown_hosts
// group's), and every one must hold, before and whatever the PCR sets decide; windows do
// not open them. A host with boot rules and no PCR set is allowed by its boot rules alone.
//
// The facts say which digests PCR 4 holds, in order, but not which is a loader and which
// a kernel (an event's type is not covered by its digest), so the rules go by position:
// kernels holds the last PCR 4 boot application to the list; boot_loaders holds every one
// before it to boot_loaders or kernels. Their digests are hex in the bank the server
// quotes (40, 64 or 96 digits); fingerprints and dbx hashes are SHA-256, 64 digits. pk,
// kek and db are allow lists: every enrolled certificate must be listed. authorities: every
// certificate that verified the boot chain must be listed, and one must have. Entries are
// distinct; a list is not empty.
//
// A boot rule needs the facts of a log the verifier checked: without one (event_log =
// "ignore" in the plugin, or an agent that sent no log under "verify") it refuses. secure_boot,
// pk, kek, db, dbx_includes and authorities need PCR 7 quoted, kernels and boot_loaders
// PCR 4, kernel_cmdline PCR 8 (BootRules.PCRs). A refusal names the rule, the event or
// value and what the rule allows; a boot application by its event's number in the log (as
// omens eventlog show numbers events), its type as the log claims it and its position
// among the boot applications, e.g.
//
//	policy: boot rule kernels of group tower: PCR 4 event #27 of the log (EV_EFI_BOOT_SERVICES_APPLICATION; boot application 3 of 3, the kernel) digest ab12... is not approved (approved: cd34..., ef56...)
//
// EvaluateBoot returns the rule that decided, for the audit line (RejectedRule on a refusal).
//
// LearnBoot writes the boot rules of one boot from its facts (`omens pcr policy learn`);
// AddKernel approves a kernel in the kernels rule of a policy file's text, changing only
// that list (`omens pcr policy add-kernel`).
//
// # State file
//
// What changes at run time lives in a JSON state file beside the policy (by default the
// policy path with ".state.json" appended): for each host, the sets pinned through
// windows, the open window, and the last boot state it presented with the decision and,
// when the server replayed its event log, what the log proved (BootSummary: Secure Boot,
// the kernel, the boot loaders, the authorities). The CLI and the SPIRE server plugin both write it, so every change is a read-modify-write
// under an exclusive flock on a companion lock file (state path + ".lock"), and the new
// state replaces the old atomically (a temporary file, fsync, rename). A replaced state
// file keeps the mode and, where the writer is allowed to set it, the owner of the old one,
// so a CLI run as root does not lock the SPIRE server out. A state file that does not parse
// is an error naming the file; it is never discarded, because it holds pins.
//
// Several SPIRE servers of one fleet share the state in PostgreSQL instead (OpenDB, the
// plugin's pcr_state_database; statestore.go): a row per host holding what the file holds
// for it, checked by the same parser, and locked with SELECT ... FOR UPDATE for the whole
// decision, so that a window pins once whichever server the host reaches. Only the storage
// differs; the decisions are the ones above.
//
// # Windows
//
// AllowNext opens a window for a host. While it is open, the first boot state the host
// presents that matches none of its sets is allowed, pinned as a new set for that host and
// the window is closed; a state that matches an existing set leaves the window open. When
// the window has expired, a changed boot state is rejected as usual. A pin is taken over
// the PCRs the host's sets name (0, 2, 4 and 7 if it has none, or every presented PCR if
// the host presented none of those).
package policy
