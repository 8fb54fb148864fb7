package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"omens.dev/omens/internal/test/pgtest"
)

func TestStart(t *testing.T) {
	c := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.CreateDB(t, "kit"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != "kit" {
		t.Fatalf("current_database() = %q, want kit", db)
	}
}
