package verify_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"

	"omens.dev/omens/verify"
)

// TestChecksListsEveryCheck: every Check constant of checks.go is in verify.Checks, once.
func TestChecksListsEveryCheck(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "checks.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			for _, v := range s.(*ast.ValueSpec).Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					c, _ := strconv.Unquote(lit.Value)
					consts = append(consts, c)
				}
			}
		}
	}
	if len(consts) < 30 {
		t.Fatalf("found only %d check constants in checks.go", len(consts))
	}
	for _, c := range consts {
		if !slices.Contains(verify.Checks, c) {
			t.Errorf("check %q of checks.go is missing from verify.Checks", c)
		}
	}
	if len(verify.Checks) != len(consts) {
		t.Errorf("verify.Checks has %d entries, checks.go %d constants", len(verify.Checks), len(consts))
	}
}
