package policy

// Where the run-time state lives. The decisions (store.go) are the same whatever the
// storage; only how a host's state is read, locked and saved differs:
//
//   - the state file (the default, one machine): the whole file under one lock
//     (internal/statefile), replaced atomically;
//   - PostgreSQL (OpenDB, several SPIRE servers on one fleet): one row per host, locked
//     with SELECT ... FOR UPDATE for the whole decision, so a window pins exactly once
//     whichever server the host reaches.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/pgstate"
	"omens.dev/omens/internal/statefile"
)

// stateStore keeps the run-time state (State).
type stateStore interface {
	// update runs f on host ek's state (a new HostState when it has none) under a lock
	// every holder of the state shares, and saves it when f returns true.
	update(ek string, f func(hs *HostState) (save bool, err error)) error
	// read returns the whole state.
	read() (*State, error)
	// where names the state for messages: a file path, or the database.
	where() string
	close()
}

// fileState is the state file. It keeps the state as last read or written (never handed
// out: update works on a copy) with the file's identity, so that an attestation does not
// read and decode the file again while it is that same file.
type fileState struct {
	path, lockPath string

	mu     sync.Mutex
	st     *State
	stInfo os.FileInfo
}

func (s *fileState) where() string { return s.path }
func (s *fileState) close()        {}

// read needs no lock: the file is only ever replaced whole.
func (s *fileState) read() (*State, error) { return readState(s.path) }

func (s *fileState) update(ek string, f func(*HostState) (bool, error)) error {
	unlock, err := statefile.Lock(s.lockPath)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.cached()
	if err != nil {
		return err
	}
	hs := st.Hosts[ek]
	if hs == nil {
		hs = &HostState{}
	}
	save, err := f(hs)
	if err != nil || !save {
		return err
	}
	st.Hosts[ek] = hs
	if err := writeState(s.path, st); err != nil {
		s.remember(nil)
		return err
	}
	s.remember(st)
	return nil
}

// cached reads the state file, under the state lock: when the file is the one last read
// or written (same file, size and modification time, as Policy checks the policy file;
// it is only ever replaced whole, by rename, so another writer makes another file) its
// content is not read and decoded again. The State returned is the caller's own copy.
func (s *fileState) cached() (*State, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		// Missing or unreadable: readState says which.
		return readState(s.path)
	}
	s.mu.Lock()
	st, info := s.st, s.stInfo
	s.mu.Unlock()
	if st != nil && os.SameFile(fi, info) && fi.Size() == info.Size() && fi.ModTime().Equal(info.ModTime()) {
		return st.clone(), nil
	}
	// Stat before reading: a file replaced in between is read again next time.
	if st, err = readState(s.path); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.st, s.stInfo = st.clone(), fi
	s.mu.Unlock()
	return st, nil
}

// remember keeps st (nil: nothing) as the content of the state file just written.
func (s *fileState) remember(st *State) {
	fi, err := os.Stat(s.path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == nil || err != nil {
		s.st, s.stInfo = nil, nil
		return
	}
	s.st, s.stInfo = st.clone(), fi
}

// StateComponent is the policy's name in the database's schema_version table.
const StateComponent = "pcr_state"

// stateMigrations are the policy's schema versions (pgstate.Migrate); append only.
var stateMigrations = []string{
	// 1: a host's HostState as the state file holds it, keyed by EK hash.
	`CREATE TABLE pcr_hosts (
		ek_hash text PRIMARY KEY,
		state jsonb NOT NULL,
		updated timestamptz NOT NULL DEFAULT now()
	)`,
}

// dbTimeout bounds each use of the database.
const dbTimeout = 30 * time.Second

// dbState is the state in PostgreSQL.
type dbState struct {
	pool *pgxpool.Pool
	desc string
}

func (s *dbState) where() string { return "PostgreSQL " + s.desc }
func (s *dbState) close()        { s.pool.Close() }

// hostRow checks a host's state read from the database with the state file's checks
// (parseState), under the same size cap.
func (s *dbState) hostRow(ek string, raw []byte) (*HostState, error) {
	doc, err := json.Marshal(map[string]any{"version": StateVersion, "hosts": map[string]json.RawMessage{ek: raw}})
	if err != nil {
		return nil, err
	}
	if err := limits.Check(s.where(), doc, limits.PolicyState); err != nil {
		return nil, fmt.Errorf("policy: state of host %s: %w", ek, err)
	}
	st, err := parseState(s.where()+" host "+ek, doc)
	if err != nil {
		return nil, err
	}
	return st.Hosts[ek], nil
}

func (s *dbState) update(ek string, f func(*HostState) (bool, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The row exists before it is locked, so that two servers deciding for a new host
		// wait for each other too.
		if _, err := tx.Exec(ctx, `INSERT INTO pcr_hosts (ek_hash, state) VALUES ($1, '{}') ON CONFLICT (ek_hash) DO NOTHING`, ek); err != nil {
			return err
		}
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT state FROM pcr_hosts WHERE ek_hash = $1 FOR UPDATE`, ek).Scan(&raw); err != nil {
			return err
		}
		hs, err := s.hostRow(ek, raw)
		if err != nil {
			return err
		}
		save, err := f(hs)
		if err != nil || !save {
			return err
		}
		data, err := json.Marshal(hs)
		if err != nil {
			return fmt.Errorf("policy: encoding state: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE pcr_hosts SET state = $2, updated = now() WHERE ek_hash = $1`, ek, data)
		return err
	})
	if err != nil && !errors.Is(err, ErrRejected) {
		return fmt.Errorf("policy: state in %s: %w", s.where(), err)
	}
	return err
}

func (s *dbState) read() (*State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT ek_hash, state FROM pcr_hosts ORDER BY ek_hash`)
	if err != nil {
		return nil, fmt.Errorf("policy: state in %s: %w", s.where(), err)
	}
	defer rows.Close()
	st := &State{Version: StateVersion, Hosts: map[string]*HostState{}}
	for rows.Next() {
		var ek string
		var raw []byte
		if err := rows.Scan(&ek, &raw); err != nil {
			return nil, fmt.Errorf("policy: state in %s: %w", s.where(), err)
		}
		hs, err := s.hostRow(ek, raw)
		if err != nil {
			return nil, err
		}
		st.Hosts[ek] = hs
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policy: state in %s: %w", s.where(), err)
	}
	return st, nil
}

// OpenDB is Open with the state in PostgreSQL (connString, a postgres:// URL or libpq
// key=value string) instead of a file, for several SPIRE servers that share it. The
// schema is created or migrated on first use. Close releases the connections.
func OpenDB(ctx context.Context, policyPath, connString string) (*Store, error) {
	if policyPath == "" {
		return nil, errors.New("policy: no policy file given")
	}
	pool, err := pgstate.Open(ctx, connString, StateComponent, stateMigrations)
	if err != nil {
		return nil, fmt.Errorf("policy: state database: %w", err)
	}
	s := &Store{policyPath: policyPath, state: &dbState{pool: pool, desc: pgstate.DescribeString(connString)}}
	if _, err := s.Policy(); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close releases what the Store holds (the database's connections).
func (s *Store) Close() { s.state.close() }
