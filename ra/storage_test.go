package ra_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"omens.dev/omens/internal/test/pgtest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/ra"
)

// Two RA replicas on one database: an enrollment begun on one finishes on the other, its
// session is used once across both (a replayed finish is refused by the replica that
// began it), and the serial is in the bindings both read.
func TestDBStoreAcrossReplicas(t *testing.T) {
	pg := pgtest.Start(t)
	conn := pg.CreateDB(t, "replicas")
	open := func() *ra.Store {
		s, err := ra.OpenDBStore(context.Background(), conn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	storeA, storeB := open(), open()
	var cfg ra.Config
	r := newRigWith(t, nil, func(c *ra.Config) { c.Store = storeA; cfg = *c })
	cfg.Store = storeB
	replicaA, replicaB := r.srv.Handler(), ra.New(cfg).Handler()

	// The load balancer of this test: begins to A, finishes to B, each finish kept.
	var mu sync.Mutex
	var finishes [][]byte
	lb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/enroll/finish" {
			replicaA.ServeHTTP(w, req)
			return
		}
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		finishes = append(finishes, body)
		mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		replicaB.ServeHTTP(w, req)
	}))
	t.Cleanup(lb.Close)
	r.url = lb.URL

	if _, err := storeB.Approve(host, r.ekHash, time.Now()); err != nil {
		t.Fatal(err)
	}
	meta, err := r.enroll(t, t.TempDir(), 0)
	if err != nil {
		t.Fatalf("enrollment across replicas: %v", err)
	}
	b, err := storeA.Read()
	if err != nil {
		t.Fatal(err)
	}
	if bd := b.Hosts[host]; bd == nil || bd.Latest() == nil || bd.Latest().Serial != meta.Serial {
		t.Fatalf("replica A reads binding %+v, want serial %s", b.Hosts[host], meta.Serial)
	}

	// The finish again, to the replica that began it: the session is gone from both.
	resp, err := http.Post(httptest.NewServer(replicaA).URL+"/v1/enroll/finish", "application/json", bytes.NewReader(finishes[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e protocol.EnrollError
	json.NewDecoder(resp.Body).Decode(&e)
	var fin struct {
		Session string `json:"session"`
	}
	json.Unmarshal(finishes[0], &fin)
	wantBody(t, r, resp.StatusCode, e, 403, ra.CheckSession, `ra: session "`+fin.Session+`" is unknown, used, replaced by a newer begin for its EK, or expired (a replayed enrollment?)`)
}

// The bindings document is checked as the bindings file is: one filed under another
// host's name is refused, naming the database, not its password.
func TestDBStoreCorrupt(t *testing.T) {
	pg := pgtest.Start(t)
	conn := pg.CreateDB(t, "corrupt")
	s, err := ra.OpenDBStore(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.Path(), "PostgreSQL host=127.0.0.1 port=") || !strings.HasSuffix(s.Path(), " db=corrupt") {
		t.Fatalf("Path() = %q", s.Path())
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `INSERT INTO ra_bindings (id, doc) VALUES (true, '{"version": 2, "hosts": {"ca": {"host": "auth", "ek_hash": "ab"}}}')`); err != nil {
		t.Fatal(err)
	}
	_, err = s.Read()
	want := `ra: ` + s.Path() + `: binding of host "auth" filed under "ca"; fix or remove it`
	if err == nil || err.Error() != want {
		t.Fatalf("corrupt document: %v\nwant %s", err, want)
	}
}
