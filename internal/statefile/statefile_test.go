package statefile_test

import (
	"os"
	"path/filepath"
	"testing"

	"omens.dev/omens/internal/statefile"
)

// TestWriteAtomicPerm: the new file has exactly the mode asked for, whatever the old one
// had, where WriteAtomic keeps the old mode.
func TestWriteAtomicPerm(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := statefile.WriteAtomicPerm(key, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(key); string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%q mode %v, want \"new\" 0600", b, fi.Mode().Perm())
	}

	state := filepath.Join(dir, "state.json")
	if err := os.WriteFile(state, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := statefile.WriteAtomic(state, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("WriteAtomic: mode %v, %v; want the old 0640", fi.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("%d files left, want 2", len(entries))
	}
}
