// Package spireplugin holds what the SPIRE NodeAttestor "tpm" plugins (server and agent)
// share: HCL configuration decoding that names every wrong key.
package spireplugin

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"

	"omens.dev/omens/internal/limits"
)

// PluginName is the name SPIRE configures the plugins under: NodeAttestor "tpm".
const PluginName = "tpm"

// DecodeHCL decodes plugin_data into v (a pointer to a struct with hcl tags) and returns a
// note for each key that v does not have, so that a misspelt key is reported instead of
// silently ignored. plugin_data over the size or nesting limit of limits.PluginConfig is
// refused before the HCL parser sees it.
func DecodeHCL(src string, v any) ([]string, error) {
	if err := limits.Check("plugin_data", []byte(src), limits.PluginConfig); err != nil {
		return nil, err
	}
	file, err := hcl.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("plugin_data is not valid HCL: %v", err)
	}
	if err := hcl.DecodeObject(v, file); err != nil {
		return nil, fmt.Errorf("plugin_data: %v", err)
	}
	known := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ","); name != "" {
			known[name] = true
		}
	}
	var notes []string
	if list, ok := file.Node.(*ast.ObjectList); ok {
		for _, item := range list.Items {
			if len(item.Keys) == 0 {
				continue
			}
			key := strings.Trim(item.Keys[0].Token.Text, `"`)
			if !known[key] {
				notes = append(notes, fmt.Sprintf("unknown key %q (line %d)", key, item.Keys[0].Pos().Line))
			}
		}
	}
	sort.Strings(notes)
	return notes, nil
}
