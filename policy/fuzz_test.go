package policy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"omens.dev/omens/policy"
)

func FuzzParsePolicy(f *testing.F) {
	if src, err := os.ReadFile("example.hcl"); err == nil {
		f.Add(src)
	}
	f.Add([]byte(expand(fmt.Sprintf(fleetPolicy, "tower"))))
	f.Add([]byte(`group "g" { set "s" { bank = "sha1" pcrs = { "0" = "00" } } }`))
	f.Add([]byte("unknown_hosts = \"reject\"\nhost \"x\" { name = <<EOF\nhi\nEOF\n}"))
	f.Add([]byte(`group "g" { set "s" { pcrs = [ { "0" = "00" } ] } }`))
	f.Fuzz(func(t *testing.T, src []byte) {
		pol, err := policy.ParsePolicy("fuzz.hcl", src)
		if err != nil {
			return
		}
		// Whatever parses is a policy Evaluate can use as it is.
		if pol.UnknownHosts != policy.Reject && pol.Group(pol.UnknownHosts) == nil {
			t.Fatalf("unknown_hosts %q names no group", pol.UnknownHosts)
		}
		sets := func(ss []*policy.Set) {
			for _, s := range ss {
				if len(s.PCRs) == 0 {
					t.Fatalf("set %q has no PCRs", s.Name)
				}
				for i, d := range s.PCRs {
					if i < 0 || i >= policy.NumPCRs || len(d) != policy.DigestSize(s.Bank) || len(d) == 0 {
						t.Fatalf("set %q: PCR %d of %d bytes in bank %q", s.Name, i, len(d), s.Bank)
					}
				}
			}
		}
		for _, g := range pol.Groups {
			sets(g.Sets)
		}
		for _, h := range pol.Hosts {
			if pol.Host(h.EKHash) != h || h.Group != "" && pol.Group(h.Group) == nil {
				t.Fatalf("host %s: lookup or group %q broken", h.EKHash, h.Group)
			}
			sets(h.Sets)
		}
	})
}

func FuzzLoadState(f *testing.F) {
	// A real state file: a window, a pin and a rejection.
	dir := f.TempDir()
	path := dir + "/p.hcl"
	if err := os.WriteFile(path, []byte(expand(fmt.Sprintf(fleetPolicy, "tower"))), 0o644); err != nil {
		f.Fatal(err)
	}
	s, err := policy.Open(path, "")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s.AllowNext("spire", time.Hour, now)
	s.AllowNext("auth", time.Hour, now)
	s.Evaluate(ekHash("spire"), "sha256", fw12, now.Add(time.Minute))
	s.Evaluate(ekHash("stranger"), "sha256", fw13, now.Add(2*time.Minute))
	if data, err := os.ReadFile(policy.DefaultStatePath(path)); err == nil {
		f.Add(data)
	} else {
		f.Fatal(err)
	}
	f.Add([]byte(`{"version":1,"hosts":{}}`))
	f.Add([]byte(`{"version":1,"hosts":{"` + ekHash("a") + `":{"pins":[{"name":"x","bank":"sha1","pcrs":{"07":"0000000000000000000000000000000000000000"}}]}}}`))
	f.Add([]byte(`{"version":1,"hosts":{"` + ekHash("a") + `":{"window":{"opened":"9999-12-31T23:59:59Z","until":"9999-12-31T23:59:59-23:59"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := policy.ParseState("fuzz.json", data)
		if err != nil {
			return
		}
		// What loads can be written and loads again to the same state.
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("loaded state does not encode: %v", err)
		}
		st2, err := policy.ParseState("again.json", out)
		if err != nil {
			t.Fatalf("written state does not load: %v\n%s", err, out)
		}
		out2, err := json.Marshal(st2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("state changed on a round trip:\n%s\n%s", out, out2)
		}
	})
}
