package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"omens.dev/omens/internal/test/pgtest"
)

// TestPCRStateDatabaseConfig: pcr_state_database is checked by Validate without reaching
// the database; Configure reaches it (creating the schema), and a failure names the host
// and database, never the password.
func TestPCRStateDatabaseConfig(t *testing.T) {
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(policyPath, []byte("unknown_hosts = \"reject\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadPlugins(t)
	core := &configv1.CoreConfiguration{TrustDomain: "funlab.casa"}
	for _, tc := range []struct {
		hcl  string
		want []string
	}{
		{`pcr_state_database = "postgres://omens@db.funlab.casa/pcr"`, []string{"pcr_state_database is set without pcr_policy_path"}},
		{`pcr_policy_path = "` + policyPath + `"
		  pcr_state_path = "/var/lib/omens/state.json"
		  pcr_state_database = "postgres://omens@db.funlab.casa/pcr"`, []string{"pcr_state_path and pcr_state_database are both set: the state lives in one of them"}},
		{`pcr_policy_path = "` + policyPath + `"
		  pcr_state_database = "postgres://omens:s3cret@db.funlab.casa:notaport/pcr"`, []string{"pcr_state_database does not parse: want postgres://USER[:PASSWORD]@HOST[:PORT]/DB or host=... dbname=..."}},
		// Validate does not reach the database.
		{`pcr_policy_path = "` + policyPath + `"
		  pcr_state_database = "postgres://omens:s3cret@db.funlab.casa/pcr"`, nil},
	} {
		resp, err := p.serverConfig.Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: "allow_insecure = true\n" + tc.hcl})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Valid != (tc.want == nil) || !slices.Equal(resp.Notes, tc.want) {
			t.Errorf("%s: Validate notes %q, want %q", tc.hcl, resp.Notes, tc.want)
		}
	}

	pg := pgtest.Start(t)
	db := pg.CreateDB(t, "pcr")
	configure := func(conn string) error {
		_, err := p.serverConfig.Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core,
			HclConfiguration: "allow_insecure = true\npcr_policy_path = \"" + policyPath + "\"\npcr_state_database = \"" + conn + "\""})
		return err
	}
	if err := configure(db); err != nil {
		t.Fatalf("Configure on the database: %v", err)
	}
	if !strings.Contains(p.log.String(), `boot-state policy state in PostgreSQL: database="host=127.0.0.1 port=`) {
		t.Errorf("no log line naming the database:\n%s", p.log.String())
	}
	// A database that is not there: PostgreSQL refuses, the error names it without the
	// password.
	bad := strings.Replace(db, "/pcr?", "/nosuchdb?", 1)
	bad = strings.Replace(bad, "postgres://"+pg.User+"@", "postgres://"+pg.User+":s3cret@", 1)
	err := configure(bad)
	if err == nil || !strings.Contains(err.Error(), " db=nosuchdb") || strings.Contains(err.Error(), "s3cret") || strings.Contains(p.log.String(), "s3cret") {
		t.Fatalf("Configure on a missing database: %v", err)
	}
}
