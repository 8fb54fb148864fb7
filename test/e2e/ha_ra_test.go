package e2e_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"omens.dev/omens/enroll"
	"omens.dev/omens/internal/test/haproxytest"
	"omens.dev/omens/internal/test/pgtest"
	"omens.dev/omens/internal/test/stepcatest"
)

// raLog is the log of the RA whose directory is dir.
func raLog(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ra.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// raDecisions counts the RA's decision lines holding every substr.
func raDecisions(log string, substrs ...string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		ok := strings.Contains(l, `msg="ra decision"`)
		for _, s := range substrs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// TestRAEnrollmentAcrossReplicas: two `omens ra serve` on one PostgreSQL database behind
// haproxy. The device's client opens a connection per request (no keep-alive), so
// haproxy's round robin sends each enrollment's begin to one replica and its finish to
// the other (the test checks, from the replicas' logs, that it did): the session begun on one is finished on the other, the pending request
// queued by one is approved from the database and honored by both, and the serial the
// finishing replica recorded is in the shared bindings.
func TestRAEnrollmentAcrossReplicas(t *testing.T) {
	requireStepCA(t)
	auth := startSimHost(t, "auth")
	ca := stepcatest.Start(t, stepcatest.Config{})
	pg := pgtest.Start(t)
	db := pg.CreateDB(t, "ra")
	var urls, dirs [2]string
	for i := range urls {
		urls[i], dirs[i] = startRAWith(t, ca, auth.bundle(), "--listen", "127.0.0.1:0", "--database", db)
	}
	lb := haproxytest.Start(t, strings.TrimPrefix(urls[0], "https://"), strings.TrimPrefix(urls[1], "https://"))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.RootPool}, DisableKeepAlives: true}}
	dir := filepath.Join(t.TempDir(), "devid")
	cfg := enroll.Config{TPMPath: auth.socket, RAURL: "https://" + lb.Address, RARoots: ca.RootPool, HTTP: client,
		Host: "auth.funlab.casa", Dir: dir, Handle: 0x81010002}

	// Which replica serves a request is haproxy's choice; the logs say which did.
	served := func(path, result string) [2]int {
		return [2]int{raDecisions(raLog(t, dirs[0]), "path="+path, "result="+result), raDecisions(raLog(t, dirs[1]), "path="+path, "result="+result)}
	}
	_, err := enroll.Enroll(context.Background(), cfg)
	var re *enroll.RAError
	if !errors.As(err, &re) || re.Check != "pending_approval" {
		t.Fatalf("first enrollment of an unknown host: %v, want check pending_approval", err)
	}
	pending := omens(t, "ra", "pending", "--database", db)
	if !strings.Contains(pending, "auth.funlab.casa") || !strings.Contains(pending, auth.ekHash(t)) {
		t.Fatalf("the pending queue in the database does not list the host:\n%s", pending)
	}
	omens(t, "ra", "approve", "auth.funlab.casa", "--database", db)
	meta, err := enroll.Enroll(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	begun, finished := served("/v1/enroll/begin", "accepted"), served("/v1/enroll/finish", "accepted")
	queued := served("/v1/enroll/finish", "refused")
	t.Logf("begins accepted per replica %v, finishes refused (pending) %v, finishes accepted %v", begun, queued, finished)
	if begun[0]+begun[1] != 2 || finished[0]+finished[1] != 1 || queued[0]+queued[1] != 1 {
		t.Fatalf("begins %v, finishes accepted %v, refused %v: want 2 begins, 1 finish issued, 1 queued", begun, finished, queued)
	}
	// Round robin over fresh connections alternates: begin, finish, begin, finish go to
	// one replica, the other, the first, the other. Every finish was on the replica that
	// did not begin it.
	fin := [2]int{finished[0] + queued[0], finished[1] + queued[1]}
	if !(begun[0] == 2 && fin[1] == 2) && !(begun[1] == 2 && fin[0] == 2) {
		t.Fatalf("begins per replica %v, finishes %v: the enrollments did not cross replicas", begun, fin)
	}
	if !strings.Contains(omens(t, "ra", "pending", "--database", db), meta.Serial) {
		t.Fatalf("the serial %s is not in the shared bindings", meta.Serial)
	}
}
