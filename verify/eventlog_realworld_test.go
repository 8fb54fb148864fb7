package verify_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// eventLogsDoc is the table TestRealworldEventLogs writes with OMENS_UPDATE_DOCS=1, and
// otherwise checks is up to date, relative to this package.
const eventLogsDoc = "../docs/eventlogs.md"

// pcrReference is a <log>.pcrs.json of the real-world data.
type pcrReference struct {
	References []pcrValues `json:"references"`
}

// pcrValues is one reference: its kind (where the values come from) and the values, by
// bank and PCR.
type pcrValues struct {
	Kind  string                       `json:"kind"`
	Banks map[string]map[string]string `json:"banks"`
}

// independent reports whether a reference kind comes from the machine (a TPM read-out, a
// quote) or a project's tests, not from another tool's replay of the same log.
func independent(kind string) bool {
	return strings.HasPrefix(kind, "test-expected") || strings.HasPrefix(kind, "TPM ")
}

// TestRealworldEventLogs: every real log is parsed or refused with a reason, never a
// crash; every log with an independent PCR reference replays to it for PCRs 0-7 (the
// reference's PCRs among them, in each bank the log carries). The results table is
// docs/eventlogs.md.
func TestRealworldEventLogs(t *testing.T) {
	dir := filepath.Join(realworld.Dir(t), "eventlogs")
	logs, err := filepath.Glob(filepath.Join(dir, "*.bin"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no event logs in %s: %v", dir, err)
	}
	var rows []string
	for _, path := range logs {
		name := filepath.Base(path)
		log, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		row := realworldRow(t, name, log, strings.TrimSuffix(path, ".bin")+".pcrs.json")
		rows = append(rows, row)
	}
	doc := "# Real-world event logs\n\n" +
		"Written by `OMENS_UPDATE_DOCS=1 go test -run TestRealworldEventLogs ./verify/` from the real-world\n" +
		"data (`../shared/realworld/eventlogs`); the test fails when this file is out of date.\n\n" +
		"- *own replay*: `verify.ReplayEventLog` against the values the log itself replays to\n" +
		"  (`verify.EventLogPCRs`), in its SHA-256 bank (else its first), SHA-1-only logs allowed:\n" +
		"  the parse and the structural checks (separators, Secure Boot variables, Secure Boot\n" +
		"  state); *ok* or the refusal.\n" +
		"- *secure boot*: the Secure Boot state that replay proves (PCR 7), with the number of\n" +
		"  PK/KEK/db certificates, dbx entries and boot chain authorities; *-* when refused or\n" +
		"  PCR 7 has no event.\n" +
		"- *reference*: replay against the `.pcrs.json` values for PCRs 0-7 that come from a TPM\n" +
		"  read-out or the source project's tests (not from another tool's replay), per bank the\n" +
		"  log carries: *ok*, *replays, then* the structural check that refuses it, or the replay\n" +
		"  failure (which fails the test); *-* when there is none.\n\n" +
		"| log | banks | events | secure boot | own replay | reference |\n|---|---|---|---|---|---|\n" +
		strings.Join(rows, "\n") + "\n"
	if os.Getenv("OMENS_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(eventLogsDoc, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	old, err := os.ReadFile(eventLogsDoc)
	if err != nil {
		t.Fatal(err)
	}
	if string(old) != doc {
		t.Errorf("%s is out of date: run OMENS_UPDATE_DOCS=1 go test -run TestRealworldEventLogs ./verify/", eventLogsDoc)
	}
}

func realworldRow(t *testing.T, name string, log []byte, refPath string) string {
	t.Helper()
	cell := func(err error) string {
		if err == nil {
			return "ok"
		}
		s := strings.TrimPrefix(err.Error(), "verify: ")
		if len(s) > 160 {
			s = s[:160] + "…"
		}
		return strings.ReplaceAll(s, "|", `\|`)
	}
	banks, err := verify.EventLogPCRs(log)
	if err != nil {
		if verify.FailedCheck(err) != verify.CheckEventLogParse {
			t.Errorf("%s: %v is not an event_log_parse rejection", name, err)
		}
		ref := "-"
		if hasIndependentReference(t, refPath) {
			why, known := unparsableWithReference[name]
			if !known {
				t.Errorf("%s has a PCR reference and does not parse: %v", name, err)
			}
			ref = "not replayed: " + why
		}
		return fmt.Sprintf("| %s | - | - | - | %s | %s |", name, cell(err), ref)
	}
	events := must(verify.EventLogEvents(log))
	var names []string
	own := banks[0]
	for _, b := range banks {
		names = append(names, bankLabel(b.Alg))
		if b.Alg == tpm2.TPMAlgSHA256 {
			own = b
		}
	}
	sb := "-"
	facts, err := verify.ReplayEventLog(log, []verify.PCRBank{own}, verify.EventLogPolicy{AllowSHA1: true})
	if err != nil && verify.FailedCheck(err) == "" {
		t.Errorf("%s: %v is not a rejection", name, err)
	}
	if err == nil {
		checkApplicationEvents(t, name, events, bankLabel(own.Alg), facts)
	}
	if err == nil && facts.SecureBoot != nil {
		s := facts.SecureBoot
		state := "off"
		if s.Enabled {
			state = "on"
		}
		sb = fmt.Sprintf("%s (PK %d, KEK %d, db %d, dbx %d, authorities %d)", state, len(s.PK), len(s.KEK), len(s.DB)+len(s.DBHashes), len(s.DBX)+len(s.DBXCerts), len(s.Authorities))
	}
	ownCell := cell(err)
	if len(banks) == 1 && banks[0].Alg == tpm2.TPMAlgSHA1 {
		ownCell += " (SHA-1 only: refused unless allowed)"
	}
	return fmt.Sprintf("| %s | %s | %d | %s | %s | %s |", name, strings.Join(names, ", "), len(events), sb, ownCell, referenceCell(t, name, log, banks, refPath, cell))
}

// checkApplicationEvents holds each boot application of facts to the event its number
// names in the log as `omens eventlog show` lists it (EventLogEvents, from 1): an event of
// PCR 4 of the same type and digest in bank.
func checkApplicationEvents(t *testing.T, name string, events []verify.LogEvent, bank string, facts *verify.BootFacts) {
	t.Helper()
	last := 0
	for _, a := range facts.BootApplications {
		if a.Event <= last || a.Event > len(events) {
			t.Errorf("%s: boot application %+v: event number not after %d and within the log's %d events", name, a, last, len(events))
			continue
		}
		last = a.Event
		if e := events[a.Event-1]; e.PCR != 4 || e.Type != a.Type || e.Digests[bank] != a.Digest {
			t.Errorf("%s: boot application %+v names event %d, which is %+v", name, a, a.Event, e)
		}
	}
}

// unparsableWithReference are the logs with a PCR reference that go-attestation cannot
// parse, and why.
var unparsableWithReference = map[string]string{
	"tpm2-tss_binary_measurements_hcrtm.bin": "the log has an SM3-256 bank, which go-attestation does not parse",
}

func hasIndependentReference(t *testing.T, refPath string) bool {
	b, err := os.ReadFile(refPath)
	if err != nil {
		return false
	}
	var ref pcrReference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("%s: %v", refPath, err)
	}
	return slices.ContainsFunc(ref.References, func(r pcrValues) bool { return independent(r.Kind) })
}

func bankLabel(alg tpm2.TPMIAlgHash) string {
	if n := tpmrules.BankName(alg); n != "" {
		return n
	}
	return fmt.Sprintf("0x%04X", uint16(alg))
}

// referenceCell replays log against each independent reference's PCRs 0-7, bank by bank
// among the banks the log carries; a failure fails the test.
func referenceCell(t *testing.T, name string, log []byte, banks []verify.PCRBank, refPath string, cell func(error) string) string {
	t.Helper()
	b, err := os.ReadFile(refPath)
	if os.IsNotExist(err) {
		return "-"
	}
	if err != nil {
		t.Fatal(err)
	}
	var ref pcrReference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("%s: %v", refPath, err)
	}
	var out []string
	for _, r := range ref.References {
		if !independent(r.Kind) {
			continue
		}
		var bankNames []string
		for n := range r.Banks {
			bankNames = append(bankNames, n)
		}
		slices.Sort(bankNames)
		for _, bn := range bankNames {
			bank, err := tpmrules.ParseBank(bn)
			if err != nil || !slices.ContainsFunc(banks, func(b verify.PCRBank) bool { return b.Alg == bank.Alg }) {
				continue // a bank the log carries no digests for
			}
			pcrs := map[int][]byte{}
			for k, v := range r.Banks[bn] {
				p, err := strconv.Atoi(k)
				if err != nil || p > 7 {
					continue
				}
				pcrs[p] = must(hex.DecodeString(v))
			}
			if len(pcrs) == 0 {
				continue
			}
			_, err = verify.ReplayEventLog(log, []verify.PCRBank{{Alg: bank.Alg, PCRs: pcrs}}, verify.EventLogPolicy{AllowSHA1: true})
			result := cell(err)
			switch verify.FailedCheck(err) {
			case "":
			case verify.CheckEventLogReplay, verify.CheckEventLogParse:
				t.Errorf("%s: the %s reference (%s) does not replay: %v", name, bn, r.Kind, err)
			default:
				// The digests replay; a structural check refuses what they show.
				result = "replays, then " + result
			}
			sel := slices.Sorted(func(yield func(int) bool) {
				for p := range pcrs {
					if !yield(p) {
						return
					}
				}
			})
			out = append(out, fmt.Sprintf("%s %s: %s", bn, pcrList(sel), result))
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "; ")
}

func pcrList(p []int) string {
	if len(p) == 8 && p[0] == 0 && p[7] == 7 {
		return "0-7"
	}
	s := make([]string, len(p))
	for i, x := range p {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
