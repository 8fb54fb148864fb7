package registry

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"

	"omens.dev/omens/internal/limits"
)

// RemoveNodeAttestor returns the SPIRE server configuration src (HCL) without its
// `NodeAttestor "<name>" { ... }` blocks in the plugins section, with the comment lines
// directly above each. Everything else is kept byte for byte. found is false, and src is
// returned as it is, when there is no such block.
//
// A configuration over the size or nesting limit of limits.ServerConfig is refused before
// the HCL parser sees it; read the file with limits.ReadFile, whose errors name it.
func RemoveNodeAttestor(src []byte, name string) (out []byte, found bool, err error) {
	if err := limits.Check("server config", src, limits.ServerConfig); err != nil {
		return nil, false, fmt.Errorf("registry: %w", err)
	}
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	f, err := hclparser.Parse(src)
	if err != nil {
		return nil, false, fmt.Errorf("registry: server config: %w", err)
	}
	root, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, false, errors.New("registry: server config: not an HCL body")
	}
	type span struct{ start, end int }
	var cuts []span
	for _, plugins := range root.Items {
		body, ok := plugins.Val.(*ast.ObjectType)
		if keyName(plugins.Keys[0]) != "plugins" || !ok {
			continue
		}
		for _, item := range body.List.Items {
			if len(item.Keys) < 2 || keyName(item.Keys[0]) != "NodeAttestor" || keyName(item.Keys[1]) != name {
				continue
			}
			val, ok := item.Val.(*ast.ObjectType)
			if !ok {
				return nil, false, fmt.Errorf("registry: server config:%d: NodeAttestor %q is not a block", item.Pos().Line, name)
			}
			start, end := item.Pos().Offset, val.Rbrace.Offset+1
			if item.LeadComment != nil {
				start = item.LeadComment.Pos().Offset
			}
			if item.LineComment != nil {
				last := item.LineComment.List[len(item.LineComment.List)-1]
				end = last.Start.Offset + len(last.Text)
			}
			// Take the whole lines when the block has them to itself.
			s := start
			for s > 0 && (src[s-1] == ' ' || src[s-1] == '\t') {
				s--
			}
			e := end
			for e < len(src) && (src[e] == ' ' || src[e] == '\t') {
				e++
			}
			if (s == 0 || src[s-1] == '\n') && (e == len(src) || src[e] == '\n') {
				start = s
				end = min(e+1, len(src))
			}
			cuts = append(cuts, span{start, end})
		}
	}
	if len(cuts) == 0 {
		return src, false, nil
	}
	var b bytes.Buffer
	prev := 0
	for _, c := range cuts {
		b.Write(src[prev:c.start])
		prev = c.end
	}
	b.Write(src[prev:])
	out = b.Bytes()
	if _, err := hclparser.Parse(out); err != nil {
		return nil, false, fmt.Errorf("registry: server config without NodeAttestor %q does not parse: %w", name, err)
	}
	return out, true, nil
}
