// Package realworld gives tests the shared real-world TPM data: manufacturer CAs, EK
// certificates and boot event logs of real machines, with PCR values read from them. The
// data lies in ../shared/realworld next to the module root, or where OMENS_REALWORLD
// says; a test that needs it is skipped when it is absent, and fails under CI=true.
package realworld

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"omens.dev/omens/internal/test/enginetest"
)

// Dir returns the real-world data directory, or ends the test (enginetest.Missing).
func Dir(t testing.TB) string {
	t.Helper()
	if env := os.Getenv("OMENS_REALWORLD"); env != "" {
		if st, err := os.Stat(env); err != nil || !st.IsDir() {
			t.Fatalf("OMENS_REALWORLD=%q is not a directory", env)
		}
	}
	d := Lookup()
	if d == "" {
		enginetest.Missing(t, "real-world TPM data not found: set OMENS_REALWORLD or provide ../shared/realworld next to the module root")
	}
	return d
}

// Lookup returns the real-world data directory (OMENS_REALWORLD, or ../shared/realworld
// next to the module root), or "" when it is absent; for tests that only gain from the
// data, such as fuzz seeds.
func Lookup() string {
	if env := os.Getenv("OMENS_REALWORLD"); env != "" {
		return env
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "realworld")
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				return d
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// EventLogPath returns the path of the boot event log eventlogs/NAME.bin.
func EventLogPath(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Dir(t), "eventlogs", name+".bin")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// PCRReference is one set of reference PCR values of a log (eventlogs/NAME.pcrs.json): bank
// name ("sha256") to PCR index to value.
type PCRReference struct {
	Kind  string
	Banks map[string]map[int][]byte
}

// PCRReferences returns the reference PCR values of the boot event log NAME.
func PCRReferences(t testing.TB, name string) []PCRReference {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), "eventlogs", name+".pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		References []struct {
			Kind  string                       `json:"kind"`
			Banks map[string]map[string]string `json:"banks"`
		} `json:"references"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s.pcrs.json: %v", name, err)
	}
	var out []PCRReference
	for _, r := range doc.References {
		ref := PCRReference{Kind: r.Kind, Banks: map[string]map[int][]byte{}}
		for bank, vals := range r.Banks {
			ref.Banks[bank] = map[int][]byte{}
			for k, v := range vals {
				i, err := strconv.Atoi(k)
				if err != nil {
					t.Fatalf("%s.pcrs.json: PCR %q: %v", name, k, err)
				}
				d, err := hex.DecodeString(v)
				if err != nil {
					t.Fatalf("%s.pcrs.json: PCR %s %s: %v", name, bank, k, err)
				}
				ref.Banks[bank][i] = d
			}
		}
		out = append(out, ref)
	}
	if len(out) == 0 {
		t.Fatalf("%s.pcrs.json holds no reference", name)
	}
	return out
}
