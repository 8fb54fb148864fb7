package pgproc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"omens.dev/omens/internal/pgproc"
	"omens.dev/omens/internal/test/enginetest"
)

// TestStartStop: a new database answers as itself; Stop ends the cluster and removes its
// directory.
func TestStartStop(t *testing.T) {
	ctx := context.Background()
	c, err := pgproc.Start(ctx)
	if errors.Is(err, pgproc.ErrMissing) {
		enginetest.Missing(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()
	conn, err := c.CreateDB(ctx, "proc")
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	err = db.QueryRow(ctx, "SELECT current_database()").Scan(&name)
	db.Close(ctx)
	if err != nil || name != "proc" {
		t.Fatalf("current_database() = %q, %v; want proc", name, err)
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s after Stop: %v, want it removed", c.Dir, err)
	}
	if nc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port)); err == nil {
		nc.Close()
		t.Errorf("port %d still accepts after Stop", c.Port)
	}
}
