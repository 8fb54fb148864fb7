package spiretest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/printer"
	"github.com/hashicorp/hcl/hcl/token"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/proc"
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

// RunServerConfig starts spire-server with the configuration file conf (as written, say,
// by a renderer) until its API answers on socket, then stops it: SPIRE loaded every
// plugin (checking each plugin_checksum against its binary) and each accepted its
// configuration. The log is shown when it fails.
func RunServerConfig(t testing.TB, conf, socket string) {
	t.Helper()
	e := &engine{name: "spire-server", bin: enginePath(t, engines.SPIREServer), conf: conf,
		logPath: filepath.Join(t.TempDir(), "spire-server.log")}
	e.launch(t)
	defer func() {
		if err := e.stop(); err != nil {
			t.Error(err)
		}
	}()
	err := e.proc.WaitReady(readyTimeout, 4*pollInterval, func(ctx context.Context) error {
		_, err := runTool(ctx, e.bin, "healthcheck", "-socketPath", socket)
		return err
	})
	if err != nil {
		t.Errorf("spiretest: spire-server run -config %s: %v\n%s", conf, err, proc.Tail(e.logPath))
	}
}
