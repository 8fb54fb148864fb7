package registry_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/registry"
)

// SetPhase changes one line of the file, or adds one, and nothing else.
func TestSetPhase(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "examples", "tower.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := registry.SetPhase("tower.hcl", src, "auth", registry.PhaseEK)
	if err != nil || !changed {
		t.Fatalf("SetPhase: %v %v", changed, err)
	}
	want := strings.Replace(string(src), "devid_subject = \"auth.funlab.casa\"\n  pcr_policy    = \"tower\"\n  phase         = \"devid\"",
		"devid_subject = \"auth.funlab.casa\"\n  pcr_policy    = \"tower\"\n  phase         = \"ek\"", 1)
	if string(out) != want {
		t.Errorf("SetPhase changed more than auth's phase:\n%s", out)
	}
	if again, changed, err := registry.SetPhase("tower.hcl", out, "auth", registry.PhaseEK); err != nil || changed || string(again) != string(out) {
		t.Errorf("SetPhase to the same phase: changed %v, %v", changed, err)
	}

	// A host without a phase gets a line at the end of its block.
	src = []byte("trust_domain = \"funlab.casa\"\n\nhost \"a\" {\n    devid_subject = \"a\" # the DevID\n}\n\nhost \"b\" { devid_subject = \"b\" }\n")
	out, _, err = registry.SetPhase("tower.hcl", src, "a", registry.PhaseJoinToken)
	if want := "trust_domain = \"funlab.casa\"\n\nhost \"a\" {\n    devid_subject = \"a\" # the DevID\n    phase = \"join_token\"\n}\n\nhost \"b\" { devid_subject = \"b\" }\n"; err != nil || string(out) != want {
		t.Errorf("SetPhase a:\n%s\nwant:\n%s (%v)", out, want, err)
	}
	out, _, err = registry.SetPhase("tower.hcl", src, "b", registry.PhaseDevID)
	if want := "trust_domain = \"funlab.casa\"\n\nhost \"a\" {\n    devid_subject = \"a\" # the DevID\n}\n\nhost \"b\" { devid_subject = \"b\"\n  phase = \"devid\"\n}\n"; err != nil || string(out) != want {
		t.Errorf("SetPhase b:\n%q\nwant:\n%q (%v)", out, want, err)
	}
	if _, _, err := registry.SetPhase("tower.hcl", src, "c", registry.PhaseEK); err == nil || err.Error() != `registry: tower.hcl: host "c" is not in the inventory` {
		t.Errorf("unknown host: %v", err)
	}
	if _, _, err := registry.SetPhase("tower.hcl", src, "a", "tpm"); err == nil || err.Error() != `registry: phase "tpm": want "join_token", "ek" or "devid"` {
		t.Errorf("bad phase: %v", err)
	}
}

// FuzzSetPhase: any inventory bytes give an error or an inventory in which the host has
// the phase, never a crash.
func FuzzSetPhase(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "examples", "tower.hcl")); err == nil {
		f.Add(b, "auth")
	}
	f.Add([]byte("trust_domain = \"funlab.casa\"\nhost \"a\" { devid_subject = \"a\" }\n"), "a")
	f.Add([]byte("trust_domain = \"funlab.casa\"\nhost \"a\" {\n  phase = \"ek\" devid_subject = \"a\"\n}\n"), "a")
	f.Fuzz(func(t *testing.T, src []byte, host string) {
		for _, p := range registry.Phases {
			out, _, err := registry.SetPhase("f.hcl", src, host, p)
			if err != nil {
				continue
			}
			inv, err := registry.ParseInventory("f.hcl", out)
			if err != nil || inv.Host(host) == nil || inv.Host(host).Phase != p {
				t.Fatalf("SetPhase(%q, %s) gave %q: %v", host, p, out, err)
			}
		}
	})
}
