package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"omens.dev/omens/internal/test/pgtest"
	"omens.dev/omens/policy"
)

// openFleetDB opens n Stores on fleetPolicy with their state in one new database of c,
// as n SPIRE servers of one fleet do.
func openFleetDB(t *testing.T, c *pgtest.Cluster, db string, n int) []*policy.Store {
	t.Helper()
	path := writePolicy(t, t.TempDir(), fmt.Sprintf(fleetPolicy, "reject"))
	conn := c.CreateDB(t, db)
	var out []*policy.Store
	for range n {
		s, err := policy.OpenDB(context.Background(), path, conn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

// The database keeps what the state file keeps: the same sequence of decisions gives the
// same report, and the state survives a new Store (a restarted server).
func TestDBStateSameAsFile(t *testing.T) {
	c := pgtest.Start(t)
	file, _ := openFleet(t, "reject")
	db := openFleetDB(t, c, "same", 1)[0]
	spire, auth := ekHash("spire"), ekHash("auth")
	for _, s := range []*policy.Store{file, db} {
		steps := []struct {
			ek   string
			pcrs map[int][]byte
			at   time.Duration
		}{
			{spire, fw10, 0}, {auth, lab, time.Minute}, {spire, fw12, 2 * time.Minute},
		}
		for _, st := range steps {
			s.Evaluate(st.ek, "sha256", st.pcrs, t0.Add(st.at))
		}
		if err := s.AllowNext("spire", time.Hour, t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		dec, err := s.Evaluate(spire, "sha256", fw12, t0.Add(4*time.Minute))
		check(t, "pin in window", dec, err, policy.Decision{Allowed: true, Policy: "pinned", Set: "pinned/2026-11-29T10:04:00Z", Pinned: true}, "")
	}
	rf, err := file.Report(t0.Add(5 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := db.Report(t0.Add(5 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rd.StateFile, "PostgreSQL host=127.0.0.1 port=") || !strings.HasSuffix(rd.StateFile, " db=same") {
		t.Fatalf("state of the database store named %q", rd.StateFile)
	}
	rf.StateFile, rd.StateFile, rf.PolicyFile, rd.PolicyFile = "", "", "", ""
	jf, _ := json.Marshal(rf)
	jd, _ := json.Marshal(rd)
	if string(jf) != string(jd) {
		t.Fatalf("reports differ:\nfile: %s\n  db: %s", jf, jd)
	}
}

// A window opened through one server pins exactly once, whichever server the host
// reaches and however many attestations race: each attestation holds the host's row.
func TestDBWindowPinsOnceAcrossServers(t *testing.T) {
	c := pgtest.Start(t)
	servers := openFleetDB(t, c, "race", 2)
	spire := ekHash("spire")
	if err := servers[0].AllowNext("spire", time.Hour, t0); err != nil {
		t.Fatal(err)
	}
	const each = 8
	var mu sync.Mutex
	pinned, allowed := 0, 0
	var wg sync.WaitGroup
	for i := range 2 * each {
		wg.Go(func() {
			dec, err := servers[i%2].Evaluate(spire, "sha256", fw12, t0.Add(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("attestation %d: %v", i, err)
				return
			}
			if dec.Pinned {
				pinned++
			}
			if dec.Allowed {
				allowed++
			}
		})
	}
	wg.Wait()
	if pinned != 1 || allowed != 2*each {
		t.Fatalf("%d attestations: %d pinned, %d allowed; want 1 pinned, all allowed", 2*each, pinned, allowed)
	}
	for i, s := range servers {
		h := hostReport(t, s, spire, t0.Add(time.Minute))
		if len(h.Pins) != 1 || h.Window != nil {
			t.Fatalf("server %d sees pins %+v, window %+v; want one pin, no window", i, h.Pins, h.Window)
		}
	}
	// The window is closed for both: another new state is refused by either.
	for i, s := range servers {
		if _, err := s.Evaluate(spire, "sha256", fw13, t0.Add(2*time.Minute)); err == nil {
			t.Fatalf("server %d accepted a second new state after the pin", i)
		}
	}
}

// A row that is not a host's state is refused by the state file's checks, naming it.
func TestDBStateCorrupt(t *testing.T) {
	c := pgtest.Start(t)
	s := openFleetDB(t, c, "corrupt", 1)[0]
	spire := ekHash("spire")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.ConnStringDB("corrupt"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO pcr_hosts (ek_hash, state) VALUES ($1, '{"pins": [null]}')`, spire); err != nil {
		t.Fatal(err)
	}
	_, err = s.Evaluate(spire, "sha256", fw10, t0)
	if err == nil || !strings.Contains(err.Error(), "host "+spire+": null pin") {
		t.Fatalf("corrupt row: %v", err)
	}
}
