package metrics_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"omens.dev/omens/metrics"
)

// TestDocumented: docs/metrics.md names every metric of names.go, SPIRE's keys with the
// prefix they get on SPIRE's Prometheus endpoint.
func TestDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "names.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST || g.Doc == nil {
			continue
		}
		var prefix string
		switch {
		case strings.Contains(g.Doc.Text(), "server plugin"):
			prefix = metrics.SPIREServerPrefix
		case strings.Contains(g.Doc.Text(), "agent plugin"):
			prefix = metrics.SPIREAgentPrefix
		case strings.Contains(g.Doc.Text(), "the RA serves"):
		default:
			continue
		}
		for _, s := range g.Specs {
			for _, v := range s.(*ast.ValueSpec).Values {
				name, _ := strconv.Unquote(v.(*ast.BasicLit).Value)
				n++
				if !strings.Contains(string(doc), "`"+prefix+name+"`") {
					t.Errorf("docs/metrics.md does not name %s%s", prefix, name)
				}
			}
		}
	}
	if n != 17 {
		t.Errorf("found %d metric names in names.go, want 17", n)
	}
}
