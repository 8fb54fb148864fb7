// Package pgproc lays out and runs a throwaway PostgreSQL cluster: Debian's postgresql
// (initdb, then postgres) in a new temporary directory, listening on loopback on a free
// port and on a unix socket in that directory, with one database "omens"; Stop ends it
// and removes the directory. PostgreSQL refuses to run as root, so when omens runs as root
// the cluster runs as the user nobody. `omens bench attest --ha` runs one, and the tests
// through internal/test/pgtest.
package pgproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"omens.dev/omens/internal/netport"
	"omens.dev/omens/internal/proc"
)

// BinDir is where Debian's postgresql 15 keeps initdb and postgres; OMENS_PG_BIN
// overrides it.
const BinDir = "/usr/lib/postgresql/15/bin"

// runAs is the user the cluster runs as when omens runs as root.
const runAs = "nobody"

// ErrMissing is in the error of Start when PostgreSQL is not installed.
var ErrMissing = errors.New("PostgreSQL is not installed (apt-get install postgresql, or set OMENS_PG_BIN)")

// Cluster is a running PostgreSQL cluster with one database, "omens".
type Cluster struct {
	Dir    string // the temporary directory: data/, the socket, the log
	Port   int    // on 127.0.0.1
	User   string // the superuser, the user the cluster runs as
	DBName string

	proc *proc.Process
}

// ConnString is a connection string to the cluster's database over TCP on loopback,
// with no password (trust authentication on loopback only).
func (c *Cluster) ConnString() string { return c.ConnStringDB(c.DBName) }

// ConnStringDB is ConnString for another database of the cluster (CreateDB).
func (c *Cluster) ConnStringDB(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", c.User, c.Port, name)
}

// Log is the path of the cluster's log.
func (c *Cluster) Log() string { return filepath.Join(c.Dir, "postgres.log") }

// CreateDB creates a database and returns its connection string: each user of the
// cluster (SPIRE's datastore, the plugin's state, the RA's) gets its own.
func (c *Cluster) CreateDB(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		return "", fmt.Errorf("pgproc: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgproc: create database %s: %w", name, err)
	}
	return c.ConnStringDB(name), nil
}

// Installed returns the directory of initdb and postgres, or an error wrapping ErrMissing.
func Installed() (string, error) {
	bin := BinDir
	if b := os.Getenv("OMENS_PG_BIN"); b != "" {
		bin = b
	}
	for _, exe := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, exe)); err != nil {
			return "", fmt.Errorf("pgproc: %w: %v", ErrMissing, err)
		}
	}
	return bin, nil
}

// Start lays out a new cluster in a temporary directory and runs it until Stop. Its error
// wraps ErrMissing when initdb or postgres is not found.
func Start(ctx context.Context) (c *Cluster, err error) {
	bin, err := Installed()
	if err != nil {
		return nil, err
	}
	// Not under the caller's private temporary directory: the cluster may run as
	// another user.
	dir, err := os.MkdirTemp("", "omens-pg-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, DBName: "omens"}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	c.User = u.Username
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		ru, err := user.Lookup(runAs)
		if err != nil {
			return nil, fmt.Errorf("pgproc: PostgreSQL does not run as root, and user %s is missing: %w", runAs, err)
		}
		uid, _ := strconv.Atoi(ru.Uid)
		gid, _ := strconv.Atoi(ru.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		c.User = ru.Username
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", c.User, "--auth=trust", "-E", "UTF8", "--no-instructions", "--no-sync")
	initdb.Dir = dir
	if cred != nil {
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgproc: initdb: %w\n%s", err, out)
	}
	if c.Port, err = netport.Free(); err != nil {
		return nil, fmt.Errorf("pgproc: a free port: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(c.Port),
		"-c", "unix_socket_directories="+dir, "-c", "fsync=off", "-c", "max_connections=300",
		"-c", "shared_buffers=16MB", "-c", "log_min_messages=warning")
	cmd.Dir = dir
	var opts []proc.Option
	if cred != nil {
		opts = append(opts, proc.WithCredential(cred))
	}
	if c.proc, err = proc.Start("postgres", cmd, c.Log(), opts...); err != nil {
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	err = c.proc.WaitReadyContext(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, c.ConnStringDB("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	conn, err := pgx.Connect(ctx, c.ConnStringDB("postgres"))
	if err != nil {
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE omens"); err != nil {
		return nil, fmt.Errorf("pgproc: %w", err)
	}
	return c, nil
}

// Stop ends the cluster and removes its directory.
func (c *Cluster) Stop() error {
	var err error
	if c.proc != nil {
		// SIGINT is PostgreSQL's fast shutdown: it ends the sessions still connected
		// instead of waiting for them, as SIGTERM's smart shutdown does.
		_ = syscall.Kill(c.proc.PID(), syscall.SIGINT)
		if err = c.proc.Stop(10 * time.Second); err != nil {
			err = fmt.Errorf("pgproc: %w", err)
		}
		c.proc = nil
	}
	return errors.Join(err, os.RemoveAll(c.Dir))
}
