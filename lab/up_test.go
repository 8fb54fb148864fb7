package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/lab"
)

// TestUpWithoutPlugins runs `up` with an omens whose SPIRE plugins are not beside it: it
// names the missing binary and what builds it, and starts nothing.
func TestUpWithoutPlugins(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"omens", "omens-attestor-server", "omens-demo"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "lab")
	l := &lab.Lab{Dir: dir, Omens: filepath.Join(bin, "omens")}
	err := l.Up(context.Background())
	missing := filepath.Join(bin, "omens-attestor-agent")
	want := "lab: omens-attestor-agent is missing beside " + l.Omens + " (" + missing + ": stat " + missing +
		": no such file or directory): build the binaries together with `make build`, or `go build -o bin/ ./cmd/...`"
	if err == nil || err.Error() != want {
		t.Fatalf("Up:\n got: %v\nwant: %s", err, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Up created the lab directory before failing (stat: %v)", err)
	}

	// A plugin that is not executable is refused too.
	if err := os.WriteFile(missing, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = l.Up(context.Background())
	if want := "lab: omens-attestor-agent is missing beside " + l.Omens + " (" + missing + ": not an executable file)"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Up with a plugin that is not executable:\n got: %v\nwant: %s…", err, want)
	}
}

// TestStatusMalformedInventory reads the status of a lab whose inventory is malformed:
// each host shows the inventory's error, not a lab "before the migration".
func TestStatusMalformedInventory(t *testing.T) {
	l := &lab.Lab{Dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Dir(l.ServerSocket()), 0o755); err != nil {
		t.Fatal(err)
	}
	// Stands for the server's socket: the status asks the server only after reading the
	// inventory.
	if err := os.WriteFile(l.ServerSocket(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.InventoryPath(), []byte("host \"auth\" {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := l.Status()
	if len(st) != len(lab.Hosts) {
		t.Fatalf("%d hosts in the status, want %d", len(st), len(lab.Hosts))
	}
	for _, h := range st {
		if !strings.HasPrefix(h.Error, "lab: registry: tower.hcl") {
			t.Errorf("%s: error %q, want the inventory's (lab: registry: tower.hcl…)", h.Host, h.Error)
		}
	}
}

// TestNetworkPartitionNeedsRoot: as another user than root the scenario is refused, saying
// why and what to do.
func TestNetworkPartitionNeedsRoot(t *testing.T) {
	err := lab.NeedRoot(1000)
	if err == nil || !strings.Contains(err.Error(), "network-partition needs root") || !strings.Contains(err.Error(), "run it as root") {
		t.Errorf("as uid 1000: %v", err)
	}
}
