package enginetest

import (
	"testing"
)

// recorder is a testing.TB that records Fatal and Skip instead of ending the test.
type recorder struct {
	testing.TB
	fatal, skip []any
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.fatal = args }
func (r *recorder) Skip(args ...any)  { r.skip = args }

func TestMissing(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{}
	Missing(r, "swtpm not found")
	if len(r.fatal) != 1 || r.fatal[0] != "swtpm not found" {
		t.Errorf("CI=true: Fatal got %v, want the reason", r.fatal)
	}

	t.Setenv("CI", "")
	r = &recorder{}
	Missing(r, "swtpm not found")
	if r.fatal != nil || len(r.skip) != 1 || r.skip[0] != "swtpm not found" {
		t.Errorf("without CI: Fatal %v, Skip %v; want a skip with the reason", r.fatal, r.skip)
	}
}
