package registry_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/registry"
)

func TestInventoryTooDeep(t *testing.T) {
	deep := "trust_domain = \"funlab.casa\"\nhost \"a\" " + strings.Repeat("{", 1_000_000)
	path := writeFile(t, t.TempDir(), "tower.hcl", deep)
	want := "registry: inventory: limits: " + path + ":2: nesting deeper than the 32-level limit for an inventory"
	if _, err := registry.LoadInventory(path); err == nil || err.Error() != want {
		t.Fatalf("LoadInventory:\n got: %v\nwant: %s", err, want)
	}
	want = "registry: limits: tower.hcl:2: nesting deeper than the 32-level limit for an inventory"
	if _, err := registry.ParseInventory("tower.hcl", []byte(deep)); err == nil || err.Error() != want {
		t.Fatalf("ParseInventory:\n got: %v\nwant: %s", err, want)
	}
}

func TestInventoryTooLarge(t *testing.T) {
	path := writeFile(t, t.TempDir(), "tower.hcl", "")
	if err := os.Truncate(path, 4<<20+1); err != nil { // sparse
		t.Fatal(err)
	}
	want := "registry: inventory: limits: " + path + " is 4194305 bytes, over the 4194304-byte limit for an inventory"
	if _, err := registry.LoadInventory(path); err == nil || err.Error() != want {
		t.Fatalf("LoadInventory:\n got: %v\nwant: %s", err, want)
	}
}

// Braces in comments and strings are not nesting: the inventory parses, and a brace in a
// selector reaches the inventory's own check.
func TestInventoryBracesInStringsAndComments(t *testing.T) {
	deep := strings.Repeat("{[", 50)
	src := "# " + deep + "\n/* " + deep + " */\n" + towerInventory("unix:user:openbao", "// "+deep+"\n")
	path := writeFile(t, t.TempDir(), "tower.hcl", src)
	inv, err := registry.LoadInventory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Hosts) != 3 {
		t.Fatalf("hosts: %+v", inv.Hosts)
	}
	src = towerInventory(deep, "")
	want := fmt.Sprintf(`registry: tower.hcl:18: workload "openbao": selectors: %q is not type:value (such as "unix:user:openbao")`, deep)
	if _, err := registry.ParseInventory("tower.hcl", []byte(src)); err == nil || err.Error() != want {
		t.Fatalf("ParseInventory:\n got: %v\nwant: %s", err, want)
	}
}

func TestServerConfigTooDeep(t *testing.T) {
	deep := "server {\n}\nplugins " + strings.Repeat("{", 1_000_000)
	want := "registry: limits: server config:3: nesting deeper than the 32-level limit for a SPIRE server configuration"
	if _, _, err := registry.RemoveNodeAttestor([]byte(deep), "join_token"); err == nil || err.Error() != want {
		t.Fatalf("RemoveNodeAttestor:\n got: %v\nwant: %s", err, want)
	}
	big := strings.Repeat("# padding\n", 1<<20/10+1)
	want = fmt.Sprintf("registry: limits: server config is %d bytes, over the 1048576-byte limit for a SPIRE server configuration", len(big))
	if _, _, err := registry.RemoveNodeAttestor([]byte(big), "join_token"); err == nil || err.Error() != want {
		t.Fatalf("RemoveNodeAttestor:\n got: %v\nwant: %s", err, want)
	}
}

// FuzzParseInventory: any bytes give an inventory or an error, never a crash; what is
// accepted is consistent.
func FuzzParseInventory(f *testing.F) {
	f.Add([]byte(towerInventory("unix:user:openbao", stepCA)))
	f.Add([]byte("trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"x\"\n}\n"))
	f.Add([]byte("trust_domain = \"funlab.casa\"\nhost \"a\" " + strings.Repeat("{", 40)))
	f.Add([]byte("# {{{\ntrust_domain = \"funlab.casa\" /* [[ */\n"))
	if b, err := os.ReadFile("../examples/tower.hcl"); err == nil {
		f.Add(b) // the deploy blocks, paths and phases
	}
	f.Add([]byte("trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"x\"\n  phase = \"ek\"\n  paths {\n    tpm = \"/dev/tpm0\"\n  }\n}\nspire_server {\n  host = \"a\"\n  address = \"a\"\n  port = 1\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		inv, err := registry.ParseInventory("f.hcl", src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "registry: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
			return
		}
		if inv.TrustDomain == "" {
			t.Fatal("accepted without a trust domain")
		}
		for _, h := range inv.Hosts {
			if inv.Host(h.Name) == nil {
				t.Fatalf("host %q not found by name", h.Name)
			}
			if h.EKHash == "" && h.DevIDSubject == "" {
				t.Fatalf("host %q has no identity", h.Name)
			}
		}
		for _, w := range inv.Workloads {
			if inv.Host(w.Host) == nil {
				t.Fatalf("workload %q on unknown host %q", w.Name, w.Host)
			}
		}
		if s := inv.Server; s != nil && (inv.Host(s.Host) == nil || s.Address == "" || s.Port < 1 || s.Port > 65535) {
			t.Fatalf("accepted spire_server %+v", s)
		}
		if r := inv.RA; r != nil && (inv.StepCA == nil || r.Host != inv.StepCA.Host || inv.Host(r.Host) == nil || r.Name() == "") {
			t.Fatalf("accepted ra %+v beside step_ca %+v", r, inv.StepCA)
		}
		for _, h := range inv.Hosts {
			p := inv.PathsOf(&h)
			p.Each(func(key string, v *string) {
				if *v != "" && (!filepath.IsAbs(*v) || strings.ContainsAny(*v, " \n\"%$")) {
					t.Fatalf("host %q: accepted path %s = %q", h.Name, key, *v)
				}
			})
		}
	})
}
