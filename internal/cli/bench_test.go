package cli_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/haproxyproc"
	"omens.dev/omens/internal/pgproc"
	"omens.dev/omens/internal/test/enginetest"
)

// buildServerPlugin builds omens-attestor-server into a temporary directory.
func buildServerPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/", "omens.dev/omens/cmd/omens-attestor-server").CombinedOutput(); err != nil {
		t.Fatalf("go build omens-attestor-server: %v\n%s", err, out)
	}
	return dir + "/omens-attestor-server"
}

// benchKeys are the numbers omens bench attest --json must give.
var benchKeys = []string{"attested", "refused", "lost", "rate_per_s", "p50_ms", "p95_ms", "p99_ms",
	"server_cpu_s", "plugin_cpu_s", "server_rss_mb", "plugin_rss_mb"}

// TestBenchAttest runs omens bench attest through real SPIRE at a size for CI: 20 software
// TPM identities, all at once, each attested once with nothing lost or refused and every
// number of the report given; then 20 more, 4 at a time, with the server restarted after 8
// (every agent still ends attested, the attempts the restart cost retried) and a
// re-attestation phase in which every agent re-attests over a new stream.
func TestBenchAttest(t *testing.T) {
	enginetest.Require(t, engines.SPIREServer)
	plugin := buildServerPlugin(t)

	code, stdout, stderr := omens(t, "bench", "attest", "--agents", "20", "--concurrency", "20", "--json", "--plugin", plugin)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if rep["ek_ca"] != "rsa2048" {
		t.Errorf("ek_ca %v, want the default rsa2048", rep["ek_ca"])
	}
	for _, k := range benchKeys {
		v, ok := rep[k].(float64)
		if !ok {
			t.Errorf("--json has no number %q: %s", k, stdout)
			continue
		}
		switch k {
		case "attested":
			if v != 20 {
				t.Errorf("attested %v, want 20", v)
			}
		case "refused", "lost":
			if v != 0 {
				t.Errorf("%s %v, want 0: %s", k, v, stdout)
			}
		case "server_cpu_s", "plugin_cpu_s":
			if v < 0 {
				t.Errorf("%s %v, want at least 0", k, v)
			}
		default:
			if v <= 0 {
				t.Errorf("%s %v, want more than 0", k, v)
			}
		}
	}

	code, stdout, stderr = omens(t, "bench", "attest", "--agents", "20", "--concurrency", "4",
		"--restart-server-at", "8", "--reattest-for", "3s", "--ek-ca", "p384", "--plugin", plugin)
	if code != 0 {
		t.Fatalf("with a restart and re-attestation: exit %d\n%s\n%s", code, stdout, stderr)
	}
	lines := strings.Split(stdout, "\n")
	if lines[0] != "20 agents, concurrency 4, manufacturer CA p384, 1 server restart" {
		t.Errorf("first line %q", lines[0])
	}
	row := func(phase string) []string {
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 0 && f[0] == phase {
				return f
			}
		}
		t.Fatalf("no %s row in\n%s", phase, stdout)
		return nil
	}
	if f := row("attest"); f[1] != "20" || f[2] != "0" {
		t.Errorf("attest row %v: want 20 attested, 0 refused\n%s", f, stdout)
	}
	if f := row("reattest"); f[2] != "0" || f[1] == "0" {
		t.Errorf("reattest row %v: want re-attestations and none refused\n%s", f, stdout)
	}
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "re-attestation: every agent re-attested at least ") && !strings.HasSuffix(l, " 0 times")
	}) {
		t.Errorf("not every agent re-attested:\n%s", stdout)
	}
	if !strings.Contains(stderr, "attest: 8 attested: restarting the server") || !strings.Contains(stderr, "attest: server restarted") {
		t.Errorf("the progress lines do not show the restart:\n%s", stderr)
	}
}

// TestBenchAttestHA runs omens bench attest --ha at a size for CI: two SPIRE servers on a
// throwaway PostgreSQL cluster behind haproxy, 20 software TPM identities 4 at a time, one
// server killed (SIGKILL) after 8 attestations, then 2 seconds of re-attestation through
// the survivor. Every agent ends attested with none refused, each attempt the kill cut is
// counted and retried (extra_attestations is the lost count), every agent's SVID verifies
// against the surviving server's bundle, and the progress lines show the kill.
func TestBenchAttestHA(t *testing.T) {
	enginetest.Require(t, engines.SPIREServer)
	if _, err := pgproc.Installed(); err != nil {
		enginetest.Missing(t, err)
	}
	if _, err := haproxyproc.Installed(); err != nil {
		enginetest.Missing(t, err)
	}
	plugin := buildServerPlugin(t)

	code, stdout, stderr := omens(t, "bench", "attest", "--ha", "--agents", "20", "--concurrency", "4",
		"--kill-server-at", "8", "--reattest-for", "2s", "--json", "--plugin", plugin)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep struct {
		Attested, Refused, Lost int
		KilledAt                int  `json:"killed_at"`
		Extra                   *int `json:"extra_attestations"`
		Valid                   *int `json:"svids_valid_after_kill"`
		Reattest                *struct{ Attested, Refused, Lost int }
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	var keys map[string]any
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(benchKeys, "killed_at", "extra_attestations", "svids_valid_after_kill") {
		if _, ok := keys[k].(float64); !ok {
			t.Errorf("--json has no number %q: %s", k, stdout)
		}
	}
	if rep.Attested != 20 || rep.Refused != 0 {
		t.Errorf("attested %d, refused %d: want 20 and 0\n%s", rep.Attested, rep.Refused, stdout)
	}
	if rep.KilledAt != 8 {
		t.Errorf("killed_at %d, want 8", rep.KilledAt)
	}
	if rep.Reattest == nil || rep.Reattest.Attested == 0 || rep.Reattest.Refused != 0 {
		t.Errorf("re-attestation %+v: want re-attestations through the survivor, none refused\n%s", rep.Reattest, stdout)
	}
	if rep.Extra == nil || rep.Reattest == nil || *rep.Extra != rep.Lost+rep.Reattest.Lost {
		t.Errorf("extra_attestations %v, want the lost attempts (%d + %d)", rep.Extra, rep.Lost, rep.Reattest.Lost)
	}
	if rep.Valid == nil || *rep.Valid != 20 {
		t.Errorf("svids_valid_after_kill %v, want 20", rep.Valid)
	}
	for _, want := range []string{"ha: starting PostgreSQL", "ha: starting haproxy", "attest: 8 attested: killing a server (SIGKILL)", "attest: server killed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the progress lines lack %q:\n%s", want, stderr)
		}
	}
}

// TestBenchAttestRefusesBadFlags: wrong flags are refused before anything starts, each
// with what to give instead.
func TestBenchAttestRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agents", "0", "--concurrency", "1"}, "--agents 0 --concurrency 1: give both, at least 1 (such as --agents 1000 --concurrency 1000)"},
		{[]string{"--agents", "2", "--concurrency", "1", "--ek-ca", "dsa"}, `--ek-ca "dsa": want one of [p384 p256 rsa2048]`},
		{[]string{"--agents", "2", "--concurrency", "1", "--kill-server-at", "1"}, "--kill-server-at needs --ha: one server has no other to go on through (use --restart-server-at)"},
	} {
		code, _, stderr := omens(t, append([]string{"bench", "attest"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error with %q", tc.args, code, stderr, tc.want)
		}
	}
}
