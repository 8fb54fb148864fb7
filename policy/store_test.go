package policy_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"omens.dev/omens/policy"
)

// t0 is when the tests' hosts boot.
var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// fleetPolicy has a group with two sets (a fleet rolling from firmware 1.0 to 1.1), a host
// in it, a host with a set of its own, and a host with neither.
const fleetPolicy = `
unknown_hosts = "%s"

group "tower" {
  set "firmware-1.0" {
    pcrs = { "0" = "{fw10-0}", "2" = "{fw10-2}", "4" = "{boot-4}", "7" = "{sb-7}" }
  }
  set "firmware-1.1" {
    bank = "sha256"
    pcrs = { "0" = "{fw11-0}", "2" = "{fw11-2}", "4" = "{boot-4}", "7" = "{sb-7}" }
  }
}

host "{ek:spire}" {
  name  = "spire"
  group = "tower"
}

host "{ek:auth}" {
  name  = "auth"
  group = "tower"
  set "lab" {
    pcrs = { "0" = "{lab-0}", "7" = "{sb-7}" }
  }
}

host "{ek:ca}" {
  name = "ca"
}
`

// pcrs builds presented PCR values from index=label pairs, e.g. pcrs("0=fw10-0", "7=sb-7").
func pcrs(pairs ...string) map[int][]byte {
	out := map[int][]byte{}
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		i, err := strconv.Atoi(k)
		if err != nil {
			panic(p)
		}
		out[i] = digest(v)
	}
	return out
}

var (
	fw10  = pcrs("0=fw10-0", "2=fw10-2", "4=boot-4", "7=sb-7")
	fw11  = pcrs("0=fw11-0", "2=fw11-2", "4=boot-4", "7=sb-7")
	fw12  = pcrs("0=fw12-0", "2=fw12-2", "4=boot-4", "7=sb-7")
	fw13  = pcrs("0=fw13-0", "2=fw13-2", "4=boot-4", "7=sb-7")
	lab   = pcrs("0=lab-0", "7=sb-7")
	fw10x = pcrs("0=fw10-0", "1=config", "2=fw10-2", "4=boot-4", "7=sb-7", "10=ima")
)

// writePolicy writes a policy file (placeholders expanded) and returns its path.
func writePolicy(t *testing.T, dir, src string) string {
	t.Helper()
	path := filepath.Join(dir, "pcr-policy.hcl")
	if err := os.WriteFile(path, []byte(expand(src)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// openFleet opens a store on fleetPolicy in a new directory.
func openFleet(t *testing.T, unknownHosts string) (*policy.Store, string) {
	t.Helper()
	path := writePolicy(t, t.TempDir(), fmt.Sprintf(fleetPolicy, unknownHosts))
	s, err := policy.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// check compares a decision and an error with the expected ones.
func check(t *testing.T, what string, dec policy.Decision, err error, want policy.Decision, wantErr string) {
	t.Helper()
	got := ""
	if err != nil {
		got = err.Error()
	}
	if got != wantErr {
		t.Fatalf("%s: error:\n got: %s\nwant: %s", what, got, wantErr)
	}
	if dec != want {
		t.Fatalf("%s: decision %+v, want %+v", what, dec, want)
	}
	if err != nil && wantErr != "" && dec.Allowed {
		t.Fatalf("%s: allowed with an error", what)
	}
}

func TestEvaluatePolicy(t *testing.T) {
	spire, auth, ca, stranger := ekHash("spire"), ekHash("auth"), ekHash("ca"), ekHash("stranger")
	for _, tc := range []struct {
		name     string
		unknown  string // unknown_hosts
		ek, bank string
		pcrs     map[int][]byte
		want     policy.Decision
		err      string
		rejected bool // err matches policy.ErrRejected
	}{
		{
			name: "allowed by group set",
			ek:   spire, bank: "sha256", pcrs: fw10,
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"},
		},
		{
			name: "allowed by the second set of a rolling update",
			ek:   spire, bank: "sha256", pcrs: fw11,
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.1"},
		},
		{
			name: "PCRs the set does not name are not looked at",
			ek:   spire, bank: "sha256", pcrs: fw10x,
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"},
		},
		{
			name: "host set before group sets",
			ek:   auth, bank: "sha256", pcrs: lab,
			want: policy.Decision{Allowed: true, Policy: "host", Set: "host/lab"},
		},
		{
			name: "host in a group also gets the group's sets",
			ek:   auth, bank: "sha256", pcrs: fw11,
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.1"},
		},
		{
			name: "EK hash in upper case",
			ek:   strings.ToUpper(spire), bank: "sha256", pcrs: fw10,
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"},
		},
		{
			name: "rejected: one PCR differs",
			ek:   spire, bank: "sha256", pcrs: pcrs("0=fw10-0", "2=fw10-2", "4=grub-evil", "7=sb-7"),
			err:      "policy: host " + spire + " (spire) PCR 4 is " + hexOf("grub-evil") + ", allowed set tower/firmware-1.0 wants " + hexOf("boot-4"),
			rejected: true,
		},
		{
			name: "rejected: nearest set named, with how many PCRs differ",
			ek:   spire, bank: "sha256", pcrs: pcrs("0=fw11-0", "2=fw12-2", "4=boot-4", "7=sb-off"),
			err:      "policy: host " + spire + " (spire) PCR 2 is " + hexOf("fw12-2") + ", allowed set tower/firmware-1.1 wants " + hexOf("fw11-2") + " (2 of its 4 PCRs differ: 2, 7)",
			rejected: true,
		},
		{
			name: "rejected: PCR missing",
			ek:   spire, bank: "sha256", pcrs: pcrs("0=fw10-0", "2=fw10-2", "4=boot-4"),
			err:      "policy: host " + spire + " (spire) PCR 7 was not presented, allowed set tower/firmware-1.0 wants " + hexOf("sb-7"),
			rejected: true,
		},
		{
			name: "rejected: other bank",
			ek:   spire, bank: "sha1", pcrs: map[int][]byte{0: make([]byte, 20)},
			err:      "policy: host " + spire + " (spire) presented PCR bank sha1, its allowed sets are in sha256",
			rejected: true,
		},
		{
			name: "rejected: host without sets",
			ek:   ca, bank: "sha256", pcrs: fw10,
			err:      "policy: host " + ca + " (ca) has no allowed PCR sets: give it a group or a set, or open a window (omens pcr allow-next --host " + ca + ") to pin its next boot state",
			rejected: true,
		},
		{
			name: "unknown host, unknown_hosts = reject",
			ek:   stranger, bank: "sha256", pcrs: fw10,
			err:      "policy: host " + stranger + ` is not in the policy file and unknown_hosts = "reject": add a host block for it`,
			rejected: true,
		},
		{
			name:    "unknown host, unknown_hosts = group",
			unknown: "tower",
			ek:      stranger, bank: "sha256", pcrs: fw11,
			want: policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.1"},
		},
		{
			name:    "unknown host rejected by the unknown_hosts group",
			unknown: "tower",
			ek:      stranger, bank: "sha256", pcrs: pcrs("0=fw10-0", "2=fw10-2", "4=boot-4", "7=sb-off"),
			err:      "policy: host " + stranger + " PCR 7 is " + hexOf("sb-off") + ", allowed set tower/firmware-1.0 wants " + hexOf("sb-7"),
			rejected: true,
		},
		{
			name: "bad EK hash",
			ek:   "spire", bank: "sha256", pcrs: fw10,
			err: `policy: EK hash "spire": want 64 hex digits`,
		},
		{
			name: "no PCR values",
			ek:   spire, bank: "sha256", pcrs: nil,
			err: "policy: host " + spire + " presented no PCR values",
		},
		{
			name: "PCR index out of range",
			ek:   spire, bank: "sha256", pcrs: pcrs("24=x"),
			err: "policy: host " + spire + " presented PCR 24: want an index 0-23",
		},
		{
			name: "digest size does not fit the bank",
			ek:   spire, bank: "sha384", pcrs: fw10,
			err: "policy: host " + spire + " presented PCR 0 is 32 bytes, a sha384 digest is 48",
		},
		{
			name: "unknown bank",
			ek:   spire, bank: "md5", pcrs: fw10,
			err: "policy: host " + spire + ` presented bank "md5": want sha1, sha256 or sha384`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unknown := tc.unknown
			if unknown == "" {
				unknown = "reject"
			}
			s, _ := openFleet(t, unknown)
			dec, err := s.Evaluate(tc.ek, tc.bank, tc.pcrs, t0)
			check(t, "Evaluate", dec, err, tc.want, tc.err)
			if got := errors.Is(err, policy.ErrRejected); got != tc.rejected {
				t.Fatalf("errors.Is(err, ErrRejected) = %v, want %v", got, tc.rejected)
			}
		})
	}
}

// hostReport returns the report of host ek.
func hostReport(t *testing.T, s *policy.Store, ek string, now time.Time) policy.HostReport {
	t.Helper()
	r, err := s.Report(now)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range r.Hosts {
		if h.EKHash == ek {
			return h
		}
	}
	t.Fatalf("host %s is not in the report", ek)
	return policy.HostReport{}
}

func TestEvaluateRecordsLastPresented(t *testing.T) {
	s, _ := openFleet(t, "reject")
	spire, stranger := ekHash("spire"), ekHash("stranger")
	if _, err := s.Evaluate(spire, "sha256", fw11, t0); err != nil {
		t.Fatal(err)
	}
	_, rejectErr := s.Evaluate(stranger, "sha256", fw10, t0.Add(time.Minute))
	if rejectErr == nil {
		t.Fatal("stranger allowed")
	}
	last := hostReport(t, s, spire, t0).Last
	if last == nil || !last.Time.Equal(t0) || last.Bank != "sha256" || last.Result != "allowed" || last.Policy != "tower" ||
		last.Set != "tower/firmware-1.1" || last.PCRs["0"] != hexOf("fw11-0") || len(last.PCRs) != 4 || last.Error != "" {
		t.Fatalf("spire last presented: %+v", last)
	}
	// A host the file does not list is recorded too, so the operator sees who knocked.
	h := hostReport(t, s, stranger, t0)
	if h.InPolicy || h.Last == nil || h.Last.Result != "rejected" || h.Last.Error != rejectErr.Error() {
		t.Fatalf("stranger: %+v", h)
	}
}

func TestWindowPinsFirstNewState(t *testing.T) {
	s, path := openFleet(t, "reject")
	spire := ekHash("spire")
	if err := s.AllowNext("spire", 2*time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	w := hostReport(t, s, spire, t0).Window
	if w == nil || !w.Open || !w.Opened.Equal(t0) || !w.Until.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("window: %+v", w)
	}

	// A boot state the policy already allows leaves the window open.
	dec, err := s.Evaluate(spire, "sha256", fw10, t0.Add(10*time.Minute))
	check(t, "known state in window", dec, err, policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"}, "")
	if hostReport(t, s, spire, t0).Window == nil {
		t.Fatal("window closed by a known boot state")
	}

	// The first new state is pinned and closes the window.
	pinAt := t0.Add(20 * time.Minute)
	dec, err = s.Evaluate(spire, "sha256", fw12, pinAt)
	check(t, "new state in window", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:20:00Z", Pinned: true}, "")
	h := hostReport(t, s, spire, pinAt)
	if h.Window != nil {
		t.Fatalf("window still there after the pin: %+v", h.Window)
	}
	if len(h.Pins) != 1 || h.Pins[0].Name != "pinned/2026-11-29T10:20:00Z" || h.Pins[0].Bank != "sha256" ||
		len(h.Pins[0].PCRs) != 4 || h.Pins[0].PCRs["2"] != hexOf("fw12-2") || !h.Pins[0].PinnedAt.Equal(pinAt) {
		t.Fatalf("pins: %+v", h.Pins)
	}
	if h.Last.Result != "pinned" || h.Last.Set != "pinned/2026-11-29T10:20:00Z" {
		t.Fatalf("last presented: %+v", h.Last)
	}

	// A second, different state is rejected: the window is closed.
	dec, err = s.Evaluate(spire, "sha256", fw13, t0.Add(30*time.Minute))
	check(t, "second new state", dec, err, policy.Decision{},
		"policy: host "+spire+" (spire) PCR 0 is "+hexOf("fw13-0")+", allowed set tower/firmware-1.0 wants "+hexOf("fw10-0")+" (2 of its 4 PCRs differ: 0, 2)")

	// The pinned state stays allowed, also for a new Store (a restarted SPIRE server).
	s2, err := policy.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	dec, err = s2.Evaluate(spire, "sha256", fw12, t0.Add(40*time.Minute))
	check(t, "pinned state after restart", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:20:00Z"}, "")
}

func TestWindowPinsPresentedPCRsForHostWithoutSets(t *testing.T) {
	s, _ := openFleet(t, "reject")
	ca := ekHash("ca")
	if err := s.AllowNext(ca, time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	// A host without sets gets a pin over PCRs 0, 2, 4 and 7, not over PCR 1 and 10.
	dec, err := s.Evaluate(ca, "sha256", fw10x, t0.Add(time.Minute))
	check(t, "first boot", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:01:00Z", Pinned: true}, "")
	if pins := hostReport(t, s, ca, t0).Pins; len(pins) != 1 || len(pins[0].PCRs) != 4 || pins[0].PCRs["10"] != "" {
		t.Fatalf("pins: %+v", pins)
	}
	// PCR 10 (the IMA log) may change at every boot without leaving the pinned set.
	again := pcrs("0=fw10-0", "1=config", "2=fw10-2", "4=boot-4", "7=sb-7", "10=ima-2")
	dec, err = s.Evaluate(ca, "sha256", again, t0.Add(time.Hour*5))
	check(t, "next boot", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:01:00Z"}, "")
}

func TestWindowExpired(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration // since the window opened
	}{
		{"at the end", time.Hour},
		{"after the end", 3 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openFleet(t, "reject")
			spire := ekHash("spire")
			if err := s.AllowNext(spire, time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			if w := hostReport(t, s, spire, t0.Add(tc.after)).Window; w == nil || w.Open {
				t.Fatalf("window in the report: %+v, want expired", w)
			}
			dec, err := s.Evaluate(spire, "sha256", fw12, t0.Add(tc.after))
			check(t, "new state after the window", dec, err, policy.Decision{},
				"policy: host "+spire+" (spire) PCR 0 is "+hexOf("fw12-0")+", allowed set tower/firmware-1.0 wants "+hexOf("fw10-0")+" (2 of its 4 PCRs differ: 0, 2)")
			h := hostReport(t, s, spire, t0.Add(tc.after))
			if h.Window != nil || len(h.Pins) != 0 {
				t.Fatalf("after an expired window: window %+v, pins %+v", h.Window, h.Pins)
			}
		})
	}
}

func TestAllowNextErrors(t *testing.T) {
	stranger := ekHash("stranger")
	for _, tc := range []struct {
		name, unknown, host string
		d                   time.Duration
		err                 string
		ek                  string // the host that gets the window when err is ""
	}{
		{name: "by name", unknown: "reject", host: "auth", d: time.Hour, ek: ekHash("auth")},
		{name: "by EK hash in upper case", unknown: "reject", host: strings.ToUpper(ekHash("ca")), d: time.Hour, ek: ekHash("ca")},
		{name: "unknown host, unknown_hosts = group", unknown: "tower", host: stranger, d: time.Hour, ek: stranger},
		{
			name: "unknown name", unknown: "reject", host: "spire2", d: time.Hour,
			err: `policy: no host is named "spire2" in the policy file: give the EK hash (64 hex digits) or the name label of a host block`,
		},
		{
			name: "zero length", unknown: "reject", host: "spire", d: 0,
			err: `policy: window length 0s: want a positive duration such as 2h`,
		},
		{
			name: "unknown host, unknown_hosts = reject", unknown: "reject", host: stranger, d: time.Hour,
			err: "policy: host " + stranger + ` is not in the policy file and unknown_hosts = "reject", so a window would not let it in: add a host "` + stranger + `" block to POLICY (its group or sets may stay empty), then open the window`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openFleet(t, tc.unknown)
			err := s.AllowNext(tc.host, tc.d, t0)
			want := strings.ReplaceAll(tc.err, "POLICY", path)
			if got := fmt.Sprint(err); err == nil && want != "" || err != nil && got != want {
				t.Fatalf("error:\n got: %v\nwant: %s", err, want)
			}
			if tc.ek != "" {
				if w := hostReport(t, s, tc.ek, t0).Window; w == nil || !w.Open {
					t.Fatalf("window for %s: %+v", tc.ek, w)
				}
			}
		})
	}
}

func TestUnknownHostWindowPins(t *testing.T) {
	s, _ := openFleet(t, "tower")
	stranger := ekHash("stranger")
	if err := s.AllowNext(stranger, time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	dec, err := s.Evaluate(stranger, "sha256", fw12, t0.Add(time.Minute))
	check(t, "new state", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:01:00Z", Pinned: true}, "")
	dec, err = s.Evaluate(stranger, "sha256", fw12, t0.Add(time.Hour*2))
	check(t, "pinned state", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:01:00Z"}, "")
}

func TestPolicyEditedOnDisk(t *testing.T) {
	s, path := openFleet(t, "reject")
	spire := ekHash("spire")
	rejected := "policy: host " + spire + " (spire) PCR 0 is " + hexOf("fw12-0") + ", allowed set tower/firmware-1.0 wants " + hexOf("fw10-0") + " (2 of its 4 PCRs differ: 0, 2)"
	dec, err := s.Evaluate(spire, "sha256", fw12, t0)
	check(t, "before the edit", dec, err, policy.Decision{}, rejected)

	// The operator rolls the fleet on: firmware 1.0 becomes 1.2, in place. The file keeps
	// its size, so only the modification time tells; it is set a second later, as a
	// coarse file system clock would show an edit made by hand.
	edit := func(from, to string) {
		t.Helper()
		old, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(old), from, to)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, fi.ModTime().Add(time.Second), fi.ModTime().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	edit(hexOf("fw10-0"), hexOf("fw12-0"))
	edit(hexOf("fw10-2"), hexOf("fw12-2"))
	dec, err = s.Evaluate(spire, "sha256", fw12, t0.Add(time.Minute))
	check(t, "after the edit", dec, err, policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"}, "")

	// A broken edit rejects everything (fail closed) and says where the file is wrong.
	edit(`group = "tower"`, `group = "towr"`)
	dec, err = s.Evaluate(spire, "sha256", fw12, t0.Add(2*time.Minute))
	check(t, "broken edit", dec, err, policy.Decision{}, "policy: "+path+`:16: host `+spire+`: unknown group "towr"`)
	if errors.Is(err, policy.ErrRejected) {
		t.Fatal("a broken policy file is reported as a rejection of the host")
	}
	edit(`group = "towr"`, `group = "tower"`)
	dec, err = s.Evaluate(spire, "sha256", fw12, t0.Add(3*time.Minute))
	check(t, "fixed edit", dec, err, policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"}, "")

	// An editor that writes a new file and renames it over the old one.
	src := strings.ReplaceAll(expand(fmt.Sprintf(fleetPolicy, "reject")), `name  = "spire"`, `name  = "spire-1"`)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if _, name, err := s.ResolveHost(spire); err != nil || name != "spire-1" {
		t.Fatalf("after rename: name %q, error %v", name, err)
	}
}

func TestCorruptStateFile(t *testing.T) {
	s, path := openFleet(t, "reject")
	spire := ekHash("spire")
	if err := s.AllowNext(spire, time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Evaluate(spire, "sha256", fw12, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	state := policy.DefaultStatePath(path)
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data, err string
	}{
		{"not JSON", "{\"version\": 1, \"hosts\": {", "unexpected EOF"},
		{"truncated to nothing", "", "EOF"},
		{"other version", `{"version": 2, "hosts": {}}`, "version 2, want 1"},
		{"unknown field", `{"version": 1, "hosts": {}, "pins": []}`, `json: unknown field "pins"`},
		{"bad pin", strings.Replace(string(good), hexOf("fw12-0"), "zz", 1), `PCR 0 = "zz": not hex`},
		{"short pin digest", strings.Replace(string(good), hexOf("fw12-0"), "abcd", 1), `host ` + spire + `: pin 2026-11-29T10:01:00Z: PCR 0 is 2 bytes, a sha256 digest is 32`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(state, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			want := "policy: state file " + state + " is corrupt: " + tc.err + " (fix or move it away; it holds pins)"
			if _, err := policy.Open(path, ""); err == nil || err.Error() != want {
				t.Fatalf("Open: error:\n got: %v\nwant: %s", err, want)
			}
			dec, err := s.Evaluate(spire, "sha256", fw12, t0.Add(2*time.Minute))
			check(t, "Evaluate", dec, err, policy.Decision{}, want)
			if err := s.AllowNext(spire, time.Hour, t0); err == nil || err.Error() != want {
				t.Fatalf("AllowNext: error:\n got: %v\nwant: %s", err, want)
			}
			// The file is left as it was, for the operator to repair.
			if now, _ := os.ReadFile(state); string(now) != tc.data {
				t.Fatalf("state file changed to %q", now)
			}
		})
	}
}

func TestStateFileElsewhere(t *testing.T) {
	dir := t.TempDir()
	path := writePolicy(t, dir, fmt.Sprintf(fleetPolicy, "reject"))
	state := filepath.Join(dir, "var", "state.json")
	if err := os.Mkdir(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := policy.Open(path, state)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AllowNext("spire", time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(policy.DefaultStatePath(path)); !os.IsNotExist(err) {
		t.Fatalf("default state file written: %v", err)
	}
}

// manyHosts is how many windows each writer opens in the concurrency tests.
const manyHosts = 20

// openWindows opens windows for hosts "<prefix>-0" ... on s.
func openWindows(s *policy.Store, prefix string) error {
	for i := range manyHosts {
		if err := s.AllowNext(ekHash(prefix+"-"+strconv.Itoa(i)), time.Hour, t0); err != nil {
			return err
		}
	}
	return nil
}

// countWindows checks that every writer's windows are in the state file.
func countWindows(t *testing.T, s *policy.Store, prefixes ...string) {
	t.Helper()
	r, err := s.Report(t0)
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]bool{}
	for _, h := range r.Hosts {
		if h.Window != nil && h.Window.Open {
			open[h.EKHash] = true
		}
	}
	for _, p := range prefixes {
		for i := range manyHosts {
			if !open[ekHash(p+"-"+strconv.Itoa(i))] {
				t.Errorf("window of host %s-%d was lost", p, i)
			}
		}
	}
	if len(open) != len(prefixes)*manyHosts {
		t.Errorf("%d windows, want %d", len(open), len(prefixes)*manyHosts)
	}
}

func TestConcurrentAllowNext(t *testing.T) {
	_, path := openFleet(t, "tower")
	prefixes := []string{"a", "b", "c", "d"}
	stores := make([]*policy.Store, 2)
	for i := range stores {
		var err error
		if stores[i], err = policy.Open(path, ""); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(prefixes))
	for i, p := range prefixes {
		wg.Go(func() { errs[i] = openWindows(stores[i%2], p) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	countWindows(t, stores[0], prefixes...)
}

// TestConcurrentAllowNextProcesses runs writers in other processes (this test binary,
// started again as a helper) while this process writes too.
func TestConcurrentAllowNextProcesses(t *testing.T) {
	if p := os.Getenv("OMENS_POLICY_WRITER"); p != "" {
		s, err := policy.Open(os.Getenv("OMENS_POLICY_FILE"), "")
		if err == nil {
			err = openWindows(s, p)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	s, path := openFleet(t, "tower")
	var cmds []*exec.Cmd
	for _, p := range []string{"p1", "p2"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentAllowNextProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), "OMENS_POLICY_WRITER="+p, "OMENS_POLICY_FILE="+path)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	if err := openWindows(s, "self"); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process: %v", err)
		}
	}
	countWindows(t, s, "self", "p1", "p2")
}

func TestReport(t *testing.T) {
	s, path := openFleet(t, "reject")
	spire := ekHash("spire")
	if err := s.AllowNext("ca", time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Evaluate(spire, "sha256", fw10, t0); err != nil {
		t.Fatal(err)
	}
	r, err := s.Report(t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.PolicyFile != path || r.StateFile != path+".state.json" || r.UnknownHosts != "reject" {
		t.Fatalf("report header: %+v", r)
	}
	if len(r.Groups) != 1 || len(r.Groups[0].Sets) != 2 || r.Groups[0].Sets[1].Name != "tower/firmware-1.1" || r.Groups[0].Sets[1].PCRs["0"] != hexOf("fw11-0") {
		t.Fatalf("groups: %+v", r.Groups)
	}
	var names []string
	for _, h := range r.Hosts {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "spire,auth,ca" {
		t.Fatalf("hosts %v, want spire,auth,ca", names)
	}
	if r.Hosts[1].Sets[0].Name != "host/lab" || r.Hosts[2].Window == nil || r.Hosts[0].Last.Set != "tower/firmware-1.0" {
		t.Fatalf("hosts: %+v", r.Hosts)
	}
}

// TestStateChangedByAnotherStore: a Store that has read the state sees what another Store
// (another process: the CLI's allow-next) wrote since, and the state it records is not
// shared with what it hands out.
func TestStateChangedByAnotherStore(t *testing.T) {
	s, path := openFleet(t, "reject")
	spire := ekHash("spire")
	dec, err := s.Evaluate(spire, "sha256", fw10, t0)
	check(t, "first boot", dec, err, policy.Decision{Allowed: true, Policy: "tower", Set: "tower/firmware-1.0"}, "")
	dec, err = s.Evaluate(spire, "sha256", fw13, t0.Add(time.Minute))
	check(t, "new firmware without a window", dec, err, policy.Decision{}, "policy: host "+spire+" (spire) PCR 0 is "+hexOf("fw13-0")+", allowed set tower/firmware-1.0 wants "+hexOf("fw10-0")+" (2 of its 4 PCRs differ: 0, 2)")
	other, err := policy.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.AllowNext("spire", time.Hour, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	dec, err = s.Evaluate(spire, "sha256", fw13, t0.Add(3*time.Minute))
	check(t, "new firmware in the window the other store opened", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:03:00Z", Pinned: true}, "")
	dec, err = s.Evaluate(spire, "sha256", fw13, t0.Add(4*time.Minute))
	check(t, "the pinned firmware", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:03:00Z"}, "")
	if pins := hostReport(t, other, spire, t0).Pins; len(pins) != 1 {
		t.Fatalf("the other store reads pins %+v, want the one pinned", pins)
	}
}
