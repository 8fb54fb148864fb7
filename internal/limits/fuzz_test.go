package limits_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"

	"omens.dev/omens/internal/limits"
)

// naiveDepth is the depth of src counting every brace and bracket: right for input that
// has no string, comment or heredoc.
func naiveDepth(src []byte) int {
	cur, depth := 0, 0
	for _, c := range src {
		switch c {
		case '{', '[':
			cur++
			depth = max(depth, cur)
		case '}', ']':
			cur = max(cur-1, 0)
		}
	}
	return depth
}

// astDepth is the nesting of objects and lists in a parsed HCL file.
func astDepth(n ast.Node) int {
	switch n := n.(type) {
	case *ast.ObjectList:
		d := 0
		for _, it := range n.Items {
			d = max(d, astDepth(it.Val))
		}
		return d
	case *ast.ObjectType:
		return 1 + astDepth(n.List)
	case *ast.ListType:
		d := 0
		for _, it := range n.List {
			d = max(d, astDepth(it))
		}
		return 1 + d
	}
	return 0
}

// FuzzDepthHCL: the scanner never panics, stops past the limit, and agrees with a
// count of braces where there is nothing else, and with the parser where it parses.
func FuzzDepthHCL(f *testing.F) {
	for _, s := range []string{
		`a { b = [ { c = "}" } ] }`, `a = "${x("{")}"`, "# {\n/* [ */ b = {}", "a = <<EOF\n{\nEOF\n",
		"a = <<-EOF\n[[\n  EOF\nb = [[]]", `x = [1, [2, {y = 3}]]`, strings.Repeat("{", 40), `a "b" "c" { d = {} }`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		const stop = 8
		depth, line := limits.DepthHCL(src, stop)
		if depth > stop+1 || depth < 0 || (depth > 0 && line < 1) {
			t.Fatalf("depth %d line %d", depth, line)
		}
		if strings.Trim(string(src), "{}[] \n\tab=1,") == "" {
			if want := min(naiveDepth(src), stop+1); depth != want {
				t.Fatalf("depth %d, a count of braces gives %d", depth, want)
			}
		}
		if depth <= stop {
			if f, err := hclparser.Parse(src); err == nil {
				if want := astDepth(f.Node); depth != want {
					t.Fatalf("depth %d, the parsed file nests %d", depth, want)
				}
			}
		}
	})
}

// jsonDepth is the depth encoding/json's tokenizer sees.
func jsonDepth(src []byte) int {
	dec := json.NewDecoder(bytes.NewReader(src))
	cur, depth := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return depth
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			cur++
			depth = max(depth, cur)
		case json.Delim('}'), json.Delim(']'):
			cur--
		}
	}
}

// FuzzDepthJSON: the scanner never panics and, on valid JSON, agrees with encoding/json.
func FuzzDepthJSON(f *testing.F) {
	for _, s := range []string{`{"a": [{"b": "}"}]}`, `["\\", [["\\\""]]]`, `"{"`, `{"\u007b": [[]]}`, strings.Repeat("[", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		const stop = 8
		depth, _ := limits.DepthJSON(src, stop)
		hdepth, _ := limits.DepthHCLJSON(src, stop)
		if depth > stop+1 || hdepth > stop+1 {
			t.Fatalf("depth %d, HCL JSON depth %d, past stop+1", depth, hdepth)
		}
		if json.Valid(src) {
			if want := min(jsonDepth(src), stop+1); depth != want {
				t.Fatalf("depth %d, encoding/json sees %d", depth, want)
			}
		}
	})
}
