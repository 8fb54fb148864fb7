package policy_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"

	"omens.dev/omens/policy"
)

// digest is a stand-in PCR value: the SHA-256 of a label.
func digest(label string) []byte {
	d := sha256.Sum256([]byte(label))
	return d[:]
}

func hexOf(label string) string { return hex.EncodeToString(digest(label)) }

// sha1Hex is a stand-in sha1 PCR value.
func sha1Hex(label string) string {
	d := sha1.Sum([]byte(label))
	return hex.EncodeToString(d[:])
}

// ekHash is a stand-in EK hash.
func ekHash(label string) string { return hexOf("ek " + label) }

// placeholder is {label}, {ek:label} or {sha1:label} in a test policy.
var placeholder = regexp.MustCompile(`\{(ek:|sha1:)?([A-Za-z0-9._-]+)\}`)

// expand replaces {label} with hexOf(label), {ek:label} with ekHash(label) and
// {sha1:label} with sha1Hex(label).
func expand(src string) string {
	return placeholder.ReplaceAllStringFunc(src, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		switch sub[1] {
		case "ek:":
			return ekHash(sub[2])
		case "sha1:":
			return sha1Hex(sub[2])
		}
		return hexOf(sub[2])
	})
}

func TestParsePolicyExample(t *testing.T) {
	src, err := os.ReadFile("example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.ParsePolicy("example.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	if pol.UnknownHosts != policy.Reject || len(pol.Groups) != 1 || len(pol.Groups[0].Sets) != 2 || len(pol.Hosts) != 3 {
		t.Fatalf("example.hcl parsed to unknown_hosts %q, %d groups, %d hosts", pol.UnknownHosts, len(pol.Groups), len(pol.Hosts))
	}
	spire := pol.HostByName("spire")
	if spire == nil || spire.Group != "tower" || spire.EKHash != "28c2c15f8bd3e630a2804fb236de72d14877fec0061cfb70caf0a5e5548df91f" {
		t.Fatalf("host spire: %+v", spire)
	}
	set := pol.Group("tower").Sets[1]
	if set.Name != "firmware-1.1" || set.Bank != "sha256" || len(set.PCRs) != 4 || len(set.PCRs[7]) != 32 {
		t.Fatalf("set firmware-1.1: %+v", set)
	}
}

func TestParsePolicy(t *testing.T) {
	src := expand(`
unknown_hosts = "tower"
host "{ek:spire}" {
  name  = "spire"
  group = "tower"   # defined below: order does not matter
}
group "tower" {
  set "a" {
    pcrs = { "0" = "{a0}", "07" = "{a7}" }
  }
  set "b" {
    bank = "sha1"
    pcrs { "0" = "{sha1:b0}" }
  }
}
host "{ek:AUTH}" {
  set "own" {
    bank = "sha384"
    pcrs = { "23" = "` + strings.Repeat("ab", 48) + `" }
  }
}
`)
	src = strings.Replace(src, ekHash("AUTH"), strings.ToUpper(ekHash("auth")), 1)
	pol, err := policy.ParsePolicy("p.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if pol.UnknownHosts != "tower" {
		t.Errorf("unknown_hosts = %q", pol.UnknownHosts)
	}
	a := pol.Group("tower").Sets[0]
	if a.Bank != "sha256" || hex.EncodeToString(a.PCRs[7]) != hexOf("a7") || len(a.PCRs) != 2 {
		t.Errorf("set a: %+v", a)
	}
	if b := pol.Group("tower").Sets[1]; b.Bank != "sha1" || hex.EncodeToString(b.PCRs[0]) != sha1Hex("b0") {
		t.Errorf("set b: %+v", b)
	}
	auth := pol.Host(ekHash("auth")) // upper-case in the file, lower-case in the policy
	if auth == nil || auth.Sets[0].Bank != "sha384" || len(auth.Sets[0].PCRs[23]) != 48 {
		t.Errorf("host auth: %+v", auth)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	group := func(body string) string {
		return "group \"g\" {\n  set \"s\" {\n" + body + "\n  }\n}\n"
	}
	for _, tc := range []struct {
		name, src, err string
	}{
		{
			name: "syntax",
			src:  "group \"g\" {\n  set \"s\" {\n",
			err:  `policy: p.hcl:3: object expected closing RBRACE got: EOF`,
		},
		{
			name: "unknown top-level key",
			src:  `unknown = "reject"`,
			err:  `policy: p.hcl:1: unknown key "unknown" (want unknown_hosts, group or host)`,
		},
		{
			name: "unknown_hosts twice",
			src:  "unknown_hosts = \"reject\"\nunknown_hosts = \"reject\"",
			err:  `policy: p.hcl:2: unknown_hosts is set twice (first on line 1)`,
		},
		{
			name: "unknown_hosts not a string",
			src:  `unknown_hosts = 3`,
			err:  `policy: p.hcl:1: unknown_hosts must be a string: unknown_hosts = "..."`,
		},
		{
			name: "unknown_hosts names no group",
			src:  "unknown_hosts = \"towr\"\n" + group(`pcrs = { "0" = "{x}" }`),
			err:  `policy: p.hcl:1: unknown_hosts = "towr": no such group (want "reject" or a group name)`,
		},
		{
			name: "group without name",
			src:  `group { }`,
			err:  `policy: p.hcl:1: group must be a block with one label: group "NAME" { ... }`,
		},
		{
			name: "group name reserved",
			src:  `group "pinned" { }`,
			err:  `policy: p.hcl:1: group name "pinned" is reserved (reject, host and pinned are)`,
		},
		{
			name: "group name with slash",
			src:  `group "a/b" { }`,
			err:  `policy: p.hcl:1: group name "a/b": want 1 to 64 of A-Z a-z 0-9 . _ -`,
		},
		{
			name: "duplicate group",
			src:  "group \"g\" { }\ngroup \"g\" { }",
			err:  `policy: p.hcl:2: duplicate group "g"`,
		},
		{
			name: "unknown key in group",
			src:  "group \"g\" {\n  sets \"s\" { }\n}",
			err:  `policy: p.hcl:2: unknown key "sets" in group "g" (want set)`,
		},
		{
			name: "duplicate set",
			src:  "group \"g\" {\n  set \"s\" { pcrs = { \"0\" = \"{x}\" } }\n  set \"s\" { pcrs = { \"0\" = \"{y}\" } }\n}",
			err:  `policy: p.hcl:3: duplicate set "s" in group "g"`,
		},
		{
			name: "set without pcrs",
			src:  group(`bank = "sha256"`),
			err:  `policy: p.hcl:2: set "s" in group "g" has no pcrs`,
		},
		{
			name: "empty pcrs",
			src:  group(`pcrs = { }`),
			err:  `policy: p.hcl:3: pcrs in set "s" in group "g" is empty`,
		},
		{
			name: "pcrs not a map",
			src:  group(`pcrs = "0,2,4,7"`),
			err:  `policy: p.hcl:3: pcrs in set "s" in group "g" must be a map: pcrs = { "0" = "HEX", ... }`,
		},
		{
			name: "unknown key in set",
			src:  group(`pcr = { "0" = "{x}" }`),
			err:  `policy: p.hcl:3: unknown key "pcr" in set "s" in group "g" (want bank or pcrs)`,
		},
		{
			name: "unknown bank",
			src:  group("bank = \"sm3_256\"\npcrs = { \"0\" = \"{x}\" }"),
			err:  `policy: p.hcl:3: bank "sm3_256" in set "s" in group "g": want sha1, sha256 or sha384`,
		},
		{
			name: "PCR index out of range",
			src:  group(`pcrs = { "24" = "{x}" }`),
			err:  `policy: p.hcl:3: PCR "24" in set "s" in group "g": want an index 0-23`,
		},
		{
			name: "PCR index not a number",
			src:  group(`pcrs = { "-1" = "{x}" }`),
			err:  `policy: p.hcl:3: PCR "-1" in set "s" in group "g": want an index 0-23`,
		},
		{
			name: "PCR given twice",
			src:  group("pcrs = {\n\"7\" = \"{x}\"\n\"07\" = \"{y}\"\n}"),
			err:  `policy: p.hcl:5: PCR 7 is set twice in set "s" in group "g"`,
		},
		{
			name: "bad hex",
			src:  group(`pcrs = { "0" = "0x{x}" }`),
			err:  `policy: p.hcl:3: PCR 0 = "0x` + hexOf("x") + `" in set "s" in group "g": not hex`,
		},
		{
			name: "digest length for the bank",
			src:  group("bank = \"sha1\"\npcrs = { \"4\" = \"{x}\" }"),
			err:  `policy: p.hcl:4: PCR 4 = "` + hexOf("x") + `" in set "s" in group "g": 32 bytes, a sha1 digest is 20`,
		},
		{
			name: "PCR value not a string",
			src:  group(`pcrs = { "0" = 0 }`),
			err:  `policy: p.hcl:3: PCR 0 must be a string: PCR 0 = "..."`,
		},
		{
			name: "host label not an EK hash",
			src:  `host "spire" { }`,
			err:  `policy: p.hcl:1: host "spire": want the EK hash, 64 hex digits`,
		},
		{
			name: "duplicate host",
			src:  "host \"{ek:a}\" { }\nhost \"{ek:a}\" { }",
			err:  `policy: p.hcl:2: duplicate host ` + ekHash("a"),
		},
		{
			name: "unknown group",
			src:  "host \"{ek:a}\" {\n  group = \"towr\"\n}",
			err:  `policy: p.hcl:2: host ` + ekHash("a") + `: unknown group "towr"`,
		},
		{
			name: "duplicate host name",
			src:  "host \"{ek:a}\" { name = \"spire\" }\nhost \"{ek:b}\" { name = \"spire\" }",
			err:  `policy: p.hcl:2: duplicate host name "spire" (also host ` + ekHash("a") + `)`,
		},
		{
			name: "host name that reads as an EK hash",
			src:  "host \"{ek:a}\" { name = \"{ek:b}\" }",
			err:  `policy: p.hcl:1: host name "` + ekHash("b") + `": want 1 to 64 of A-Z a-z 0-9 . _ -, not 64 hex digits`,
		},
		{
			name: "unknown key in host",
			src:  "host \"{ek:a}\" {\n  groups = \"g\"\n}",
			err:  `policy: p.hcl:2: unknown key "groups" in host ` + ekHash("a") + ` (want name, group or set)`,
		},
		{
			name: "host set error names the host",
			src:  "host \"{ek:a}\" {\n  set \"own\" {\n    pcrs = { \"0\" = \"{x}\" }\n    bank = \"sha384\"\n  }\n}",
			err:  `policy: p.hcl:3: PCR 0 = "` + hexOf("x") + `" in set "own" in host ` + ekHash("a") + `: 32 bytes, a sha384 digest is 48`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.ParsePolicy("p.hcl", []byte(expand(tc.src)))
			if err == nil {
				t.Fatalf("no error, want %s", tc.err)
			}
			if err.Error() != tc.err {
				t.Fatalf("error:\n got: %s\nwant: %s", err, tc.err)
			}
		})
	}
}
