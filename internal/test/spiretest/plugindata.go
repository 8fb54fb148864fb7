package spiretest

import (
	"bytes"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/printer"
	"github.com/hashicorp/hcl/hcl/token"
)

// PluginData returns the plugin_data of plugin `typ "name"` in the SPIRE configuration
// file path, as SPIRE hands it to the plugin's Configure: the block printed back by
// hashicorp/hcl's printer (SPIRE's pkg/common/catalog does the same). SPIRE v1.13's
// `validate` command loads the file without starting plugins, so a test that wants a
// plugin's Validate to judge a configuration file hands it this.
func PluginData(path, typ, name string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	f, err := hclparser.Parse(src)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	root, _ := f.Node.(*ast.ObjectList)
	for _, plugins := range root.Filter("plugins").Items {
		body, ok := plugins.Val.(*ast.ObjectType)
		if !ok {
			continue
		}
		for _, item := range body.List.Items {
			if len(item.Keys) != 2 || unquote(item.Keys[0]) != typ || unquote(item.Keys[1]) != name {
				continue
			}
			obj, ok := item.Val.(*ast.ObjectType)
			if !ok {
				return "", fmt.Errorf("%s: %s %q is not a block", path, typ, name)
			}
			data := obj.List.Filter("plugin_data")
			if len(data.Items) != 1 {
				return "", fmt.Errorf("%s: %s %q has %d plugin_data blocks", path, typ, name, len(data.Items))
			}
			// hashicorp/hcl decodes a block into an ast.Node field as the list of its
			// items, without the braces.
			var node ast.Node = data.Items[0].Val
			if ot, ok := node.(*ast.ObjectType); ok {
				node = &ast.ObjectList{Items: ot.List.Items}
			}
			var b bytes.Buffer
			if err := printer.DefaultConfig.Fprint(&b, node); err != nil {
				return "", err
			}
			return b.String(), nil
		}
	}
	return "", fmt.Errorf("%s: no plugin %s %q", path, typ, name)
}

func unquote(k *ast.ObjectKey) string {
	if k.Token.Type == token.STRING {
		if s, ok := k.Token.Value().(string); ok {
			return s
		}
	}
	return k.Token.Text
}
