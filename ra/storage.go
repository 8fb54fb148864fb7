package ra

// Where the RA keeps its state. The rules (policy.go, sessions.go, revoke.go) are the same
// whatever the storage; only how the state is read, locked and saved differs:
//
//   - on one machine (the default): the bindings file under its lock (bindings.go), and
//     the open enrollments in the serving process's memory;
//   - in PostgreSQL (OpenDBStore), for several replicas of the RA behind one address: the
//     bindings (with the pending queue and every issued serial) as one document, locked
//     with SELECT ... FOR UPDATE for each change, and the open enrollments as rows, so an
//     enrollment begun on one replica finishes on another, and only once (its row is
//     deleted by the finish that takes it).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/pgstate"
	"omens.dev/omens/verify"
)

// bindingsBackend keeps the Bindings.
type bindingsBackend interface {
	// update runs f on the bindings under a lock every holder shares, and saves them
	// when f returns nil.
	update(f func(*Bindings) error) error
	read() (*Bindings, error)
	// where names the state for messages: a file path, or the database.
	where() string
	close()
}

// sessionStore keeps the open enrollments under the rules of sessions.go.
type sessionStore interface {
	open(s *session, now time.Time, max, perAddr int) error
	// take removes and returns the session id names, if it is open at now.
	take(id string, now time.Time) (*session, error)
}

// StateComponent is the RA's name in the database's schema_version table.
const StateComponent = "ra"

// migrations are the RA's schema versions (pgstate.Migrate); append only.
var migrations = []string{
	// 1: the bindings document (the bindings file's content) and the open enrollments.
	`CREATE TABLE ra_bindings (
		id boolean PRIMARY KEY DEFAULT true CHECK (id),
		doc jsonb NOT NULL,
		updated timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE ra_sessions (
		id text PRIMARY KEY,
		ek_hash text NOT NULL,
		addr text NOT NULL,
		opened timestamptz NOT NULL,
		expires timestamptz NOT NULL,
		begin_msg bytea NOT NULL,
		secret bytea NOT NULL,
		nonce bytea NOT NULL
	);
	CREATE INDEX ra_sessions_ek ON ra_sessions (ek_hash);
	CREATE INDEX ra_sessions_addr ON ra_sessions (addr);
	CREATE INDEX ra_sessions_opened ON ra_sessions (opened)`,
}

// dbTimeout bounds each use of the database.
const dbTimeout = 30 * time.Second

// sessionsLock is the advisory lock key that serializes opening enrollments across
// replicas (the per-address and total bounds count every replica's sessions).
const sessionsLock = 0x7261_7365_7373 // "rasess"

// OpenDBStore returns the bindings store in PostgreSQL (connString, a postgres:// URL or a
// libpq key=value string), creating or migrating its schema. A Server on it keeps its
// open enrollments in the same database. Close releases the connections.
func OpenDBStore(ctx context.Context, connString string) (*Store, error) {
	pool, err := pgstate.Open(ctx, connString, StateComponent, migrations)
	if err != nil {
		return nil, fmt.Errorf("ra: state database: %w", err)
	}
	s := &Store{now: time.Now}
	db := &dbBindings{pool: pool, desc: "PostgreSQL " + pgstate.DescribeString(connString), now: func() time.Time { return s.now() }}
	s.b, s.sessions = db, &dbSessions{db}
	return s, nil
}

// dbBindings is the bindings document in PostgreSQL.
type dbBindings struct {
	pool *pgxpool.Pool
	desc string
	now  func() time.Time
}

func (d *dbBindings) where() string { return d.desc }
func (d *dbBindings) close()        { d.pool.Close() }

// parse checks the document as the bindings file is checked, under the same cap.
func (d *dbBindings) parse(raw []byte) (*Bindings, error) {
	if err := limits.Check(d.desc, raw, limits.RABindings); err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	return parseBindings(d.desc, raw, d.now())
}

func (d *dbBindings) update(f func(*Bindings) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var ferr error
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		empty, _ := json.Marshal(emptyBindings())
		if _, err := tx.Exec(ctx, `INSERT INTO ra_bindings (id, doc) VALUES (true, $1) ON CONFLICT (id) DO NOTHING`, empty); err != nil {
			return err
		}
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT doc FROM ra_bindings WHERE id FOR UPDATE`).Scan(&raw); err != nil {
			return err
		}
		b, err := d.parse(raw)
		if err != nil {
			ferr = err
			return err
		}
		if err := f(b); err != nil {
			ferr = err
			return err
		}
		doc, err := json.Marshal(b)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE ra_bindings SET doc = $1, updated = now() WHERE id`, doc)
		return err
	})
	if ferr != nil {
		return ferr // the policy's own error (an ApprovalError, a refusal), unwrapped
	}
	if err != nil {
		return fmt.Errorf("ra: state in %s: %w", d.desc, err)
	}
	return nil
}

func (d *dbBindings) read() (*Bindings, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var raw []byte
	err := d.pool.QueryRow(ctx, `SELECT doc FROM ra_bindings WHERE id`).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return emptyBindings(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("ra: state in %s: %w", d.desc, err)
	}
	return d.parse(raw)
}

// memSessions is the open enrollments in this process.
type memSessions struct {
	mu sync.Mutex
	t  *sessionTable
}

func (m *memSessions) open(s *session, now time.Time, max, perAddr int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t.open(s, now, max, perAddr)
}

func (m *memSessions) take(id string, now time.Time) (*session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t.take(id, now), nil
}

// dbSessions is the open enrollments in PostgreSQL, under the rules of sessions.go.
type dbSessions struct{ d *dbBindings }

func (m *dbSessions) open(s *session, now time.Time, max, perAddr int) error {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	saved := s.e.Save(s.begin)
	var refused error
	err := pgx.BeginFunc(ctx, m.d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, sessionsLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM ra_sessions WHERE expires < $1 OR ek_hash = $2`, now, s.ekHash); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ra_sessions WHERE addr = $1`, s.addr).Scan(&n); err != nil {
			return err
		}
		if n >= perAddr {
			refused = &refusal{status: http.StatusTooManyRequests, check: CheckRate, ekHash: s.ekHash,
				err: fmt.Errorf("ra: %s has %d enrollments open, the most one address may have; retry once they finish or expire", s.addr, n)}
			return refused
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ra_sessions`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			if _, err := tx.Exec(ctx, `DELETE FROM ra_sessions WHERE id IN (SELECT id FROM ra_sessions ORDER BY opened LIMIT $1)`, n-max+1); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO ra_sessions (id, ek_hash, addr, opened, expires, begin_msg, secret, nonce) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			s.id, s.ekHash, s.addr, s.opened, s.expires, saved.Begin, saved.Secret, saved.Nonce)
		return err
	})
	if refused != nil {
		return refused
	}
	if err != nil {
		return fmt.Errorf("ra: enrollment sessions in %s: %w", m.d.desc, err)
	}
	return nil
}

func (m *dbSessions) take(id string, now time.Time) (*session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	s := &session{id: id, saved: &verify.SavedEnrollment{}}
	err := m.d.pool.QueryRow(ctx, `DELETE FROM ra_sessions WHERE id = $1 RETURNING ek_hash, addr, opened, expires, begin_msg, secret, nonce`, id).
		Scan(&s.ekHash, &s.addr, &s.opened, &s.expires, &s.saved.Begin, &s.saved.Secret, &s.saved.Nonce)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ra: enrollment sessions in %s: %w", m.d.desc, err)
	}
	if now.After(s.expires) {
		return nil, nil
	}
	return s, nil
}
