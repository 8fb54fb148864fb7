package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/policy"
)

// A policy file of a million nested braces once killed the SPIRE server's plugin with a
// stack overflow in the HCL parser; it is refused before the parser sees it.
func TestPolicyFileTooDeep(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pcr-policy.hcl")
	deep := "unknown_hosts = \"reject\"\ngroup \"g\" " + strings.Repeat("{", 1_000_000)
	if err := os.WriteFile(path, []byte(deep), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "policy: policy file: limits: " + path + ":2: nesting deeper than the 32-level limit for a PCR policy file"
	if _, err := policy.Open(path, ""); err == nil || err.Error() != want {
		t.Fatalf("Open:\n got: %v\nwant: %s", err, want)
	}
	want = "policy: limits: p.hcl:2: nesting deeper than the 32-level limit for a PCR policy file"
	if _, err := policy.ParsePolicy("p.hcl", []byte(deep)); err == nil || err.Error() != want {
		t.Fatalf("ParsePolicy:\n got: %v\nwant: %s", err, want)
	}
}

func TestPolicyFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pcr-policy.hcl")
	big := "unknown_hosts = \"reject\"\n" + strings.Repeat("# padding\n", 1<<20/10+1)
	if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("policy: policy file: limits: %s is %d bytes, over the 1048576-byte limit for a PCR policy file", path, len(big))
	if _, err := policy.Open(path, ""); err == nil || err.Error() != want {
		t.Fatalf("Open:\n got: %v\nwant: %s", err, want)
	}
}

// An edit that makes the policy too deep fails closed at the next evaluation.
func TestPolicyEditedTooDeep(t *testing.T) {
	s, path := openFleet(t, "reject")
	deep := "x = " + strings.Repeat("[", 33)
	if err := os.WriteFile(path, []byte(deep), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "policy: policy file: limits: " + path + ":1: nesting deeper than the 32-level limit for a PCR policy file"
	dec, err := s.Evaluate(ekHash("spire"), "sha256", fw12, t0)
	check(t, "Evaluate", dec, err, policy.Decision{}, want)
}

// Braces in strings and comments are not nesting.
func TestPolicyBracesInStringsAndComments(t *testing.T) {
	deep := strings.Repeat("{", 100)
	src := "# " + deep + "\n/* " + deep + " */\n// " + deep + "\n" + fmt.Sprintf(fleetPolicy, "reject")
	pol, err := policy.ParsePolicy("p.hcl", []byte(expand(src)))
	if err != nil {
		t.Fatal(err)
	}
	if h := pol.Host(ekHash("spire")); h == nil || h.Name != "spire" {
		t.Fatalf("host spire: %+v", h)
	}
	// In a string, braces reach the parser, which refuses the name for what it is.
	src = strings.Replace(src, `name  = "spire"`, `name  = "spire`+deep+`"`, 1)
	want := `policy: p.hcl:18: host name "spire` + deep + `": want 1 to 64 of A-Z a-z 0-9 . _ -, not 64 hex digits`
	if _, err := policy.ParsePolicy("p.hcl", []byte(expand(src))); err == nil || err.Error() != want {
		t.Fatalf("ParsePolicy:\n got: %v\nwant: %s", err, want)
	}
}

func TestStateFileTooDeep(t *testing.T) {
	_, path := openFleet(t, "reject")
	state := policy.DefaultStatePath(path)
	deep := "{\"version\": 1, \"hosts\": " + strings.Repeat("[", 1_000_000)
	if err := os.WriteFile(state, []byte(deep), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "policy: reading state file: limits: " + state + ":1: nesting deeper than the 32-level limit for a PCR policy state file"
	if _, err := policy.Open(path, ""); err == nil || err.Error() != want {
		t.Fatalf("Open:\n got: %v\nwant: %s", err, want)
	}
	want = "policy: state file: limits: s.json:1: nesting deeper than the 32-level limit for a PCR policy state file"
	if _, err := policy.ParseState("s.json", []byte(deep)); err == nil || err.Error() != want {
		t.Fatalf("ParseState:\n got: %v\nwant: %s", err, want)
	}
}

func TestStateFileTooLarge(t *testing.T) {
	s, path := openFleet(t, "reject")
	state := policy.DefaultStatePath(path)
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(state, 64<<20+1); err != nil { // sparse
		t.Fatal(err)
	}
	want := "policy: reading state file: limits: " + state + " is 67108865 bytes, over the 67108864-byte limit for a PCR policy state file"
	if _, err := policy.Open(path, ""); err == nil || err.Error() != want {
		t.Fatalf("Open:\n got: %v\nwant: %s", err, want)
	}
	if err := s.AllowNext(ekHash("spire"), time.Hour, t0); err == nil || err.Error() != want {
		t.Fatalf("AllowNext:\n got: %v\nwant: %s", err, want)
	}
	if fi, err := os.Stat(state); err != nil || fi.Size() != 64<<20+1 {
		t.Fatalf("state file changed: %v %v", fi, err)
	}
}
