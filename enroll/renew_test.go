package enroll_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/enroll"
)

func TestLoadRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, enroll.MetaFile)
	want := "enroll: no DevID enrolled in " + dir + " (open " + meta + ": no such file or directory): run omens devid enroll"
	if _, err := enroll.Load(dir); err == nil || err.Error() != want {
		t.Fatalf("empty directory:\n got: %v\nwant: %s", err, want)
	}
	if err := os.WriteFile(meta, []byte(`{"host": `+strings.Repeat("[", 60_000)), 0o600); err != nil {
		t.Fatal(err)
	}
	want = "enroll: limits: " + meta + ":1: nesting deeper than the 32-level limit for a DevID metadata file"
	if _, err := enroll.Load(dir); err == nil || err.Error() != want {
		t.Fatalf("deep metadata:\n got: %v\nwant: %s", err, want)
	}
	if err := os.Truncate(meta, 64<<10+1); err != nil {
		t.Fatal(err)
	}
	want = "enroll: limits: " + meta + " is 65537 bytes, over the 65536-byte limit for a DevID metadata file"
	if _, err := enroll.Load(dir); err == nil || err.Error() != want {
		t.Fatalf("oversize metadata:\n got: %v\nwant: %s", err, want)
	}
	if err := os.WriteFile(meta, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, enroll.CertFile)
	if err := os.WriteFile(cert, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(cert, 1<<20+1); err != nil {
		t.Fatal(err)
	}
	want = "enroll: limits: " + cert + " is 1048577 bytes, over the 1048576-byte limit for a DevID certificate file"
	if _, err := enroll.Load(dir); err == nil || err.Error() != want {
		t.Fatalf("oversize certificate:\n got: %v\nwant: %s", err, want)
	}
}
