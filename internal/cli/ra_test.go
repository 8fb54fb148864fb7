package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/ra/stepca"
)

const (
	raEKA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	raEKB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// raState writes a bindings file with two contenders for one host and a bound host with a
// superseded and a current certificate.
func raState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b := `{"version": 2,
  "hosts": {"ca.funlab.casa": {"host": "ca.funlab.casa", "ek_hash": "cc", "approved": "2026-01-01T00:00:00Z",
    "certificates": [
      {"serial": "1a", "issued": "2026-01-01T00:00:00Z", "not_after": "2999-01-01T00:00:00Z", "superseded": "2026-02-01T00:00:00Z"},
      {"serial": "2b", "issued": "2026-02-01T00:00:00Z", "not_after": "2999-02-01T00:00:00Z"}]}},
  "pending": {"auth.funlab.casa": [
    {"host": "auth.funlab.casa", "ek_hash": "` + raEKA + `", "ek_issuer": "CN=Vendor A EK CA", "source": "192.0.2.1", "first_seen": "2026-03-01T00:00:00Z", "last_seen": "2026-03-01T00:00:00Z", "requests": 1},
    {"host": "auth.funlab.casa", "ek_hash": "` + raEKB + `", "source": "198.51.100.7", "first_seen": "2026-03-02T00:00:00Z", "last_seen": "2026-03-02T00:00:00Z", "requests": 4}]}}`
	if err := os.WriteFile(filepath.Join(dir, "bindings.json"), []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRAPendingListsEveryContender(t *testing.T) {
	state := raState(t)
	code, out, errOut := omens(t, "ra", "pending", "--state", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"auth.funlab.casa  " + raEKA + "  2026-03-01T00:00:00Z  192.0.2.1     CN=Vendor A EK CA    1",
		"auth.funlab.casa  " + raEKB + "  2026-03-02T00:00:00Z  198.51.100.7  (no EK certificate)  4",
		"ca.funlab.casa  cc       1a            2999-01-01T00:00:00Z  superseded 2026-02-01T00:00:00Z",
		"ca.funlab.casa  cc       2b            2999-02-01T00:00:00Z  current",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ra pending lacks %q:\n%s", want, out)
		}
	}
}

func TestRAApproveRefusesToChoose(t *testing.T) {
	state := raState(t)
	code, _, errOut := omens(t, "ra", "approve", "auth.funlab.casa", "--state", state)
	want := "ra: 2 TPMs asked for auth.funlab.casa; choose one by its EK hash (omens ra pending shows each one's first request, address and EK issuer): --ek " + raEKA + ", --ek " + raEKB
	if code == 0 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d: %s\nwant %s", code, errOut, want)
	}
	code, out, errOut := omens(t, "ra", "approve", "auth.funlab.casa", "--state", state, "--ek", raEKB)
	if code != 0 || !strings.Contains(out, "bound auth.funlab.casa to EK "+raEKB) {
		t.Fatalf("approve --ek: exit %d: %s %s", code, out, errOut)
	}
}

func TestRAUnbindRefusesLiveCertificates(t *testing.T) {
	state := raState(t)
	code, _, errOut := omens(t, "ra", "unbind", "ca.funlab.casa", "--state", state)
	want := "ra: ca.funlab.casa has DevID certificates that are still valid (serials 1a, 2b): revoke them first with `omens devid revoke --host ca.funlab.casa` (step-ca flags), then unbind"
	if code == 0 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d: %s\nwant %s", code, errOut, want)
	}
}

func TestRAServeRefusesNegativeGrace(t *testing.T) {
	code, _, errOut := omens(t, "ra", "serve", "--state", t.TempDir(), "--ek-ca", "x", "--supersede-grace", "-1m")
	if code == 0 || !strings.Contains(errOut, "--supersede-grace -1m0s: want a positive duration, such as 1h") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestRATemplatePrintsTheDevIDProfile: `omens ra template` prints the template the RA
// checks step-ca for, byte for byte.
func TestRATemplatePrintsTheDevIDProfile(t *testing.T) {
	code, out, errOut := omens(t, "ra", "template")
	if code != 0 || out != stepca.DevIDTemplate {
		t.Fatalf("exit %d, stderr %s\nstdout %q\nwant %q", code, errOut, out, stepca.DevIDTemplate)
	}
}
