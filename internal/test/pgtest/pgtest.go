// Package pgtest runs a throwaway PostgreSQL cluster for tests (internal/pgproc), stopped
// and removed when the test ends, or ends the test (enginetest.Missing) when postgresql is
// not installed.
package pgtest

import (
	"context"
	"errors"
	"testing"

	"omens.dev/omens/internal/pgproc"
	"omens.dev/omens/internal/test/enginetest"
)

// BinDir is where Debian's postgresql 15 keeps initdb and postgres; OMENS_PG_BIN
// overrides it.
const BinDir = pgproc.BinDir

// Cluster is a running PostgreSQL cluster with one database, "omens".
type Cluster struct{ *pgproc.Cluster }

// CreateDB creates a database and returns its connection string: each part of a test
// (SPIRE's datastore, the plugin's state, the RA's) gets its own.
func (c *Cluster) CreateDB(t testing.TB, name string) string {
	t.Helper()
	s, err := c.Cluster.CreateDB(context.Background(), name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

// Start runs a cluster for the test.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := pgproc.Start(context.Background())
	if errors.Is(err, pgproc.ErrMissing) {
		enginetest.Missing(t, "pgtest: "+err.Error())
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Cluster{c}
}
