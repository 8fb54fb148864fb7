package cli_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/test/eventlogtest"
	"omens.dev/omens/tpm/tpmsim/bootlog"
)

func eventLogCert(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	c, err := eventlogtest.Certificate(cn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventLogFiles writes a Secure Boot log and returns its path with the log.
func eventLogFiles(t *testing.T) (string, *eventlogtest.Log) {
	t.Helper()
	db := eventLogCert(t, "omens cli db")
	l := eventlogtest.Standard(eventlogtest.SecureBoot{Enabled: true, PK: eventLogCert(t, "omens cli PK"), KEK: eventLogCert(t, "omens cli KEK"),
		DB: []*x509.Certificate{db}, Authority: db, DBX: [][32]byte{sha256.Sum256([]byte("revoked"))},
		Chain: [][32]byte{sha256.Sum256([]byte("shim")), sha256.Sum256([]byte("grub")), sha256.Sum256([]byte("kernel"))}})
	path := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(path, l.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, l
}

// pcrFile writes PCR values in the form of `omens pcr read --json`: one bank, or an array
// when several are given.
func pcrFile(t *testing.T, banks ...cli.PCRValues) string {
	t.Helper()
	var v any = banks
	if len(banks) == 1 {
		v = banks[0]
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pcrs.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func bankValues(name string, vals map[int][]byte) cli.PCRValues {
	v := cli.PCRValues{Bank: name, PCRs: map[string]string{}}
	for p, d := range vals {
		v.PCRs[strconv.Itoa(p)] = hex.EncodeToString(d)
	}
	return v
}

func TestEventLogShow(t *testing.T) {
	path, l := eventLogFiles(t)
	var out struct {
		Banks      []string `json:"banks"`
		Events     []any    `json:"events"`
		SecureBoot struct {
			Enabled bool `json:"enabled"`
			PK      []struct {
				SHA256 string `json:"sha256"`
			} `json:"pk"`
			DBX []string `json:"dbx"`
		} `json:"secure_boot"`
		BootChain []struct {
			Digest string `json:"digest"`
		} `json:"boot_chain"`
		Check string `json:"check"`
	}
	omensJSON(t, 0, &out, "eventlog", "show", "--log", path, "--json")
	kernel := sha256.Sum256([]byte("kernel"))
	if !out.SecureBoot.Enabled || len(out.SecureBoot.PK) != 1 || len(out.SecureBoot.DBX) != 1 || out.Check != "ok" {
		t.Errorf("secure boot %+v, check %q; want enabled, one PK, one dbx entry, ok", out.SecureBoot, out.Check)
	}
	if len(out.BootChain) != 3 || out.BootChain[2].Digest != hex.EncodeToString(kernel[:]) {
		t.Errorf("boot chain %+v, want shim, grub, kernel", out.BootChain)
	}
	if len(out.Events) != len(l.Events) || strings.Join(out.Banks, ",") != "sha1,sha256" {
		t.Errorf("%d events in banks %q, want %d in sha1,sha256", len(out.Events), out.Banks, len(l.Events))
	}
	code, stdout, stderr := omens(t, "eventlog", "show", "--log", path)
	if code != 0 || !strings.Contains(stdout, "secure boot: enabled\n") || !strings.Contains(stdout, hex.EncodeToString(kernel[:])+"  EV_EFI_BOOT_SERVICES_APPLICATION") {
		t.Errorf("eventlog show: exit %d\n%s%s", code, stdout, stderr)
	}
	// Secure Boot off: the top-level boolean says so.
	off := eventlogtest.Standard(eventlogtest.SecureBoot{})
	offPath := filepath.Join(t.TempDir(), "off")
	if err := os.WriteFile(offPath, off.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var offOut struct {
		SecureBoot map[string]any `json:"secure_boot"`
	}
	omensJSON(t, 0, &offOut, "eventlog", "show", "--log", offPath, "--json")
	if offOut.SecureBoot["enabled"] != false {
		t.Errorf("secure_boot = %v, want enabled false", offOut.SecureBoot)
	}
}

func TestEventLogVerify(t *testing.T) {
	path, l := eventLogFiles(t)
	pcrs := []int{0, 2, 4, 7}
	sha256PCRs := bankValues("sha256", l.PCRs(tpm2.TPMAlgSHA256, pcrs...))
	one := pcrFile(t, sha256PCRs)
	both := pcrFile(t, sha256PCRs, bankValues("sha1", l.PCRs(tpm2.TPMAlgSHA1, pcrs...)))
	code, stdout, stderr := omens(t, "eventlog", "verify", "--log", path, "--pcrs", one)
	if code != 0 || !strings.HasPrefix(stdout, "ok: the log replays to sha256 PCRs 0,2,4,7\nsecure boot: true (1 authorities)\n") {
		t.Errorf("verify one bank: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := omens(t, "eventlog", "verify", "--log", path, "--pcrs", both); code != 0 || !strings.HasPrefix(stdout, "ok: the log replays to sha256 PCRs 0,2,4,7; sha1 PCRs 0,2,4,7\n") {
		t.Errorf("verify two banks: exit %d\n%s%s", code, stdout, stderr)
	}

	// A log with an event appended no longer replays: exit 1, naming the check.
	tampered := l.Clone()
	tampered.Events = append(tampered.Events, eventlogtest.Image(4, bootlog.EvEFIBootServicesApplication, "rootkit", sha256.Sum256([]byte("rootkit"))))
	tpath := filepath.Join(t.TempDir(), "tampered")
	if err := os.WriteFile(tpath, tampered.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("omens: verify: event_log_replay: sha256 PCR 4: the log replays to %x, the quote says %x\n",
		tampered.PCRs(tpm2.TPMAlgSHA256, 4)[4], l.PCRs(tpm2.TPMAlgSHA256, 4)[4])
	if code, stdout, stderr := omens(t, "eventlog", "verify", "--log", tpath, "--pcrs", one); code != 1 || stderr != want {
		t.Errorf("tampered: exit %d, stderr %q\nwant exit 1, %q\n%s", code, stderr, want, stdout)
	}
	var res cli.EventLogVerified
	omensJSON(t, 1, &res, "eventlog", "verify", "--log", tpath, "--pcrs", one, "--json")
	if res.OK || res.Check != "event_log_replay" || res.Error != strings.TrimSuffix(strings.TrimPrefix(want, "omens: "), "\n") {
		t.Errorf("tampered --json: %+v", res)
	}

	// A SHA-1-only log, refused unless allowed.
	sha1Only := l.Clone()
	sha1Only.Banks = []tpm2.TPMIAlgHash{tpm2.TPMAlgSHA1}
	spath := filepath.Join(t.TempDir(), "sha1")
	if err := os.WriteFile(spath, sha1Only.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sha1File := pcrFile(t, bankValues("sha1", sha1Only.PCRs(tpm2.TPMAlgSHA1, pcrs...)))
	if code, _, stderr := omens(t, "eventlog", "verify", "--log", spath, "--pcrs", sha1File); code != 1 || !strings.Contains(stderr, "verify: event_log_sha1: ") {
		t.Errorf("sha1 only: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := omens(t, "eventlog", "verify", "--log", spath, "--pcrs", sha1File, "--allow-sha1"); code != 0 {
		t.Errorf("sha1 only, allowed: exit %d, stderr %q", code, stderr)
	}
}

func TestEventLogErrors(t *testing.T) {
	path, _ := eventLogFiles(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage", "not an event log")
	huge := write("huge", strings.Repeat("\x00", 768<<10+1))
	deep := write("deep", strings.Repeat("[", 9)+strings.Repeat("]", 9))
	for _, tc := range []struct {
		name string
		args []string
		want string // stderr
	}{
		{"show without log", []string{"eventlog", "show"}, "omens: --log FILE is required\n"},
		{"verify without pcrs", []string{"eventlog", "verify", "--log", path}, "omens: --pcrs FILE is required\n"},
		{"log over the cap", []string{"eventlog", "show", "--log", huge},
			"omens: event log: limits: " + huge + " is 786433 bytes, over the 786432-byte limit for a boot event log\n"},
		{"PCR file too deep", []string{"eventlog", "verify", "--log", path, "--pcrs", deep},
			"omens: PCR file: limits: " + deep + ":1: nesting deeper than the 8-level limit for a PCR values file\n"},
		{"not a log", []string{"eventlog", "show", "--log", garbage}, "omens: verify: event_log_parse: parse first event: header deserialization error: unexpected EOF\n"},
		{"unknown bank", []string{"eventlog", "verify", "--log", path, "--pcrs", write("md5", `{"bank":"md5","pcrs":{"0":"00"}}`)},
			`omens: PCR file ` + filepath.Join(dir, "md5") + `: unknown PCR bank "md5" (want sha1, sha256 or sha384)` + "\n"},
		{"short value", []string{"eventlog", "verify", "--log", path, "--pcrs", write("short", `[{"bank":"sha256","pcrs":{"7":"00"}}]`)},
			"omens: PCR file " + filepath.Join(dir, "short") + ": sha256 PCR 7 is not 32 bytes of hex\n"},
		{"bad index", []string{"eventlog", "verify", "--log", path, "--pcrs", write("index", `{"bank":"sha1","pcrs":{"x":"00"}}`)},
			"omens: PCR file " + filepath.Join(dir, "index") + `: PCR index "x" is not from 0 to 23` + "\n"},
		{"no bank", []string{"eventlog", "verify", "--log", path, "--pcrs", write("empty", `[]`)},
			"omens: PCR file " + filepath.Join(dir, "empty") + " holds no bank\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := omens(t, tc.args...)
			if code != 1 || stderr != tc.want {
				t.Errorf("exit %d, stderr %q\nwant exit 1, %q\n%s", code, stderr, tc.want, stdout)
			}
		})
	}
}
