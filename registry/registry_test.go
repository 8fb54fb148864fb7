package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/registry"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/verify"
)

const (
	ekSpire = "1111111111111111111111111111111111111111111111111111111111111111"
	ekAuth  = "2222222222222222222222222222222222222222222222222222222222222222"
)

// towerInventory is the Tower with fake EK hashes; extra is appended.
func towerInventory(openbaoSelector, extra string) string {
	return fmt.Sprintf(`trust_domain = "funlab.casa"

host "spire" {
  ek_hash    = %q
  pcr_policy = "tower"
}
host "auth" {
  ek_hash       = %q
  devid_subject = "auth.funlab.casa"
}
host "ca" {
  devid_subject = "ca.funlab.casa"
}

workload "openbao" {
  host      = "spire"
  spiffe_id = "spiffe://funlab.casa/openbao"
  selectors = [%q]
}
%s`, ekSpire, ekAuth, openbaoSelector, extra)
}

const stepCA = `
workload "step-ca" {
  host      = "ca"
  spiffe_id = "spiffe://funlab.casa/step-ca"
  selectors = ["unix:user:step"]
}
`

func parse(t *testing.T, src string) *registry.Inventory {
	t.Helper()
	inv, err := registry.ParseInventory("tower.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseInventoryExample(t *testing.T) {
	inv, err := registry.LoadInventory(filepath.Join("..", "examples", "tower.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if inv.TrustDomain != "funlab.casa" {
		t.Errorf("trust domain %q", inv.TrustDomain)
	}
	var hosts, workloads []string
	for _, h := range inv.Hosts {
		hosts = append(hosts, h.Name)
	}
	for _, w := range inv.Workloads {
		workloads = append(workloads, w.Name+"@"+w.Host+"="+w.SPIFFEID+strings.Join(w.Selectors, ","))
	}
	if want := []string{"spire", "auth", "ca"}; !slices.Equal(hosts, want) {
		t.Errorf("hosts %v, want %v", hosts, want)
	}
	want := []string{"openbao@spire=spiffe://funlab.casa/openbaounix:user:openbao", "step-ca@ca=spiffe://funlab.casa/step-caunix:user:step"}
	if !slices.Equal(workloads, want) {
		t.Errorf("workloads %v, want %v", workloads, want)
	}
	auth := inv.Host("auth")
	if got := auth.NodeSelectors(); !slices.Equal(got, []string{
		"tpm:pub_hash:0000000000000000000000000000000000000000000000000000000000000002",
		"tpm:devid:subject:cn:auth.funlab.casa",
		"tpm:pcr_policy:tower",
	}) {
		t.Errorf("auth's node selectors: %v", got)
	}
	if got := inv.AliasID("auth"); got != "spiffe://funlab.casa/agent/auth" {
		t.Errorf("alias %s", got)
	}
}

func TestParseInventoryErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // each in the error
	}{
		{"syntax", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  ek_hash = \n}\n", []string{"registry: tower.hcl:4:"}},
		{"no trust domain", `host "a" { ek_hash = "` + ekAuth + `" }`, []string{"registry: tower.hcl: trust_domain: missing"}},
		{"bad trust domain", `trust_domain = "Funlab Casa"`, []string{`tower.hcl:1: trust_domain: "Funlab Casa" is not a trust domain name`}},
		{"unknown top key", "trust_domain = \"funlab.casa\"\nhosts \"a\" {}\n", []string{`tower.hcl:2: unknown key "hosts" (want trust_domain, host, workload, spire_server, ra, step_ca or paths)`}},
		{"unknown host key", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  ek_hash = \"" + ekAuth + "\"\n  ek_hsh = \"x\"\n}\n", []string{`tower.hcl:4: host "a": unknown key "ek_hsh" (want ek_hash, devid_subject, pcr_policy, phase, devid_handle, paths)`}},
		{"short EK hash", "trust_domain = \"funlab.casa\"\n\nhost \"auth\" {\n  ek_hash = \"abc\"\n}\n", []string{`tower.hcl:4: host "auth": ek_hash: want 64 hex digits`}},
		{"EK hash a number", "trust_domain = \"funlab.casa\"\nhost \"auth\" {\n  ek_hash = 12\n}\n", []string{`tower.hcl:3: host "auth": ek_hash: want a string`}},
		{"host without identity", "trust_domain = \"funlab.casa\"\nhost \"auth\" {\n  pcr_policy = \"tower\"\n}\n", []string{`tower.hcl:2: host "auth": ek_hash, devid_subject: set one of them or both`}},
		{"host without name", "trust_domain = \"funlab.casa\"\nhost {\n}\n", []string{`tower.hcl:2: host: want a block with one name: host "NAME" { ... }`}},
		{"bad host name", "trust_domain = \"funlab.casa\"\nhost \"a/b\" {\n  devid_subject = \"x\"\n}\n", []string{`tower.hcl:2: host "a/b": name: must be a SPIFFE ID path segment`}},
		{"duplicate host", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"x\"\n}\nhost \"a\" {\n  devid_subject = \"y\"\n}\n", []string{`tower.hcl:5: host "a": defined twice (first at line 2)`}},
		{"key set twice", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"x\"\n  devid_subject = \"y\"\n}\n", []string{`tower.hcl:4: host "a": devid_subject: set twice`}},
		{"workload on unknown host", towerInventory("unix:user:openbao", "workload \"w\" {\n  host = \"db\"\n  spiffe_id = \"spiffe://funlab.casa/w\"\n  selectors = [\"unix:uid:0\"]\n}\n"), []string{`tower.hcl:20: workload "w": host: "db" is not a host of the inventory`}},
		{"workload in another trust domain", towerInventory("unix:user:openbao", "workload \"w\" {\n  host = \"ca\"\n  spiffe_id = \"spiffe://example.org/w\"\n  selectors = [\"unix:uid:0\"]\n}\n"), []string{`tower.hcl:20: workload "w": spiffe_id: spiffe://example.org/w is not in trust domain funlab.casa`}},
		{"bad selector", towerInventory("openbao", ""), []string{`tower.hcl:18: workload "openbao": selectors: "openbao" is not type:value`}},
		{"bad SPIFFE ID", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"x\"\n}\nworkload \"w\" {\n  host = \"a\"\n  spiffe_id = \"funlab.casa/w\"\n  selectors = [\"unix:uid:0\"]\n}\n", []string{`tower.hcl:7: workload "w": spiffe_id: "funlab.casa/w"`}},
		{"workload missing keys", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  devid_subject = \"x\"\n}\nworkload \"w\" {\n  host = \"a\"\n}\n", []string{`tower.hcl:5: workload "w": spiffe_id: missing`}},
		{"two errors at once", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  ek_hash = \"zz\"\n}\nhost \"b\" {\n  colour = \"red\"\n  devid_subject = \"b\"\n}\n", []string{`tower.hcl:3: host "a": ek_hash`, `tower.hcl:6: host "b": unknown key "colour"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.ParseInventory("tower.hcl", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		sels []string
		want registry.Method
	}{
		{"join_token", nil, registry.MethodJoinToken},
		{"tpm", []string{"tpm:pub_hash:" + ekAuth, "tpm:ek_cert:issuer:cn:Infineon", "tpm:pcr_policy:tower"}, registry.MethodTPMEK},
		{"tpm", []string{"tpm:pub_hash:" + ekAuth, "tpm:devid:subject:cn:auth.funlab.casa", "tpm:devid:issuer:cn:Tower DevID CA"}, registry.MethodTPMDevID},
		{"tpm_devid", []string{"tpm_devid:subject:cn:auth.funlab.casa"}, registry.MethodTPMDevID},
		{"x509pop", []string{"x509pop:subject:cn:auth"}, registry.MethodOther},
	} {
		if got := registry.Classify(tc.typ, tc.sels); got != tc.want {
			t.Errorf("Classify(%q, %v) = %q, want %q", tc.typ, tc.sels, got, tc.want)
		}
	}
	inv := parse(t, towerInventory("unix:user:openbao", ""))
	for _, tc := range []struct {
		sels []string
		want string
	}{
		{[]string{"tpm:pub_hash:" + ekSpire, "tpm:pcr_policy:tower"}, "spire"},
		{[]string{"tpm:pub_hash:" + strings.ToUpper(ekAuth)}, "auth"},
		{[]string{"tpm:pub_hash:ff", "tpm:devid:subject:cn:ca.funlab.casa"}, "ca"},
		{[]string{"tpm_devid:subject:cn:ca.funlab.casa"}, "ca"},
		{[]string{"tpm:devid:subject:cn:db.funlab.casa"}, ""},
	} {
		got := ""
		if h := inv.HostOf(tc.sels); h != nil {
			got = h.Name
		}
		if got != tc.want {
			t.Errorf("HostOf(%v) = %q, want %q", tc.sels, got, tc.want)
		}
	}
}

func TestRemoveNodeAttestor(t *testing.T) {
	src := `server {
    trust_domain = "funlab.casa"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
        }
    }
    # the plan's today: join tokens
    NodeAttestor "join_token" {
        plugin_data {}
    }
    NodeAttestor "tpm" {
        plugin_cmd = "omens-attestor-server"
        plugin_data { devid_mode = "ek_cert" }
    }
}
`
	want := strings.Replace(src, "    # the plan's today: join tokens\n    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }\n", "", 1)
	out, found, err := registry.RemoveNodeAttestor([]byte(src), "join_token")
	if err != nil || !found {
		t.Fatalf("found %v, err %v", found, err)
	}
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	again, found, err := registry.RemoveNodeAttestor(out, "join_token")
	if err != nil || found || !bytes.Equal(again, out) {
		t.Errorf("second removal: found %v, err %v, changed %v", found, err, !bytes.Equal(again, out))
	}
	if _, _, err := registry.RemoveNodeAttestor([]byte("plugins {\n"), "join_token"); err == nil {
		t.Error("a config that does not parse: no error")
	}
}

// omens runs the CLI in-process.
func omens(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := cli.Main(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// entry is an entry as the server lists it, for comparisons.
type entry struct {
	ID, SPIFFEID, ParentID, Hint string
	Selectors                    []string
}

// listEntries lists the server's entries straight through the API, apart from the code
// under test.
func listEntries(t *testing.T, socket string) map[string]entry {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := entryv1.NewEntryClient(conn).ListEntries(ctx, &entryv1.ListEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	for _, e := range resp.Entries {
		var sels []string
		for _, s := range e.Selectors {
			sels = append(sels, s.Type+":"+s.Value)
		}
		slices.Sort(sels)
		id := "spiffe://" + e.SpiffeId.TrustDomain + e.SpiffeId.Path
		out[id] = entry{ID: e.Id, SPIFFEID: id, ParentID: "spiffe://" + e.ParentId.TrustDomain + e.ParentId.Path, Hint: e.Hint, Selectors: sels}
	}
	return out
}

func dial(t *testing.T, socket string) *registry.Client {
	t.Helper()
	c, err := registry.Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// actions renders a plan's changes as "action spiffe_id" lines, for comparisons.
func actions(p *registry.Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, string(c.Action)+" "+c.SPIFFEID)
	}
	for _, c := range p.Stale {
		out = append(out, string(c.Action)+" "+c.SPIFFEID)
	}
	return out
}

// TestApplyWithRealSPIRE applies the Tower to a real SPIRE server: dry run, create,
// no-op second run, change, adoption of a hand-made twin, prune that spares hand-made
// entries, through the library and through `omens apply`.
func TestApplyWithRealSPIRE(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.ServerConfig{})
	ctx := context.Background()
	c := dial(t, srv.SocketPath)
	dir := t.TempDir()

	// Dry run: the plan creates everything, and nothing changes.
	file := writeFile(t, dir, "tower.hcl", towerInventory("unix:user:openbao", stepCA))
	code, stdout, stderr := omens("apply", "--file", file, "--spire-socket", srv.SocketPath, "--dry-run")
	if code != 0 {
		t.Fatalf("apply --dry-run: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("omens apply --dry-run:\n%s", stdout)
	for _, want := range []string{
		"+ create    spiffe://funlab.casa/agent/spire (host spire)",
		"+ create    spiffe://funlab.casa/openbao (workload openbao)",
		"      parent     spiffe://funlab.casa/agent/spire",
		"5 to create, 0 to update, 0 to delete, 0 unchanged",
		"dry run: nothing was changed",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, stdout)
		}
	}
	if got := listEntries(t, srv.SocketPath); len(got) != 0 {
		t.Fatalf("the dry run created entries: %v", got)
	}

	// Create.
	code, stdout, stderr = omens("apply", "--file", file, "--spire-socket", srv.SocketPath)
	if code != 0 || !strings.Contains(stdout, "applied: 5 created, 0 updated, 0 deleted") {
		t.Fatalf("apply: exit %d\n%s%s", code, stdout, stderr)
	}
	got := listEntries(t, srv.SocketPath)
	server := "spiffe://funlab.casa/spire/server"
	for _, want := range []entry{
		{SPIFFEID: "spiffe://funlab.casa/agent/spire", ParentID: server, Hint: "omens:host:spire", Selectors: []string{"tpm:pcr_policy:tower", "tpm:pub_hash:" + ekSpire}},
		{SPIFFEID: "spiffe://funlab.casa/agent/auth", ParentID: server, Hint: "omens:host:auth", Selectors: []string{"tpm:devid:subject:cn:auth.funlab.casa", "tpm:pub_hash:" + ekAuth}},
		{SPIFFEID: "spiffe://funlab.casa/agent/ca", ParentID: server, Hint: "omens:host:ca", Selectors: []string{"tpm:devid:subject:cn:ca.funlab.casa"}},
		{SPIFFEID: "spiffe://funlab.casa/openbao", ParentID: "spiffe://funlab.casa/agent/spire", Hint: "omens:workload:openbao", Selectors: []string{"unix:user:openbao"}},
		{SPIFFEID: "spiffe://funlab.casa/step-ca", ParentID: "spiffe://funlab.casa/agent/ca", Hint: "omens:workload:step-ca", Selectors: []string{"unix:user:step"}},
	} {
		e, ok := got[want.SPIFFEID]
		want.ID = e.ID
		if !ok || fmt.Sprint(e) != fmt.Sprint(want) {
			t.Errorf("entry %s:\n got %+v\nwant %+v", want.SPIFFEID, e, want)
		}
	}
	if len(got) != 5 {
		t.Errorf("%d entries, want 5: %v", len(got), got)
	}

	// A second run changes nothing, and says so.
	code, stdout, _ = omens("apply", "--file", file, "--spire-socket", srv.SocketPath)
	if code != 0 || !strings.Contains(stdout, "no changes: 5 entries unchanged") || strings.Contains(stdout, "applied") {
		t.Errorf("second apply: exit %d\n%s", code, stdout)
	}
	if !strings.Contains(stdout, "= unchanged spiffe://funlab.casa/step-ca (workload step-ca)") {
		t.Errorf("second apply does not list unchanged entries:\n%s", stdout)
	}
	if after := listEntries(t, srv.SocketPath); fmt.Sprint(after) != fmt.Sprint(got) {
		t.Errorf("the second run changed entries:\n%v\n%v", got, after)
	}

	// A changed selector updates the entry in place.
	changed := parse(t, towerInventory("unix:uid:1001", stepCA))
	plan, err := c.Plan(ctx, changed, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := "update spiffe://funlab.casa/openbao"; !slices.Contains(actions(plan), want) || plan.Count(registry.Update) != 1 || plan.Count(registry.Unchanged) != 4 {
		t.Fatalf("plan %v, want one %q and 4 unchanged", actions(plan), want)
	}
	if s := plan.String(); !strings.Contains(s, "~ update    spiffe://funlab.casa/openbao (workload openbao)") ||
		!strings.Contains(s, "selector   - unix:user:openbao") || !strings.Contains(s, "selector   + unix:uid:1001") {
		t.Errorf("plan text:\n%s", s)
	}
	if err := c.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	bao := listEntries(t, srv.SocketPath)["spiffe://funlab.casa/openbao"]
	if bao.ID != got["spiffe://funlab.casa/openbao"].ID || !slices.Equal(bao.Selectors, []string{"unix:uid:1001"}) {
		t.Errorf("after the update: %+v (was %+v)", bao, got["spiffe://funlab.casa/openbao"])
	}

	// Hand-made entries: one beside the inventory (never touched), one the twin of an
	// inventory workload (adopted).
	handmade := srv.CreateEntry(t, "spiffe://funlab.casa/agent/spire", "spiffe://funlab.casa/handmade", "unix:uid:1000")
	extra := "workload \"grafana\" {\n  host = \"auth\"\n  spiffe_id = \"spiffe://funlab.casa/grafana\"\n  selectors = [\"unix:user:grafana\"]\n}\n"
	twin := srv.CreateEntry(t, "spiffe://funlab.casa/agent/auth", "spiffe://funlab.casa/grafana", "unix:user:grafana")
	withGrafana := parse(t, towerInventory("unix:uid:1001", stepCA+extra))
	plan, err = c.Plan(ctx, withGrafana, true)
	if err != nil {
		t.Fatal(err)
	}
	var adopt registry.Change
	for _, ch := range plan.Changes {
		if ch.Name == "grafana" {
			adopt = ch
		}
	}
	if adopt.Action != registry.Update || !adopt.Adopt || adopt.EntryID != twin || plan.Count(registry.Update) != 1 || plan.Count(registry.Create) != 0 {
		t.Errorf("hand-made twin: %+v; plan %v", adopt, actions(plan))
	}
	if err := c.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if e := listEntries(t, srv.SocketPath)["spiffe://funlab.casa/grafana"]; e.ID != twin || e.Hint != "omens:workload:grafana" {
		t.Errorf("adopted entry: %+v", e)
	}

	// step-ca leaves the inventory: without --prune it is stale and kept, with --prune it
	// is deleted; the hand-made entry stays either way.
	pruned := writeFile(t, dir, "pruned.hcl", towerInventory("unix:uid:1001", extra))
	code, stdout, _ = omens("apply", "--file", pruned, "--spire-socket", srv.SocketPath)
	t.Logf("omens apply without --prune:\n%s", stdout)
	if code != 0 || !strings.Contains(stdout, "! stale     spiffe://funlab.casa/step-ca (workload step-ca): managed by omens, no longer in the inventory (--prune deletes it)") ||
		!strings.Contains(stdout, "no changes: 5 entries unchanged") || strings.Contains(stdout, "handmade") {
		t.Errorf("apply without --prune: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = omens("apply", "--file", pruned, "--spire-socket", srv.SocketPath, "--prune", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "- delete    spiffe://funlab.casa/step-ca (workload step-ca)") || strings.Contains(stdout, "handmade") {
		t.Errorf("apply --prune --dry-run: exit %d\n%s", code, stdout)
	}
	if _, ok := listEntries(t, srv.SocketPath)["spiffe://funlab.casa/step-ca"]; !ok {
		t.Fatal("the dry run deleted step-ca")
	}
	var out struct {
		Changes []registry.Change `json:"changes"`
		Summary string            `json:"summary"`
		Applied bool              `json:"applied"`
		DryRun  bool              `json:"dry_run"`
	}
	code, stdout, stderr = omens("apply", "--file", pruned, "--spire-socket", srv.SocketPath, "--prune", "--json")
	if code != 0 {
		t.Fatalf("apply --prune --json: exit %d\n%s%s", code, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if !out.Applied || out.DryRun || out.Summary != "0 to create, 0 to update, 1 to delete, 5 unchanged" {
		t.Errorf("apply --prune --json: %s", stdout)
	}
	final := listEntries(t, srv.SocketPath)
	if _, ok := final["spiffe://funlab.casa/step-ca"]; ok {
		t.Error("step-ca was not pruned")
	}
	if e, ok := final["spiffe://funlab.casa/handmade"]; !ok || e.ID != handmade {
		t.Errorf("the hand-made entry was pruned: %v", final)
	}
	if len(final) != 6 {
		t.Errorf("%d entries after prune, want 6 (4 hosts and workloads, grafana, handmade): %v", len(final), final)
	}
	plan, err = c.Plan(ctx, parse(t, towerInventory("unix:uid:1001", extra)), true)
	if err != nil || plan.HasChanges() {
		t.Errorf("after prune: %v %v", actions(plan), err)
	}

	// Errors name the file and line.
	bad := writeFile(t, dir, "bad.hcl", "trust_domain = \"funlab.casa\"\nhost \"a\" {\n  ek_hash = \"xyz\"\n}\n")
	code, _, stderr = omens("apply", "--file", bad, "--spire-socket", srv.SocketPath)
	if code != 1 || !strings.Contains(stderr, `bad.hcl:3: host "a": ek_hash: want 64 hex digits`) {
		t.Errorf("bad inventory: exit %d, stderr %q", code, stderr)
	}
}

// TestMigrateWithJoinToken: an agent on a join token (the plan's today) is listed as
// join_token under its host, and `migrate finish` refuses, naming the host.
func TestMigrateWithJoinToken(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.ServerConfig{})
	token := srv.JoinToken(t, "spiffe://funlab.casa/agent/auth")
	spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth", JoinToken: token})
	agentID := "spiffe://funlab.casa/spire/agent/join_token/" + token
	dir := t.TempDir()
	file := writeFile(t, dir, "tower.hcl", `trust_domain = "funlab.casa"
host "auth" {
  ek_hash = "`+ekAuth+`"
}
`)
	conf := writeFile(t, dir, "server.conf", "plugins {\n  NodeAttestor \"join_token\" {\n    plugin_data {}\n  }\n}\n")

	code, stdout, stderr := omens("migrate", "status", "--spire-socket", srv.SocketPath)
	if code != 0 {
		t.Fatalf("migrate status: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("omens migrate status:\n%s", stdout)
	var row string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, agentID) {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if want := "auth join_token join_token " + agentID + " attested"; row != want {
		t.Errorf("migrate status row %q, want %q\n%s", row, want, stdout)
	}

	var m registry.Migration
	code, stdout, _ = omens("migrate", "status", "--spire-socket", srv.SocketPath, "--file", file, "--json")
	if code != 0 {
		t.Fatalf("migrate status --json: exit %d", code)
	}
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(m.Agents) != 1 || m.Agents[0].Method != registry.MethodJoinToken || m.Agents[0].Host != "auth" || m.Agents[0].ID != agentID {
		t.Errorf("agents: %+v", m.Agents)
	}
	if len(m.Hosts) != 1 || !slices.Equal(m.Hosts[0].JoinTokenAgents, []string{agentID}) || len(m.Hosts[0].TPMAgents) != 0 {
		t.Errorf("hosts: %+v", m.Hosts)
	}

	code, stdout, stderr = omens("migrate", "finish", "--file", file, "--spire-socket", srv.SocketPath, "--server-config", conf)
	want := `omens: migrate finish: refusing to finish the migration: 1 host(s) have no TPM-attested agent yet: auth (only a join-token agent); move them to NodeAttestor "tpm" first`
	if code != 1 || !strings.Contains(stderr, want) || stdout != "" {
		t.Errorf("migrate finish: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, want)
	}
	if a := srv.Agent(t, agentID); a.Banned {
		t.Error("the refused finish banned the join-token agent")
	}
}

// requireEngines skips without SPIRE (fails when CI=true), before anything slow is built.
func requireEngines(t *testing.T) {
	t.Helper()
	enginetest.Require(t, engines.SPIREServer, engines.SPIREAgent)
}

// buildPlugin builds one of the NodeAttestor "tpm" plugin binaries into dir.
func buildPlugin(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	if b, err := exec.Command("go", "build", "-o", out, "omens.dev/omens/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}

// startSim serves an in-process simulated TPM on a unix socket until the test ends and
// returns the socket, the manufacturer CA bundle and the EK hash.
func startSim(t *testing.T) (socket, bundle, ekHash string) {
	t.Helper()
	sim, socket := testtpm.ServeSim(t, tpmsim.Options{})
	eks, err := tpm.EndorsementKeys(sim)
	if err != nil {
		t.Fatal(err)
	}
	if ekHash, err = verify.EKHash(eks[0].PublicKey); err != nil {
		t.Fatal(err)
	}
	return socket, sim.BundlePath(), ekHash
}

// TestMigrateFinishWithRealSPIRE plays the move off join tokens for host auth: it starts
// on a join token, a second agent attests with NodeAttestor "tpm" on the host's
// (simulated) TPM, and `migrate finish` then bans the join-token agent and renders the
// server config without join_token.
func TestMigrateFinishWithRealSPIRE(t *testing.T) {
	requireEngines(t)
	bin := t.TempDir()
	serverPlugin := buildPlugin(t, bin, "omens-attestor-server")
	agentPlugin := buildPlugin(t, bin, "omens-attestor-agent")
	socket, bundle, ekHash := startSim(t)
	srv := spiretest.StartServer(t, spiretest.ServerConfig{NodeAttestors: []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm", Cmd: serverPlugin, Data: []spireconf.Setting{
		{Key: "devid_mode", Value: "ek_cert"},
		{Key: "ca_path", Value: bundle},
		{Key: "pcr_bank", Value: "sha256"},
		{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
	}}}})
	token := srv.JoinToken(t, "spiffe://funlab.casa/agent/auth")
	spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth-jt", JoinToken: token})
	joinID := "spiffe://funlab.casa/spire/agent/join_token/" + token
	tpmID := "spiffe://funlab.casa/spire/agent/tpm/" + ekHash
	dir := t.TempDir()
	file := writeFile(t, dir, "tower.hcl", "trust_domain = \"funlab.casa\"\nhost \"auth\" {\n  ek_hash = \""+ekHash+"\"\n}\n")
	conf := writeFile(t, dir, "server.conf", "server {\n  trust_domain = \"funlab.casa\"\n}\n\nplugins {\n  NodeAttestor \"join_token\" {\n    plugin_data {}\n  }\n  NodeAttestor \"tpm\" {\n    plugin_data {}\n  }\n}\n")
	out := filepath.Join(dir, "server.conf.new")

	code, _, stderr := omens("migrate", "finish", "--file", file, "--spire-socket", srv.SocketPath, "--server-config", conf, "--out", out)
	if code != 1 || !strings.Contains(stderr, "auth (only a join-token agent)") {
		t.Fatalf("migrate finish before the TPM agent: exit %d, stderr %q", code, stderr)
	}

	spiretest.StartAgent(t, srv, spiretest.AgentConfig{Name: "auth-tpm", NodeAttestor: &spireconf.Plugin{Type: "NodeAttestor", Name: "tpm", Cmd: agentPlugin, Data: []spireconf.Setting{
		{Key: "tpm_path", Value: socket},
		{Key: "pcr_bank", Value: "sha256"},
		{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
	}}})

	var m registry.Migration
	code, stdout, _ := omens("migrate", "status", "--file", file, "--spire-socket", srv.SocketPath, "--json")
	if err := json.Unmarshal([]byte(stdout), &m); code != 0 || err != nil {
		t.Fatalf("migrate status --json: exit %d, %v\n%s", code, err, stdout)
	}
	methods := map[string]string{}
	for _, a := range m.Agents {
		methods[a.ID] = a.Host + " " + string(a.Method)
	}
	if want := map[string]string{joinID: "auth join_token", tpmID: "auth tpm-ek"}; fmt.Sprint(methods) != fmt.Sprint(want) {
		t.Errorf("agents %v, want %v", methods, want)
	}
	if len(m.Hosts) != 1 || !slices.Equal(m.Hosts[0].TPMAgents, []string{tpmID}) {
		t.Errorf("hosts %+v", m.Hosts)
	}

	code, stdout, stderr = omens("migrate", "finish", "--file", file, "--spire-socket", srv.SocketPath, "--server-config", conf, "--out", out)
	if code != 0 || !strings.Contains(stdout, "banned join-token agent "+joinID+" (auth)") {
		t.Fatalf("migrate finish: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("omens migrate finish:\n%s", stdout)
	if !srv.Agent(t, joinID).Banned || srv.Agent(t, tpmID).Banned {
		t.Errorf("after finish: join-token agent banned %v, TPM agent banned %v", srv.Agent(t, joinID).Banned, srv.Agent(t, tpmID).Banned)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "server {\n  trust_domain = \"funlab.casa\"\n}\n\nplugins {\n  NodeAttestor \"tpm\" {\n    plugin_data {}\n  }\n}\n"; string(b) != want {
		t.Errorf("rendered config:\n%s\nwant:\n%s", b, want)
	}

	// Again: nothing left to ban; the config goes to standard output.
	code, stdout, stderr = omens("migrate", "finish", "--file", file, "--spire-socket", srv.SocketPath, "--server-config", out)
	if code != 0 || stdout != string(b) || !strings.Contains(stderr, "no join-token agent left to ban") {
		t.Errorf("second migrate finish: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
