package registry

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"
)

// SetPhase returns the inventory src (the file name labels errors) with host's phase set
// to phase: the value of its phase key replaced, or a phase line added at the end of its
// block. Everything else, comments included, is kept byte for byte, and the result must
// parse as an inventory. changed is false, and src returned as it is, when the host is
// already in that phase. This is how a command moves a host to another phase (or back)
// before rendering its configuration again.
func SetPhase(name string, src []byte, host string, phase Phase) (out []byte, changed bool, err error) {
	inv, err := ParseInventory(name, src)
	if err != nil {
		return nil, false, err
	}
	h := inv.Host(host)
	if h == nil {
		return nil, false, fmt.Errorf("registry: %s: host %q is not in the inventory", name, host)
	}
	if _, ok := (&decoder{file: name}).phase(&ast.ObjectItem{}, "", string(phase)); !ok {
		return nil, false, fmt.Errorf("registry: phase %q: want \"join_token\", \"ek\" or \"devid\"", phase)
	}
	if h.Phase == phase {
		return src, false, nil
	}
	f, err := hclparser.ParseDontErrorOnDuplicateKeys(src)
	if err != nil {
		return nil, false, fmt.Errorf("registry: %s: %w", name, err)
	}
	var body *ast.ObjectType
	for _, item := range f.Node.(*ast.ObjectList).Items {
		if len(item.Keys) == 2 && keyName(item.Keys[0]) == "host" && keyName(item.Keys[1]) == host {
			body = item.Val.(*ast.ObjectType)
		}
	}
	value := strconv.Quote(string(phase))
	var b bytes.Buffer
	if item := body.List.Filter("phase"); len(item.Items) == 1 {
		lit := item.Items[0].Val.(*ast.LiteralType)
		start := lit.Token.Pos.Offset
		b.Write(src[:start])
		b.WriteString(value)
		b.Write(src[start+len(lit.Token.Text):])
	} else {
		// A new last line of the block, indented as its first key.
		indent := "  "
		if len(body.List.Items) > 0 {
			indent = lineIndent(src, body.List.Items[0].Pos())
		}
		end := body.Rbrace.Offset
		lineStart := bytes.LastIndexByte(src[:end], '\n') + 1
		if len(bytes.TrimSpace(src[lineStart:end])) == 0 {
			end = lineStart // the brace is on a line of its own
			b.Write(src[:end])
		} else {
			b.Write(bytes.TrimRight(src[:end], " \t"))
			b.WriteString("\n")
		}
		b.WriteString(indent + "phase = " + value + "\n")
		b.Write(src[end:])
	}
	out = b.Bytes()
	check, err := ParseInventory(name, out)
	if err != nil || check.Host(host).Phase != phase {
		return nil, false, fmt.Errorf("registry: %s: setting host %q's phase did not give a valid inventory: %v", name, host, err)
	}
	return out, true, nil
}

// lineIndent is the whitespace before pos on its line, or two spaces when pos is not
// the first thing on its line.
func lineIndent(src []byte, pos token.Pos) string {
	start := bytes.LastIndexByte(src[:pos.Offset], '\n') + 1
	if s := src[start:pos.Offset]; len(bytes.Trim(s, " \t")) == 0 {
		return string(s)
	}
	return "  "
}
