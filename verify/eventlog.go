package verify

// This file verifies the boot event log an agent sends (TCG PC Client Platform Firmware
// Profile, 10) against the PCR values of its quote, and extracts what the replayed log
// proves. go-attestation parses the log (attest.ParseEventLog), replays it
// (EventLog.Verify) and reads the Secure Boot state (attest.ParseSecurebootState); this
// file adds what an attestation needs on top: a bound on the log, each bank replayed on
// its own, PCRs 0-7 fully explained by the log, and checks that trust only digests (an
// event's type is not covered by its digest, go-attestation's docs/event-log-disclosure.md):
// the separators of PCRs 0-7 and the Secure Boot variables of PCR 7 are recognised by what
// they measure, not by the type they claim. What the facts must be (the boot policy) is
// the policy package's.

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpmrules"
)

// MaxEventLogSize bounds the event log the verifier parses: the protocol's bound, which
// the prover also applies to the log it sends.
const MaxEventLogSize = protocol.MaxEventLogSize

// Event-log modes of EventLogPolicy.Mode.
const (
	// EventLogIgnore (also the empty mode): the log is not read; Result.Boot is nil.
	EventLogIgnore = "ignore"
	// EventLogVerify: a log, when the agent sends one, must replay to the quote and pass
	// the structural checks; an attestation without a log passes, with Result.Boot nil.
	EventLogVerify = "verify"
	// EventLogRequire: as EventLogVerify, and an attestation without a log is refused
	// (CheckEventLogMissing).
	EventLogRequire = "require"
)

// EventLogPolicy says what Session.Finish does with the boot event log.
type EventLogPolicy struct {
	// Mode is EventLogIgnore (or ""), EventLogVerify or EventLogRequire.
	Mode string
	// AllowSHA1 accepts logs that carry only SHA-1 digests (the TPM 1.2 format, which some
	// TPM 2.0 firmware still writes); without it they are refused (CheckEventLogSHA1).
	AllowSHA1 bool
}

// Validate reports an unknown mode.
func (p EventLogPolicy) Validate() error {
	switch p.Mode {
	case "", EventLogIgnore, EventLogVerify, EventLogRequire:
		return nil
	}
	return fmt.Errorf("verify: event log mode %q is not one of %q, %q, %q", p.Mode, EventLogIgnore, EventLogVerify, EventLogRequire)
}

func (p EventLogPolicy) enabled() bool { return p.Mode == EventLogVerify || p.Mode == EventLogRequire }

// PCRBank is the values of some PCRs of one bank, as a quote proves them.
type PCRBank struct {
	Alg  tpm2.TPMIAlgHash
	PCRs map[int][]byte
}

// BootFacts is what a replayed event log proves. Every field comes from events whose
// digests replayed to the quoted PCR values; a field about a PCR the quote does not cover
// is empty.
type BootFacts struct {
	// Banks are the banks the log carries digests for; Replayed the banks it was
	// replayed against.
	Banks    []string `json:"banks"`
	Replayed []string `json:"replayed"`
	// Events is the number of events in the log.
	Events int `json:"events"`
	// SecureBoot is the Secure Boot state (PCR 7); nil when PCR 7 is not quoted or the
	// log has no event for it.
	SecureBoot *SecureBootFacts `json:"secure_boot,omitempty"`
	// BootApplications are the code measurements of PCR 4 (boot loaders, kernels), in
	// order: every event of PCR 4 except its separator and the actions whose data hashes
	// to their digest, whatever type it claims.
	BootApplications []BootApplication `json:"boot_applications,omitempty"`
	// KernelCmdline is the kernel command line a boot loader measured (grub's
	// "kernel_cmdline:" in PCR 8), when the quote covers that PCR; "" otherwise.
	KernelCmdline string `json:"kernel_cmdline,omitempty"`
}

// SecureBootFacts is the Secure Boot state of PCR 7.
type SecureBootFacts struct {
	Enabled bool          `json:"enabled"`
	PK      []Certificate `json:"pk"`
	KEK     []Certificate `json:"kek"`
	DB      []Certificate `json:"db"`
	// DBHashes and DBX hold SHA-256 image hashes, hex.
	DBHashes []string      `json:"db_hashes,omitempty"`
	DBX      []string      `json:"dbx"`
	DBXCerts []Certificate `json:"dbx_certs,omitempty"`
	// Authorities are the db certificates that verified the boot chain (after the
	// separator); DriverAuthorities those that verified firmware drivers before it.
	Authorities       []Certificate `json:"authorities"`
	DriverAuthorities []Certificate `json:"driver_authorities,omitempty"`
}

// Certificate names a certificate of a Secure Boot database by its SHA-256 fingerprint
// (of the DER, hex).
type Certificate struct {
	SHA256  string `json:"sha256"`
	Subject string `json:"subject"`
}

// BootApplication is one code measurement of PCR 4. Digest (hex, of the replayed bank) is
// proven; Type is what the log claims and is not. Event is the event's number in the log,
// from 1, as `omens eventlog show` (EventLogEvents) numbers them.
type BootApplication struct {
	Event  int    `json:"event"`
	Digest string `json:"digest"`
	Type   string `json:"type"`
}

// ReplayEventLog parses log, replays it against each bank's PCR values and returns what it
// proves. Each bank must replay on its own; a PCR of 0-7 with no event in the log must
// hold its reset value. It refuses with CheckEventLogParse, CheckEventLogSHA1,
// CheckEventLogReplay, CheckEventLogSeparator, CheckEventLogVariable or
// CheckEventLogSecureBoot. Facts are read from the first bank.
func ReplayEventLog(log []byte, banks []PCRBank, opt EventLogPolicy) (*BootFacts, error) {
	el, err := parseEventLog(log)
	if err != nil {
		return nil, err
	}
	if len(el.Algs) == 1 && el.Algs[0] == attest.HashSHA1 && !opt.AllowSHA1 {
		return nil, reject(CheckEventLogSHA1, "the log carries only SHA-1 digests (a TPM 1.2 format log); allow SHA-1 logs to accept it")
	}
	if len(banks) == 0 {
		return nil, reject(CheckEventLogReplay, "no quoted PCR values to replay the log against")
	}
	all := el.Events(attest.HashSHA1)
	facts := &BootFacts{Events: len(all)}
	measured := measuredPCRs(all)
	for _, a := range el.Algs {
		facts.Banks = append(facts.Banks, bankName(tpm2.TPMIAlgHash(a)))
	}
	for i, bank := range banks {
		events, err := replayBank(el, bank, measured)
		if err != nil {
			return nil, err
		}
		h, _ := bank.Alg.Hash()
		if err := checkSeparators(events, h); err != nil {
			return nil, err
		}
		if err := checkVariables(events, h); err != nil {
			return nil, err
		}
		facts.Replayed = append(facts.Replayed, bankName(bank.Alg))
		if i == 0 {
			if err := facts.read(events, el.Events(attest.HashAlg(bank.Alg)), h, bank); err != nil {
				return nil, err
			}
		}
	}
	return facts, nil
}

func parseEventLog(log []byte) (*attest.EventLog, error) {
	if len(log) > MaxEventLogSize {
		return nil, reject(CheckEventLogParse, "the log is %d bytes, over the limit of %d", len(log), MaxEventLogSize)
	}
	if len(log) == 0 {
		return nil, reject(CheckEventLogParse, "the log is empty")
	}
	el, err := attest.ParseEventLog(log)
	if err != nil {
		return nil, reject(CheckEventLogParse, "%v", err)
	}
	return el, nil
}

func bankName(alg tpm2.TPMIAlgHash) string {
	if n := tpmrules.BankName(alg); n != "" {
		return n
	}
	return fmt.Sprintf("alg 0x%04X", uint16(alg))
}

// replayBank replays the log against one bank and returns the events of the quoted PCRs,
// in log order. measured is measuredPCRs of the log's events.
func replayBank(el *attest.EventLog, bank PCRBank, measured map[int]bool) ([]attest.Event, error) {
	h, err := bank.Alg.Hash()
	if err != nil {
		return nil, reject(CheckEventLogReplay, "bank %s: %v", bankName(bank.Alg), err)
	}
	if len(bank.PCRs) == 0 {
		return nil, reject(CheckEventLogReplay, "bank %s: no quoted PCR value to replay the log against", bankName(bank.Alg))
	}
	indexes := make([]int, 0, len(bank.PCRs))
	for p := range bank.PCRs {
		indexes = append(indexes, p)
	}
	slices.Sort(indexes)
	pcrs := make([]attest.PCR, 0, len(indexes))
	for _, p := range indexes {
		pcrs = append(pcrs, attest.PCR{Index: p, Digest: bank.PCRs[p], DigestAlg: h})
	}
	events, verr := el.Verify(pcrs)
	var invalid []int
	if re, ok := verr.(attest.ReplayError); ok {
		invalid = re.InvalidPCRs
	}
	// go-attestation accepts a PCR that has no event in the log, whatever its value; the
	// firmware's PCRs 0-7 are measured by the firmware alone, so the log must explain them.
	var bad []string
	for _, p := range indexes {
		want := bank.PCRs[p]
		if !slices.Contains(invalid, p) && (p > 7 || measured[p]) {
			continue
		}
		got, why := replayPCR(el, bank.Alg, h, p)
		switch {
		case why != "":
			bad = append(bad, fmt.Sprintf("%s PCR %d: %s, the quote says %x", bankName(bank.Alg), p, why, want))
		case !bytes.Equal(got, want):
			bad = append(bad, fmt.Sprintf("%s PCR %d: the log replays to %x, the quote says %x", bankName(bank.Alg), p, got, want))
		}
	}
	if verr != nil && len(bad) == 0 {
		// An error go-attestation does not attribute to one PCR.
		bad = append(bad, verr.Error())
	}
	if len(bad) > 0 {
		return nil, reject(CheckEventLogReplay, "%s", strings.Join(bad, "; "))
	}
	return events, nil
}

// measuredPCRs lists the PCRs that events (all of a log's) measure.
func measuredPCRs(events []attest.Event) map[int]bool {
	out := map[int]bool{}
	for _, e := range events {
		if e.Type != evNoAction {
			out[e.Index] = true
		}
	}
	return out
}

// Event types the checks recognise (PC Client PFP, 10.4.1).
const (
	evNoAction                attest.EventType = 0x00000003
	evSeparator               attest.EventType = 0x00000004
	evSCRTMContents           attest.EventType = 0x00000007
	evIPL                     attest.EventType = 0x0000000D
	evEFIVariableDriverConfig attest.EventType = 0x80000001
	evEFIAction               attest.EventType = 0x80000007
)

// replayPCR extends the log's digests of pcr in bank alg, for naming the value a log
// replays to; go-attestation's Verify decides. A PCR 0 whose log starts with a
// StartupLocality event (PC Client PFP, 10.4.5.3) starts from that locality. why is set
// when the log cannot be replayed in that bank.
func replayPCR(el *attest.EventLog, alg tpm2.TPMIAlgHash, h crypto.Hash, pcr int) (value []byte, why string) {
	v := make([]byte, h.Size())
	for _, e := range el.Events(attest.HashAlg(alg)) {
		if e.Index != pcr {
			continue
		}
		if e.Type == evNoAction {
			if pcr == 0 && len(e.Data) == 17 && strings.HasPrefix(string(e.Data), "StartupLocality") {
				v[len(v)-1] = e.Data[16]
			}
			continue
		}
		if len(e.Digest) != h.Size() {
			return nil, fmt.Sprintf("an event has no %s digest", bankName(alg))
		}
		x := h.New()
		x.Write(v)
		x.Write(e.Digest)
		v = x.Sum(nil)
	}
	return v, ""
}

func hashOf(h crypto.Hash, data []byte) []byte {
	x := h.New()
	x.Write(data)
	return x.Sum(nil)
}

// checkSeparators holds each replayed PCR of 0-7 that has events to exactly one
// EV_SEPARATOR, which must measure separator data (0x00000000, or 0xFFFFFFFF on a
// firmware error; PC Client PFP, 3.3.2.2), and refuses an event that measures a separator
// under another type (a retyped separator hides where the firmware handed over to the OS).
// One exception, seen on real firmware (a Lenovo laptop's S-CRTM measured 4 zero bytes):
// an EV_S_CRTM_CONTENTS of PCR 0 before its separator, a PCR no fact is read from.
func checkSeparators(events []attest.Event, h crypto.Hash) error {
	sep := [][]byte{hashOf(h, []byte{0, 0, 0, 0}), hashOf(h, []byte{0xFF, 0xFF, 0xFF, 0xFF})}
	count := map[int]int{}
	n := map[int]int{}
	for _, e := range events {
		if e.Index > 7 {
			continue
		}
		n[e.Index]++
		isSep := bytes.Equal(e.Digest, sep[0]) || bytes.Equal(e.Digest, sep[1])
		switch {
		case e.Type == evSeparator && !isSep:
			return reject(CheckEventLogSeparator, "PCR %d event %d is typed EV_SEPARATOR but measures %x, not a separator", e.Index, n[e.Index], e.Digest)
		case e.Type == evSeparator:
			count[e.Index]++
			if count[e.Index] > 1 {
				return reject(CheckEventLogSeparator, "PCR %d event %d is a second separator", e.Index, n[e.Index])
			}
		case isSep && e.Index == 0 && e.Type == evSCRTMContents && count[0] == 0:
		case isSep:
			return reject(CheckEventLogSeparator, "PCR %d event %d measures a separator but is typed %s (a retyped EV_SEPARATOR)", e.Index, n[e.Index], e.Type)
		}
	}
	for p := 0; p <= 7; p++ {
		if n[p] > 0 && count[p] == 0 {
			return reject(CheckEventLogSeparator, "PCR %d has %d events and no separator", p, n[p])
		}
	}
	return nil
}

// checkVariables holds every Secure Boot variable of PCR 7 (EV_EFI_VARIABLE_DRIVER_CONFIG)
// to its digest: its data, which the facts are read from, must hash to what was extended.
func checkVariables(events []attest.Event, h crypto.Hash) error {
	n := 0
	for _, e := range events {
		if e.Index != 7 {
			continue
		}
		n++
		if e.Type != evEFIVariableDriverConfig {
			continue
		}
		if sum := hashOf(h, e.Data); !bytes.Equal(sum, e.Digest) {
			return reject(CheckEventLogVariable, "PCR 7 event %d, variable %q: its data hashes to %x, the digest extended is %x", n, variableName(e.Data), sum, e.Digest)
		}
	}
	return nil
}

// variableName reads the name and data length of a UEFI_VARIABLE_DATA (PC Client PFP,
// 10.3.3); ok is false when b is not one.
func variable(b []byte) (name string, dataLen uint64, ok bool) {
	if len(b) < 32 {
		return "", 0, false
	}
	n := binary.LittleEndian.Uint64(b[16:24])
	dataLen = binary.LittleEndian.Uint64(b[24:32])
	if n > 64 || uint64(len(b)-32) < 2*n {
		return "", 0, false
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[32+2*i:])
	}
	return string(utf16.Decode(u)), dataLen, true
}

func variableName(b []byte) string {
	if name, _, ok := variable(b); ok {
		return name
	}
	return "?"
}

// secureBootEvents adapts the replayed events for attest.ParseSecurebootState:
//   - a SecureBoot variable with no data (firmware without Secure Boot measures the
//     variable it does not have; its digest was checked by checkVariables) is left out,
//     which reads as Secure Boot off, where go-attestation refuses the log;
//   - go-attestation compares data with SHA-1 and SHA-256 digests only: in a wider bank,
//     an event of PCRs 2 and 7 whose digest is the hash of its data is given the SHA-256
//     of its data instead (shim's authority events sometimes carry one extra byte that
//     is not hashed, as go-attestation knows), so the same comparisons are made.
func secureBootEvents(events []attest.Event, h crypto.Hash) []attest.Event {
	out := make([]attest.Event, 0, len(events))
	for _, e := range events {
		if e.Index != 7 && e.Index != 2 {
			continue
		}
		if e.Type == evEFIVariableDriverConfig {
			if name, n, ok := variable(e.Data); ok && name == "SecureBoot" && n == 0 {
				continue
			}
		}
		if h != crypto.SHA1 && h != crypto.SHA256 {
			switch {
			case bytes.Equal(hashOf(h, e.Data), e.Digest):
				e.Digest = hashOf(crypto.SHA256, e.Data)
			case len(e.Data) > 0 && bytes.Equal(hashOf(h, e.Data[:len(e.Data)-1]), e.Digest):
				e.Digest = hashOf(crypto.SHA256, e.Data[:len(e.Data)-1])
			}
		}
		out = append(out, e)
	}
	return out
}

// read reads the facts from the replayed events of a bank; all is every event of the log
// in that bank, in order, which numbers them.
func (f *BootFacts) read(events, all []attest.Event, h crypto.Hash, bank PCRBank) error {
	if _, ok := bank.PCRs[7]; ok && slices.ContainsFunc(events, func(e attest.Event) bool { return e.Index == 7 }) {
		sb, err := attest.ParseSecurebootState(secureBootEvents(events, h))
		if err != nil {
			return reject(CheckEventLogSecureBoot, "%v", err)
		}
		f.SecureBoot = &SecureBootFacts{
			Enabled:           sb.Enabled,
			PK:                certificates(sb.PlatformKeys),
			KEK:               certificates(sb.ExchangeKeys),
			DB:                certificates(sb.PermittedKeys),
			DBHashes:          hexes(sb.PermittedHashes),
			DBX:               hexes(sb.ForbiddenHashes),
			DBXCerts:          certificates(sb.ForbiddenKeys),
			Authorities:       certificates(sb.PostSeparatorAuthority),
			DriverAuthorities: certificates(sb.PreSeparatorAuthority),
		}
	}
	// The replayed events are the log's, in its order (go-attestation's Verify returns
	// them by sequence): each event of PCR 4 is found in all from where the one before it
	// was, and its number is its position there.
	next := 0
	number := func(e attest.Event) int {
		for ; next < len(all); next++ {
			if a := all[next]; a.Index == e.Index && a.Type == e.Type && bytes.Equal(a.Digest, e.Digest) && bytes.Equal(a.Data, e.Data) {
				next++
				return next
			}
		}
		return 0 // not found: the refusals then name the application by its position only
	}
	sep := [][]byte{hashOf(h, []byte{0, 0, 0, 0}), hashOf(h, []byte{0xFF, 0xFF, 0xFF, 0xFF})}
	for _, e := range events {
		switch e.Index {
		case 4:
			n := number(e)
			if bytes.Equal(e.Digest, sep[0]) || bytes.Equal(e.Digest, sep[1]) {
				continue
			}
			if e.Type == evEFIAction && bytes.Equal(hashOf(h, e.Data), e.Digest) {
				continue
			}
			f.BootApplications = append(f.BootApplications, BootApplication{Event: n, Digest: hex.EncodeToString(e.Digest), Type: e.Type.String()})
		case 8:
			// grub measures the command line without its "kernel_cmdline: " prefix, which
			// it logs as the event data.
			const prefix = "kernel_cmdline: "
			s := strings.TrimRight(string(e.Data), "\x00")
			if e.Type == evIPL && strings.HasPrefix(s, prefix) {
				cmdline := strings.TrimPrefix(s, prefix)
				if bytes.Equal(hashOf(h, []byte(cmdline)), e.Digest) {
					f.KernelCmdline = cmdline
				}
			}
		}
	}
	return nil
}

func certificates(certs []x509.Certificate) []Certificate {
	out := []Certificate{}
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		out = append(out, Certificate{SHA256: hex.EncodeToString(sum[:]), Subject: c.Subject.String()})
	}
	return out
}

func hexes(b [][]byte) []string {
	out := []string{}
	for _, x := range b {
		out = append(out, hex.EncodeToString(x))
	}
	return out
}

// EventLogPCRs returns the values the log replays to, for every PCR it has events for, in
// each bank it carries: what a TPM that measured this boot would hold. Nothing in it is
// proven; it serves tools that show a log, and tests.
func EventLogPCRs(log []byte) ([]PCRBank, error) {
	el, err := parseEventLog(log)
	if err != nil {
		return nil, err
	}
	var out []PCRBank
	for _, a := range el.Algs {
		alg := tpm2.TPMIAlgHash(a)
		h, err := alg.Hash()
		if err != nil {
			continue
		}
		bank := PCRBank{Alg: alg, PCRs: map[int][]byte{}}
		for _, e := range el.Events(a) {
			if _, done := bank.PCRs[e.Index]; done || e.Type == evNoAction {
				continue
			}
			if v, why := replayPCR(el, alg, h, e.Index); why == "" {
				bank.PCRs[e.Index] = v
			}
		}
		out = append(out, bank)
	}
	return out, nil
}

// LogEvent is one event of a log as the log claims it: nothing in it is proven.
type LogEvent struct {
	PCR     int               `json:"pcr"`
	Type    string            `json:"type"`
	Digests map[string]string `json:"digests"`
	Size    int               `json:"size"`
}

// EventLogEvents lists the log's events, unverified, with their digests in every bank.
func EventLogEvents(log []byte) ([]LogEvent, error) {
	el, err := parseEventLog(log)
	if err != nil {
		return nil, err
	}
	var out []LogEvent
	for i, a := range el.Algs {
		for j, e := range el.Events(a) {
			if i == 0 {
				out = append(out, LogEvent{PCR: e.Index, Type: e.Type.String(), Digests: map[string]string{}, Size: len(e.Data)})
			}
			if e.Digest != nil && j < len(out) {
				out[j].Digests[bankName(tpm2.TPMIAlgHash(a))] = hex.EncodeToString(e.Digest)
			}
		}
	}
	return out, nil
}
