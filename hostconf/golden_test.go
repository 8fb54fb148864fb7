package hostconf_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/registry"
)

// update is set by OMENS_UPDATE_DOCS=1: the tests below write the files they compare.
var update = os.Getenv("OMENS_UPDATE_DOCS") == "1"

// checkTree compares the files of dir (relative paths) with want, or writes them.
func checkTree(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	if update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		for rel, data := range want {
			p := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var have []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		have = append(have, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s is out of date (%v): run OMENS_UPDATE_DOCS=1 go test -run %s ./hostconf/\nwant:\n%s", filepath.Join(dir, rel), err, t.Name(), data)
		}
	}
	for _, rel := range have {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s is not rendered any more: run OMENS_UPDATE_DOCS=1 go test -run %s ./hostconf/", filepath.Join(dir, rel), t.Name())
		}
	}
}

// The units the package ships (deploy/systemd) are the renderer's for the default paths.
func TestDeployUnits(t *testing.T) {
	want := map[string][]byte{}
	for _, f := range hostconf.Units(registry.DefaultPaths()) {
		want[filepath.Base(f.Path)] = f.Data
	}
	checkTree(t, filepath.Join("..", "deploy", "systemd"), want)
}

// examples/rendered holds what `omens config render` writes for each host of
// examples/tower.hcl, with stand-ins for the plugin binaries.
func TestRenderedExamples(t *testing.T) {
	inv := tower(t)
	opt := hostconf.Options{PluginDir: placeholderPlugins(t, t.TempDir())}
	for _, h := range inv.Hosts {
		files, err := hostconf.Render(inv, h.Name, opt)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{}
		for _, f := range files {
			want[f.Path[1:]] = f.Data
		}
		checkTree(t, filepath.Join("..", "examples", "rendered", h.Name), want)
	}
}
