package verify_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/bootlog"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

// firmwarePCRs is what the event-log tests quote: every PCR the firmware measures.
var firmwarePCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

func bootCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	c, err := eventlogtest.Certificate(cn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type bootCerts struct{ pk, kek, db *x509.Certificate }

func newBootCerts(t testing.TB) bootCerts {
	return bootCerts{bootCert(t, "omens test PK"), bootCert(t, "omens test KEK"), bootCert(t, "omens test db")}
}

// chain is the boot chain of the test logs: shim, grub, kernel; each digest is the SHA-256
// of the application's name, so a simulator can extend it (tpm.ExtendPCR hashes data).
var chain = [][32]byte{sha256.Sum256([]byte("shim")), sha256.Sum256([]byte("grub")), sha256.Sum256([]byte("kernel"))}

func secureBootLog(c bootCerts, enabled bool) *eventlogtest.Log {
	return eventlogtest.Standard(eventlogtest.SecureBoot{Enabled: enabled, PK: c.pk, KEK: c.kek, DB: []*x509.Certificate{c.db},
		DBX: [][32]byte{sha256.Sum256([]byte("revoked shim"))}, Authority: c.db, Chain: chain})
}

func sha256Bank(l *eventlogtest.Log, pcrs ...int) []verify.PCRBank {
	return []verify.PCRBank{{Alg: tpm2.TPMAlgSHA256, PCRs: l.PCRs(tpm2.TPMAlgSHA256, pcrs...)}}
}

func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func TestReplayEventLogFacts(t *testing.T) {
	c := newBootCerts(t)
	l := secureBootLog(c, true)
	facts, err := verify.ReplayEventLog(l.Bytes(), sha256Bank(l, firmwarePCRs...), verify.EventLogPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	sb := facts.SecureBoot
	if sb == nil || !sb.Enabled {
		t.Fatalf("SecureBoot = %+v, want enabled", sb)
	}
	cert := func(x *x509.Certificate) []verify.Certificate {
		return []verify.Certificate{{SHA256: fingerprint(x), Subject: x.Subject.String()}}
	}
	for _, f := range []struct {
		name      string
		got, want []verify.Certificate
	}{{"PK", sb.PK, cert(c.pk)}, {"KEK", sb.KEK, cert(c.kek)}, {"db", sb.DB, cert(c.db)}, {"authorities", sb.Authorities, cert(c.db)}} {
		if !slices.Equal(f.got, f.want) {
			t.Errorf("%s = %+v, want %+v", f.name, f.got, f.want)
		}
	}
	revoked := sha256.Sum256([]byte("revoked shim"))
	if !slices.Equal(sb.DBX, []string{hex.EncodeToString(revoked[:])}) {
		t.Errorf("DBX = %q", sb.DBX)
	}
	// Each application is named by its event's number in the log, as omens eventlog show
	// numbers them (EventLogEvents, from 1).
	listed := must(verify.EventLogEvents(l.Bytes()))
	var apps []verify.BootApplication
	for _, d := range chain {
		n := 1 + slices.IndexFunc(listed, func(e verify.LogEvent) bool { return e.PCR == 4 && e.Digests["sha256"] == hex.EncodeToString(d[:]) })
		apps = append(apps, verify.BootApplication{Event: n, Digest: hex.EncodeToString(d[:]), Type: "EV_EFI_BOOT_SERVICES_APPLICATION"})
	}
	if !slices.Equal(facts.BootApplications, apps) || apps[0].Event == 0 {
		t.Errorf("BootApplications = %+v, want %+v", facts.BootApplications, apps)
	}
	checkApplicationEvents(t, "secureBootLog", listed, "sha256", facts)
	if !slices.Equal(facts.Banks, []string{"sha1", "sha256"}) || !slices.Equal(facts.Replayed, []string{"sha256"}) || facts.Events != len(l.Events) {
		t.Errorf("Banks %q, Replayed %q, Events %d; want sha1 sha256, sha256, %d", facts.Banks, facts.Replayed, facts.Events, len(l.Events))
	}
	// Secure Boot off: the state is read, and says so.
	off := secureBootLog(c, false)
	facts, err = verify.ReplayEventLog(off.Bytes(), sha256Bank(off, firmwarePCRs...), verify.EventLogPolicy{})
	if err != nil || facts.SecureBoot == nil || facts.SecureBoot.Enabled {
		t.Errorf("Secure Boot off: facts %+v, error %v", facts, err)
	}
	// Both banks, each replayed on its own.
	both := append(sha256Bank(l, firmwarePCRs...), verify.PCRBank{Alg: tpm2.TPMAlgSHA1, PCRs: l.PCRs(tpm2.TPMAlgSHA1, firmwarePCRs...)})
	if facts, err = verify.ReplayEventLog(l.Bytes(), both, verify.EventLogPolicy{}); err != nil || !slices.Equal(facts.Replayed, []string{"sha256", "sha1"}) {
		t.Errorf("two banks: replayed %v, error %v", facts, err)
	}
	// A SHA-384 bank: go-attestation compares Secure Boot data with SHA-1 and SHA-256
	// digests only; the state is read all the same.
	wide := l.Clone()
	wide.Banks = append(wide.Banks, tpm2.TPMAlgSHA384)
	wideBank := []verify.PCRBank{{Alg: tpm2.TPMAlgSHA384, PCRs: wide.PCRs(tpm2.TPMAlgSHA384, firmwarePCRs...)}}
	if facts, err = verify.ReplayEventLog(wide.Bytes(), wideBank, verify.EventLogPolicy{}); err != nil || facts.SecureBoot == nil || !facts.SecureBoot.Enabled || len(facts.SecureBoot.Authorities) != 1 {
		t.Errorf("sha384: facts %+v, error %v", facts, err)
	}
	// Firmware without Secure Boot measures an empty SecureBoot variable: off.
	empty := off.Clone()
	empty.Events[slices.IndexFunc(empty.Events, func(e eventlogtest.Event) bool { return e.Type == bootlog.EvEFIVariableDriverConfig })] = eventlogtest.Variable("SecureBoot", nil)
	if facts, err = verify.ReplayEventLog(empty.Bytes(), sha256Bank(empty, firmwarePCRs...), verify.EventLogPolicy{}); err != nil || facts.SecureBoot == nil || facts.SecureBoot.Enabled {
		t.Errorf("empty SecureBoot variable: facts %+v, error %v", facts, err)
	}
	// grub's kernel command line, in PCR 8, when the quote covers it.
	grub := l.Clone()
	cmdline := "root=/dev/vda2 ro quiet"
	grub.Events = append(grub.Events, eventlogtest.Event{PCR: 8, Type: bootlog.EvIPL, Data: []byte("kernel_cmdline: " + cmdline + "\x00"),
		Digests: map[tpm2.TPMIAlgHash][]byte{tpm2.TPMAlgSHA256: sha([]byte(cmdline)), tpm2.TPMAlgSHA1: sha1d([]byte(cmdline))}})
	if facts, err = verify.ReplayEventLog(grub.Bytes(), sha256Bank(grub, 0, 1, 2, 3, 4, 5, 6, 7, 8), verify.EventLogPolicy{}); err != nil || facts.KernelCmdline != cmdline {
		t.Errorf("kernel command line %q, error %v; want %q", facts.KernelCmdline, err, cmdline)
	}
	if facts, err = verify.ReplayEventLog(grub.Bytes(), sha256Bank(grub, firmwarePCRs...), verify.EventLogPolicy{}); err != nil || facts.KernelCmdline != "" {
		t.Errorf("PCR 8 not quoted: kernel command line %q, error %v; want none", facts.KernelCmdline, err)
	}
	// A quote without PCR 7 proves nothing of Secure Boot.
	if facts, err = verify.ReplayEventLog(l.Bytes(), sha256Bank(l, 0, 2, 4), verify.EventLogPolicy{}); err != nil || facts.SecureBoot != nil || len(facts.BootApplications) != 3 {
		t.Errorf("without PCR 7: facts %+v, error %v", facts, err)
	}
}

func hexd(b []byte) string { return hex.EncodeToString(b) }

// TestReplayEventLogRefusals: every check of the event-log verifier, with its exact error.
func TestReplayEventLogRefusals(t *testing.T) {
	c := newBootCerts(t)
	honest := secureBootLog(c, true)
	quoted := honest.PCRs(tpm2.TPMAlgSHA256, firmwarePCRs...)
	kernel := len(honest.Events) - 3 // the kernel, before the two Exit Boot Services actions
	pcr7Sep := slices.IndexFunc(honest.Events, func(e eventlogtest.Event) bool { return e.PCR == 7 && e.Type == bootlog.EvSeparator })
	dbx := -1 // the last variable of PCR 7
	for i, e := range honest.Events {
		if e.Type == bootlog.EvEFIVariableDriverConfig {
			dbx = i
		}
	}

	type tc struct {
		name string
		log  func() *eventlogtest.Log
		// quote is the quoted PCR values; nil means the honest log's.
		quote func(l *eventlogtest.Log) map[int][]byte
		raw   func([]byte) []byte
		opt   verify.EventLogPolicy
		want  func(l *eventlogtest.Log) string
	}
	own := func(l *eventlogtest.Log) map[int][]byte { return l.PCRs(tpm2.TPMAlgSHA256, firmwarePCRs...) }
	cases := []tc{{
		name: "changed digest",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events[kernel] = eventlogtest.Image(4, bootlog.EvEFIBootServicesApplication, "kernel", sha256.Sum256([]byte("another kernel")))
			return l
		},
		want: func(l *eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_replay: sha256 PCR 4: the log replays to %x, the quote says %x", l.PCRs(tpm2.TPMAlgSHA256, 4)[4], quoted[4])
		},
	}, {
		name: "changed secure boot variable",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			e := l.Events[dbx]
			e.Digests = map[tpm2.TPMIAlgHash][]byte{tpm2.TPMAlgSHA256: sha(e.Data), tpm2.TPMAlgSHA1: sha1d(e.Data)}
			e.Data = eventlogtest.VariableData("dbx", nil) // the revoked shim left out of dbx
			l.Events[dbx] = e
			return l
		},
		want: func(l *eventlogtest.Log) string {
			return fmt.Sprintf(`verify: event_log_variable: PCR 7 event 5, variable "dbx": its data hashes to %x, the digest extended is %x`,
				sha(l.Events[dbx].Data), sha(honest.Events[dbx].Data))
		},
	}, {
		name: "retyped separator",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events[pcr7Sep].Type = 0x00000002 // EV_UNUSED
			return l
		},
		want: func(*eventlogtest.Log) string {
			return "verify: event_log_separator: PCR 7 event 6 measures a separator but is typed EV_UNUSED (a retyped EV_SEPARATOR)"
		},
	}, {
		name: "event retyped as a separator",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events[kernel].Type = bootlog.EvSeparator
			return l
		},
		want: func(*eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_separator: PCR 4 event 5 is typed EV_SEPARATOR but measures %x, not a separator", chain[2])
		},
	}, {
		name: "duplicated separator",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events = append(l.Events, eventlogtest.Separator(4))
			return l
		},
		quote: own,
		want: func(*eventlogtest.Log) string {
			return "verify: event_log_separator: PCR 4 event 6 is a second separator"
		},
	}, {
		name: "missing separator",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events = slices.Delete(l.Events, pcr7Sep, pcr7Sep+1)
			return l
		},
		quote: own,
		want: func(*eventlogtest.Log) string {
			return "verify: event_log_separator: PCR 7 has 6 events and no separator"
		},
	}, {
		name: "events appended",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events = append(l.Events, eventlogtest.Image(4, bootlog.EvEFIBootServicesApplication, "rootkit", sha256.Sum256([]byte("rootkit"))))
			return l
		},
		want: func(l *eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_replay: sha256 PCR 4: the log replays to %x, the quote says %x", l.PCRs(tpm2.TPMAlgSHA256, 4)[4], quoted[4])
		},
	}, {
		name: "truncated in an event",
		log:  honest.Clone,
		raw:  func(b []byte) []byte { return b[:len(b)-10] },
		want: func(*eventlogtest.Log) string {
			return "verify: event_log_parse: event data size (40 bytes) is greater than remaining measurement log (30 bytes)"
		},
	}, {
		name: "truncated by an event",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events = l.Events[:kernel]
			return l
		},
		want: func(l *eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_replay: sha256 PCR 4: the log replays to %x, the quote says %x; sha256 PCR 5: the log replays to %x, the quote says %x",
				l.PCRs(tpm2.TPMAlgSHA256, 4)[4], quoted[4], l.PCRs(tpm2.TPMAlgSHA256, 5)[5], quoted[5])
		},
	}, {
		name: "log of other PCR values",
		log:  func() *eventlogtest.Log { return secureBootLog(c, false) },
		want: func(l *eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_replay: sha256 PCR 7: the log replays to %x, the quote says %x", l.PCRs(tpm2.TPMAlgSHA256, 7)[7], quoted[7])
		},
	}, {
		name: "firmware PCR with no event",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events = slices.DeleteFunc(l.Events, func(e eventlogtest.Event) bool { return e.PCR == 6 })
			return l
		},
		want: func(*eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_replay: sha256 PCR 6: the log replays to %x, the quote says %x", make([]byte, 32), quoted[6])
		},
	}, {
		name: "sha1 only",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Banks = []tpm2.TPMIAlgHash{tpm2.TPMAlgSHA1}
			return l
		},
		want: func(*eventlogtest.Log) string {
			return "verify: event_log_sha1: the log carries only SHA-1 digests (a TPM 1.2 format log); allow SHA-1 logs to accept it"
		},
	}, {
		name: "sha1 only, allowed, against sha256",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Banks = []tpm2.TPMIAlgHash{tpm2.TPMAlgSHA1}
			return l
		},
		opt: verify.EventLogPolicy{AllowSHA1: true},
		want: func(*eventlogtest.Log) string {
			var s string
			for _, p := range firmwarePCRs {
				if s != "" {
					s += "; "
				}
				s += fmt.Sprintf("sha256 PCR %d: an event has no sha256 digest, the quote says %x", p, quoted[p])
			}
			return "verify: event_log_replay: " + s
		},
	}, {
		name:  "no quoted PCR",
		log:   honest.Clone,
		quote: func(*eventlogtest.Log) map[int][]byte { return map[int][]byte{} },
		want: func(*eventlogtest.Log) string {
			return "verify: event_log_replay: bank sha256: no quoted PCR value to replay the log against"
		},
	}, {
		name: "empty",
		log:  honest.Clone,
		raw:  func([]byte) []byte { return nil },
		want: func(*eventlogtest.Log) string { return "verify: event_log_parse: the log is empty" },
	}, {
		name: "too large",
		log:  honest.Clone,
		raw:  func([]byte) []byte { return make([]byte, verify.MaxEventLogSize+1) },
		want: func(*eventlogtest.Log) string {
			return fmt.Sprintf("verify: event_log_parse: the log is %d bytes, over the limit of %d", verify.MaxEventLogSize+1, verify.MaxEventLogSize)
		},
	}, {
		name: "secure boot variable after the separator",
		log: func() *eventlogtest.Log {
			l := honest.Clone()
			l.Events = append(l.Events, eventlogtest.Variable("dbt", nil))
			return l
		},
		quote: own,
		want: func(*eventlogtest.Log) string {
			return `verify: event_log_secure_boot: event 24: variable "dbt" specified after separator`
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.log()
			b := l.Bytes()
			if tc.raw != nil {
				b = tc.raw(b)
			}
			q := quoted
			if tc.quote != nil {
				q = tc.quote(l)
			}
			_, err := verify.ReplayEventLog(b, []verify.PCRBank{{Alg: tpm2.TPMAlgSHA256, PCRs: q}}, tc.opt)
			want := tc.want(l)
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v\nwant    %s", err, want)
			}
			var ce *verify.CheckError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *verify.CheckError", err)
			}
		})
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func sha1d(b []byte) []byte { s := sha1.Sum(b); return s[:] }

// TestAttestEventLog runs whole attestations on the simulator, whose PCRs are extended
// with the events of a log, under each event-log mode.
func TestAttestEventLog(t *testing.T) {
	now := time.Now()
	ca := must(mfgca.NewEphemeral("omens attest event log"))
	sim, err := openSimulator()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	l := secureBootLog(newBootCerts(t), true)
	for _, e := range l.Events {
		if err := tpm.ExtendPCR(sim, e.PCR, e.Data); err != nil {
			t.Fatal(err)
		}
	}
	tampered := l.Clone()
	tampered.Events = append(tampered.Events, eventlogtest.Image(4, bootlog.EvEFIBootServicesApplication, "rootkit", sha256.Sum256([]byte("rootkit"))))
	p, err := testattest.New(sim, testattest.Config{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tc := range []struct {
		name, mode string
		log        []byte
		want       string // "" for an accepted attestation
		boot       bool   // Result.Boot is set
	}{
		{name: "ignored", mode: "", log: tampered.Bytes()},
		{name: "verified", mode: verify.EventLogVerify, log: l.Bytes(), boot: true},
		{name: "required", mode: verify.EventLogRequire, log: l.Bytes(), boot: true},
		{name: "no log, verify", mode: verify.EventLogVerify},
		{name: "no log, require", mode: verify.EventLogRequire, want: "verify: event_log_missing: the evidence carries no boot event log, which this verifier requires"},
		{name: "tampered", mode: verify.EventLogVerify, log: tampered.Bytes(),
			want: fmt.Sprintf("verify: event_log_replay: sha256 PCR 4: the log replays to %x, the quote says %x", tampered.PCRs(tpm2.TPMAlgSHA256, 4)[4], l.PCRs(tpm2.TPMAlgSHA256, 4)[4])},
		{name: "unknown mode", mode: "always", log: l.Bytes(), want: `verify: event log mode "always" is not one of "ignore", "verify", "require"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &verify.Verifier{EK: verify.EKPolicy{Bundle: p.Bundle()}, PCRBank: tpm2.TPMAlgSHA256, PCRs: attestPCRs,
				Now: func() time.Time { return now }, EventLog: verify.EventLogPolicy{Mode: tc.mode}}
			s, ch, err := v.Begin(must(p.Hello(testattest.HelloOptions{})))
			if err != nil {
				t.Fatal(err)
			}
			ev := must(p.Evidence(ch, testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.EventLog = tc.log }}))
			res, err := s.Finish(ev)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error = %v\nwant    %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (res.Boot != nil) != tc.boot {
				t.Fatalf("Boot = %+v, want set: %v", res.Boot, tc.boot)
			}
			if tc.boot && (res.Boot.SecureBoot == nil || !res.Boot.SecureBoot.Enabled || len(res.Boot.BootApplications) != 3) {
				t.Errorf("Boot = %+v, want Secure Boot on and three boot applications", res.Boot)
			}
		})
	}
}

// FuzzReplayEventLog feeds the event-log verifier logs and the PCR values they replay to:
// it must refuse or accept, never panic, and accept only a log that replays.
func FuzzReplayEventLog(f *testing.F) {
	c := newBootCerts(f)
	f.Add(secureBootLog(c, true).Bytes())
	f.Add(secureBootLog(c, false).Bytes())
	if rw := realworld.Lookup(); rw != "" {
		logs, _ := filepath.Glob(filepath.Join(rw, "eventlogs", "*.bin"))
		for _, name := range logs {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, log []byte) {
		banks, err := verify.EventLogPCRs(log)
		if err != nil {
			if verify.FailedCheck(err) != verify.CheckEventLogParse {
				t.Fatalf("EventLogPCRs: %v, not an event_log_parse rejection", err)
			}
			return
		}
		if _, err := verify.EventLogEvents(log); err != nil {
			t.Fatalf("EventLogEvents refuses a log EventLogPCRs parsed: %v", err)
		}
		for _, bank := range banks {
			_, err := verify.ReplayEventLog(log, []verify.PCRBank{bank}, verify.EventLogPolicy{AllowSHA1: true})
			if err != nil && verify.FailedCheck(err) == "" {
				t.Fatalf("ReplayEventLog: %v is not a rejection", err)
			}
			// Any other value of a PCR the log has events for must not replay.
			for p, v := range bank.PCRs {
				other := maps.Clone(bank.PCRs)
				other[p] = slices.Clone(v)
				other[p][0] ^= 1
				if _, err := verify.ReplayEventLog(log, []verify.PCRBank{{Alg: bank.Alg, PCRs: other}}, verify.EventLogPolicy{AllowSHA1: true}); err == nil {
					t.Fatalf("%s PCR %d changed, the log still replays", tpmrulesName(bank.Alg), p)
				}
				break
			}
		}
	})
}

func tpmrulesName(alg tpm2.TPMIAlgHash) string { return fmt.Sprintf("alg 0x%04X", uint16(alg)) }
