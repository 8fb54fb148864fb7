package hostconf_test

import (
	"os"
	"path/filepath"
	"testing"

	"omens.dev/omens/hostconf"
)

// Write puts each file at its path under the root, and only what changed; Compare shows
// a unified diff against what is there.
func TestWriteCompare(t *testing.T) {
	root := t.TempDir()
	files := []hostconf.File{
		{Role: "a", Path: "/etc/x/a.conf", Mode: 0o644, Data: []byte("one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n")},
		{Role: "b", Path: "/lib/b.service", Mode: 0o600, Data: []byte("[Unit]\n")},
	}
	ch, err := hostconf.Write(root, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ch {
		if c.State != hostconf.StateNew || c.Target != filepath.Join(root, c.Path) {
			t.Errorf("first write: %s %s", c.Target, c.State)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "lib", "b.service")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("b.service: %v %v", st, err)
	}
	if ch, err = hostconf.Write(root, files); err != nil || ch[0].State != hostconf.StateUnchanged || ch[1].State != hostconf.StateUnchanged {
		t.Fatalf("second write: %+v %v", ch, err)
	}
	files[0].Data = []byte("one\ntwo\nthree\nFOUR\nfive\nsix\nseven\neight\nnine\nten")
	ch, err = hostconf.Compare(root, files)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(root, "etc", "x", "a.conf")
	want := "--- " + target + "\n+++ " + target + " (rendered)\n" +
		"@@ -1,9 +1,10 @@\n one\n two\n three\n-four\n+FOUR\n five\n six\n seven\n eight\n nine\n+ten\n\\ No newline at end of file\n"
	if ch[0].State != hostconf.StateChanged || ch[0].Diff != want {
		t.Errorf("diff:\n%s\nwant:\n%s", ch[0].Diff, want)
	}
	// Compare wrote nothing.
	if b, _ := os.ReadFile(target); string(b) != "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n" {
		t.Errorf("Compare changed the file: %q", b)
	}
	// Changes far apart are two hunks.
	files[0].Data = []byte("ONE\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nNINE\n")
	ch, _ = hostconf.Compare(root, files)
	want = "--- " + target + "\n+++ " + target + " (rendered)\n" +
		"@@ -1,4 +1,4 @@\n-one\n+ONE\n two\n three\n four\n@@ -6,4 +6,4 @@\n six\n seven\n eight\n-nine\n+NINE\n"
	if ch[0].Diff != want {
		t.Errorf("diff:\n%s\nwant:\n%s", ch[0].Diff, want)
	}
	// An installed file over the cap is refused, naming it.
	if err := os.Truncate(target, 1<<20+1); err != nil {
		t.Fatal(err)
	}
	if _, err := hostconf.Compare(root, files); err == nil || err.Error() != "hostconf: limits: "+target+" is 1048577 bytes, over the 1048576-byte limit for an installed configuration file" {
		t.Errorf("oversize: %v", err)
	}
}
