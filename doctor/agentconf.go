package doctor

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/printer"

	"omens.dev/omens/internal/limits"
)

// DefaultServerPort is the SPIRE agent's server_port when its configuration names none.
const DefaultServerPort = 8081

// AgentConfig is what the doctor reads from a SPIRE agent configuration (spire-agent.conf,
// HCL or JSON, as SPIRE reads it): the agent block's server and trust domain, and the
// NodeAttestor "tpm" plugin block.
type AgentConfig struct {
	TrustDomain   string
	ServerAddress string
	ServerPort    int // DefaultServerPort when absent
	// Attestor is the NodeAttestor "tpm" block; nil when the agent has none.
	Attestor *PluginBlock
	// NodeAttestors names every NodeAttestor of the plugins section, in order.
	NodeAttestors []string
}

// PluginBlock is one plugin block of the plugins section.
type PluginBlock struct {
	Line     int    // where the block starts
	Cmd      string // plugin_cmd
	Checksum string // plugin_checksum
	// Data is plugin_data as HCL text, what SPIRE hands the plugin's Configure.
	Data string
}

type agentSection struct {
	TrustDomain   string `hcl:"trust_domain"`
	ServerAddress string `hcl:"server_address"`
	ServerPort    int    `hcl:"server_port"`
}

type pluginSection struct {
	Cmd      string `hcl:"plugin_cmd"`
	Checksum string `hcl:"plugin_checksum"`
}

// ParseAgentConfig parses src, the SPIRE agent configuration named name. src over the
// size or nesting limit of limits.AgentConfig is refused before the HCL parser sees it.
func ParseAgentConfig(name string, src []byte) (*AgentConfig, error) {
	if err := limits.Check(name, src, limits.AgentConfig); err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	f, err := hcl.ParseBytes(src)
	if err != nil {
		return nil, fmt.Errorf("doctor: %s: %v", name, err)
	}
	root, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("doctor: %s: not an HCL body", name)
	}
	c := &AgentConfig{ServerPort: DefaultServerPort}
	agents := root.Filter("agent")
	if len(agents.Items) == 0 {
		return nil, fmt.Errorf("doctor: %s: no agent block (is this a SPIRE agent configuration?)", name)
	}
	for _, item := range agents.Items {
		var a agentSection
		if err := hcl.DecodeObject(&a, item.Val); err != nil {
			return nil, fmt.Errorf("doctor: %s:%d: agent block: %v", name, item.Pos().Line, err)
		}
		if a.TrustDomain != "" {
			c.TrustDomain = a.TrustDomain
		}
		if a.ServerAddress != "" {
			c.ServerAddress = a.ServerAddress
		}
		if a.ServerPort != 0 {
			c.ServerPort = a.ServerPort
		}
	}
	// HCL writes `plugins { NodeAttestor "tpm" { ... } }`; the JSON parser flattens
	// "plugins": {"NodeAttestor": {"tpm": {...}}} into one item of keys plugins,
	// NodeAttestor, tpm, or leaves a level nested.
	var entries []*ast.ObjectItem
	for _, plugins := range root.Filter("plugins").Items {
		if len(plugins.Keys) > 0 {
			entries = append(entries, plugins)
			continue
		}
		body, ok := plugins.Val.(*ast.ObjectType)
		if !ok {
			return nil, fmt.Errorf("doctor: %s:%d: plugins is not a block", name, plugins.Pos().Line)
		}
		entries = append(entries, body.List.Items...)
	}
	var named []*ast.ObjectItem
	for _, item := range (&ast.ObjectList{Items: entries}).Filter("NodeAttestor").Items {
		if len(item.Keys) > 0 {
			named = append(named, item)
		} else if ot, ok := item.Val.(*ast.ObjectType); ok {
			named = append(named, ot.List.Items...)
		}
	}
	for _, item := range named {
		if len(item.Keys) == 0 {
			continue
		}
		pname := item.Keys[0].Token.Value()
		s, _ := pname.(string)
		c.NodeAttestors = append(c.NodeAttestors, s)
		if s != "tpm" {
			continue
		}
		if c.Attestor != nil {
			return nil, fmt.Errorf("doctor: %s:%d: a second NodeAttestor \"tpm\" (the first is at line %d)", name, item.Pos().Line, c.Attestor.Line)
		}
		p, err := pluginBlock(item)
		if err != nil {
			return nil, fmt.Errorf("doctor: %s:%d: NodeAttestor \"tpm\": %v", name, item.Pos().Line, err)
		}
		c.Attestor = p
	}
	return c, nil
}

// pluginBlock reads one plugin block: item is `"name" { ... }` under the plugin type.
func pluginBlock(item *ast.ObjectItem) (*PluginBlock, error) {
	body, ok := item.Val.(*ast.ObjectType)
	if !ok {
		return nil, errors.New("not a block")
	}
	var s pluginSection
	if err := hcl.DecodeObject(&s, body); err != nil {
		return nil, err
	}
	p := &PluginBlock{Line: item.Pos().Line, Cmd: s.Cmd, Checksum: s.Checksum}
	for _, d := range body.List.Filter("plugin_data").Items {
		switch v := d.Val.(type) {
		case *ast.ObjectType:
			var b bytes.Buffer
			if err := printer.DefaultConfig.Fprint(&b, v.List); err != nil {
				return nil, fmt.Errorf("plugin_data: %v", err)
			}
			p.Data = b.String()
		case *ast.LiteralType:
			s, ok := v.Token.Value().(string)
			if !ok {
				return nil, errors.New("plugin_data is neither a block nor a string")
			}
			p.Data = s
		default:
			return nil, errors.New("plugin_data is neither a block nor a string")
		}
	}
	return p, nil
}
