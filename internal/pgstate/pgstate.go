// Package pgstate is where omens keeps shared state in PostgreSQL when several servers
// serve one fleet (the SPIRE server plugin's boot-state pins and windows, the RA's
// bindings and enrollment sessions): opening a pool from a connection string, naming the
// database in logs without its password, and the versioned schema migrations of each
// component, applied once, in a transaction.
package pgstate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open connects to the database of connString (a postgres:// URL or key=value string)
// and applies the component's migrations (Migrate).
func Open(ctx context.Context, connString, component string, migrations []string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors may quote the string, password included: say only what failed.
		return nil, errors.New("pgstate: the connection string does not parse: want postgres://USER[:PASSWORD]@HOST[:PORT]/DB or host=... dbname=... (see PostgreSQL's libpq docs)")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstate: %s: %w", Describe(cfg.ConnConfig), err)
	}
	if err := Migrate(ctx, pool, component, migrations); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstate: %s: %w", Describe(cfg.ConnConfig), err)
	}
	return pool, nil
}

// Describe names a database for logs: host, port and database, never the password.
func Describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("host=%s port=%d db=%s", c.Host, c.Port, c.Database)
}

// DescribeString is Describe for a connection string; one that does not parse is
// "an unparsable connection string".
func DescribeString(connString string) string {
	c, err := pgx.ParseConfig(connString)
	if err != nil {
		return "an unparsable connection string"
	}
	return Describe(c)
}

// migrateLock is the advisory lock key that serializes migrations of every component, so
// that two servers starting at once do not both apply one.
const migrateLock = 0x6f6d656e73 // "omens"

// Migrate brings component's schema to len(migrations): migration i (from 0) takes the
// schema from version i to i+1. The version is kept in the table schema_version, one row
// per component. All pending migrations run in one transaction. A database whose version
// is newer than the code's is refused: this code would misread it.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, migrations []string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (component text PRIMARY KEY, version integer NOT NULL)`); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	var have int
	err = tx.QueryRow(ctx, "SELECT version FROM schema_version WHERE component = $1", component).Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) {
		have = 0
	} else if err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("the %s schema is at version %d, this omens knows up to %d: run the newer omens that migrated it", component, have, len(migrations))
	}
	if have == len(migrations) {
		return nil
	}
	for i := have; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("%s schema migration %d: %w", component, i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version (component, version) VALUES ($1, $2)
		ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version`, component, len(migrations)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Version returns component's schema version (0 when it has none).
func Version(ctx context.Context, pool *pgxpool.Pool, component string) (int, error) {
	var v int
	err := pool.QueryRow(ctx, "SELECT version FROM schema_version WHERE component = $1", component).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, err
}
