package pgstate_test

import (
	"context"
	"strings"
	"testing"

	"omens.dev/omens/internal/pgstate"
	"omens.dev/omens/internal/test/pgtest"
)

func TestMigrate(t *testing.T) {
	c := pgtest.Start(t)
	ctx := context.Background()
	conn := c.CreateDB(t, "migrate")
	v1 := []string{`CREATE TABLE t (n integer)`}
	v2 := append(v1, `INSERT INTO t VALUES (1)`)
	for _, m := range [][]string{v1, v1, v2, v2} {
		pool, err := pgstate.Open(ctx, conn, "test", m)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := pgstate.Version(ctx, pool, "test"); err != nil || v != len(m) {
			t.Fatalf("version = %d, %v; want %d", v, err, len(m))
		}
		pool.Close()
	}
	pool, err := pgstate.Open(ctx, conn, "test", v2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows = %d, %v: want migration 2 applied once", n, err)
	}
	// Another component has a version of its own.
	if v, _ := pgstate.Version(ctx, pool, "other"); v != 0 {
		t.Fatalf("other component at version %d", v)
	}
	_, err = pgstate.Open(ctx, conn, "test", v1)
	want := "the test schema is at version 2, this omens knows up to 1: run the newer omens that migrated it"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("older code on a newer schema: %v, want %q", err, want)
	}
	// A failed migration changes nothing.
	bad := append(v2, `CREATE TABLE u (n integer)`, `NOT SQL`)
	if _, err := pgstate.Open(ctx, conn, "test", bad); err == nil || !strings.Contains(err.Error(), "test schema migration 4") {
		t.Fatalf("bad migration: %v", err)
	}
	if v, _ := pgstate.Version(ctx, pool, "test"); v != 2 {
		t.Fatalf("version after a failed migration = %d, want 2", v)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM u").Scan(&n); err == nil {
		t.Fatal("table u of the failed migration exists")
	}
}

func TestDescribeHidesPassword(t *testing.T) {
	for _, s := range []string{"postgres://omens:s3cret@db.funlab.casa:5433/pcr", "host=db.funlab.casa port=5433 dbname=pcr user=omens password=s3cret"} {
		got := pgstate.DescribeString(s)
		if got != "host=db.funlab.casa port=5433 db=pcr" {
			t.Errorf("DescribeString(%q) = %q", s, got)
		}
	}
	_, err := pgstate.Open(context.Background(), "postgres://omens:s3cret@db:notaport/pcr", "test", nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open of a bad string: %v (must fail without the password)", err)
	}
}
