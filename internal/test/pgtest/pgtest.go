// Package pgtest runs a throwaway PostgreSQL cluster for tests: Debian's postgresql (initdb,
// then postgres) in a temporary directory, listening on loopback on a free port and on a
// unix socket in that directory, stopped and removed when the test ends. PostgreSQL refuses
// to run as root, so when the tests run as root the cluster runs as the user nobody.
package pgtest

import (
	"context"
	"fmt"

	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/test/enginetest"
)

// BinDir is where Debian's postgresql 15 keeps initdb, pg_ctl and postgres;
// OMENS_PG_BIN overrides it.
const BinDir = "/usr/lib/postgresql/15/bin"

// runAs is the user the cluster runs as when the tests run as root.
const runAs = "nobody"

// Cluster is a running PostgreSQL cluster with one database, "omens".
type Cluster struct {
	Dir    string // the temporary directory: data/, the socket, the log
	Port   int    // on 127.0.0.1
	User   string // the superuser, the user the cluster runs as
	DBName string
}

// ConnString is a connection string to the cluster's database over TCP on loopback,
// with no password (trust authentication on loopback only).
func (c *Cluster) ConnString() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", c.User, c.Port, c.DBName)
}

// ConnStringDB is ConnString for another database of the cluster (CreateDB).
func (c *Cluster) ConnStringDB(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", c.User, c.Port, name)
}

// CreateDB creates a database and returns its connection string: each part of a test
// (SPIRE's datastore, the plugin's state, the RA's) gets its own.
func (c *Cluster) CreateDB(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return c.ConnStringDB(name)
}

// Start runs a cluster for the test, or ends it (enginetest.Missing) when postgresql is
// not installed.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := BinDir
	if b := os.Getenv("OMENS_PG_BIN"); b != "" {
		bin = b
	}
	for _, exe := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, exe)); err != nil {
			enginetest.Missing(t, fmt.Sprintf("pgtest: PostgreSQL's %s is missing (apt-get install postgresql, or set OMENS_PG_BIN): %v", exe, err))
		}
	}
	// Not t.TempDir: its parent is private to the test's user, and the cluster may run as
	// another one.
	dir, err := os.MkdirTemp("", "omens-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Cluster{Dir: dir, DBName: "omens"}
	var cred *syscall.Credential
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	c.User = u.Username
	if os.Geteuid() == 0 {
		ru, err := user.Lookup(runAs)
		if err != nil {
			t.Fatalf("pgtest: PostgreSQL does not run as root, and user %s is missing: %v", runAs, err)
		}
		uid, _ := strconv.Atoi(ru.Uid)
		gid, _ := strconv.Atoi(ru.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		c.User = ru.Username
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", c.User, "--auth=trust", "-E", "UTF8", "--no-instructions", "--no-sync")
	initdb.Dir = dir
	if cred != nil {
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	c.Port = freePort(t)
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(c.Port),
		"-c", "unix_socket_directories="+dir, "-c", "fsync=off", "-c", "max_connections=200",
		"-c", "shared_buffers=16MB", "-c", "log_min_messages=warning")
	cmd.Dir = dir
	var opts []proc.Option
	if cred != nil {
		opts = append(opts, proc.WithCredential(cred))
	}
	logPath := filepath.Join(dir, "postgres.log")
	p, err := proc.Start("postgres", cmd, logPath, opts...)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		// SIGINT is PostgreSQL's fast shutdown: it ends the sessions still connected (a
		// pool the code under test did not close) instead of waiting for them, as
		// SIGTERM's smart shutdown does.
		_ = syscall.Kill(p.PID(), syscall.SIGINT)
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	err = p.WaitReady(60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, c.ConnStringDB("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnStringDB("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE omens"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return c
}

func freePort(t testing.TB) int { return enginetest.FreePort(t) }
