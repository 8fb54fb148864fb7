package hostconf

import (
	"fmt"
	"path/filepath"

	"omens.dev/omens/registry"
	"omens.dev/omens/svidhelper"
)

// The roles of the files of services that read their SVID from files.
const (
	RoleSVIDHelper      = "svid-helper"      // omens svid helper's configuration, one per service
	RoleOpenBaoListener = "openbao-listener" // OpenBao's listener "tcp" block reading the helper's files
)

// svidFiles are, for the plan's services that read their SVID from files
// (svidhelper.Plan: OpenBao and step-ca), the ones that run on host by the inventory's
// workloads: the helper's configuration (svid-helper-NAME.hcl beside the RA's and the
// renewal's settings, agent_address the host's Workload API) and, for OpenBao, the
// listener block to put in OpenBao's configuration. A workload of the plan's name on
// another host, or none, renders nothing here.
func svidFiles(inv *registry.Inventory, h *registry.Host, p registry.Paths) ([]File, error) {
	dir := filepath.Dir(p.DevIDEnv)
	var out []File
	for _, s := range svidhelper.Plan(inv.TrustDomain, p.SPIREAgentSocket) {
		w := workload(inv, s.Workload)
		if w == nil || w.Host != h.Name {
			continue
		}
		s.Host, s.SPIFFEID = w.Host, w.SPIFFEID
		b, err := svidhelper.RenderConfig(s)
		if err != nil {
			return nil, fmt.Errorf("hostconf: workload %q: %w", w.Name, err)
		}
		out = append(out, File{Role: RoleSVIDHelper, Path: filepath.Join(dir, "svid-helper-"+w.Name+".hcl"), Mode: 0o644, Data: b})
		if s.Listener != nil {
			b, err := s.Listener.Render()
			if err != nil {
				return nil, fmt.Errorf("hostconf: workload %q: %w", w.Name, err)
			}
			out = append(out, File{Role: RoleOpenBaoListener, Path: filepath.Join(dir, w.Name+"-listener.hcl"), Mode: 0o644, Data: b})
		}
	}
	return out, nil
}

func workload(inv *registry.Inventory, name string) *registry.Workload {
	for i := range inv.Workloads {
		if inv.Workloads[i].Name == name {
			return &inv.Workloads[i]
		}
	}
	return nil
}
