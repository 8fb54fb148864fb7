package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/registry"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Render a host's SPIRE, RA and systemd configuration from the inventory",
	}
	cmd.AddCommand(newConfigRenderCmd())
	return cmd
}

// ConfigFile is one line of `omens config render --json`.
type ConfigFile struct {
	Role   string `json:"role"`
	Path   string `json:"path"`   // where it is installed
	Target string `json:"target"` // where it was (or would be) written: --out joined with path
	State  string `json:"state"`  // new, changed, unchanged
	Diff   string `json:"diff,omitempty"`
}

func newConfigRenderCmd() *cobra.Command {
	var invPath, host, out, pluginDir string
	var diff, asJSON bool
	cmd := &cobra.Command{
		Use:   "render --inventory FILE --host NAME --out DIR [--plugin-dir DIR] [--diff]",
		Short: "Write the configuration files and units of one host of the inventory",
		Long: `Render, for host NAME of the inventory (the file omens apply reads), the files it runs on,
each at its installed path under --out (--out / installs them; any other directory gets
the same tree, to look at or copy):

  spire-server.conf, spire-server.service   on the spire_server host
  spire-agent.conf, spire-agent.service     on every host, by its phase
  omens-ra.env, omens-ra.service            on the ra host (the RA's settings, its paths in the unit)
  omens-devid.env, omens-devid-renew.service and .timer   on every host, when the inventory has an RA

A host's phase (join_token, ek or devid) decides its agent's NodeAttestor; the phases of
all hosts decide the server's (join_token kept while a host is on one; NodeAttestor "tpm"
in EK or DevID mode). Moving a host on, or back, is changing its phase and rendering
again for it and for the server host. plugin_checksum is the SHA-256 of the plugin binary
in --plugin-dir (by default the inventory's plugin_dir, /usr/lib/omens).

Each file is replaced atomically, and only when it changes. With --diff nothing is
written: the command prints a unified diff against the files under --out and exits with
status 1 when any differs. After writing, it prints what to run for the files to take
effect (systemctl daemon-reload, enable --now for new units, restart for changed ones).

SPIRE is expected in the inventory's spire_bin_dir (/opt/spire/bin, as the plan installs
it); the files the configurations name (the EK CA bundle, step-ca's root, the PCR policy,
the server's trust bundle for agents, the join token) are put in place by the operator.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if invPath == "" || host == "" || out == "" {
				return fmt.Errorf("--inventory FILE, --host NAME and --out DIR are required (see omens config render --help)")
			}
			inv, err := registry.LoadInventory(invPath)
			if err != nil {
				return err
			}
			files, err := hostconf.Render(inv, host, hostconf.Options{PluginDir: pluginDir})
			if err != nil {
				return err
			}
			var changes []hostconf.Change
			if diff {
				changes, err = hostconf.Compare(out, files)
			} else {
				changes, err = hostconf.Write(out, files)
			}
			if err != nil {
				return err
			}
			differ := 0
			var list []ConfigFile
			for _, c := range changes {
				if c.State != hostconf.StateUnchanged {
					differ++
				}
				f := ConfigFile{Role: c.Role, Path: c.Path, Target: c.Target, State: c.State}
				if diff {
					f.Diff = c.Diff
				}
				list = append(list, f)
			}
			w := cmd.OutOrStdout()
			switch {
			case asJSON:
				if err := writeJSON(w, list); err != nil {
					return err
				}
			case diff:
				printDiff(w, changes)
			default:
				tb := newTable(w)
				tb.row("STATE", "FILE", "ROLE")
				for _, f := range list {
					state := "wrote"
					if f.State == hostconf.StateUnchanged {
						state = "unchanged"
					}
					tb.row(state, f.Target, f.Role)
				}
				tb.flush()
				fmt.Fprintf(w, "%d of %d files written for host %s\n", differ, len(list), host)
				if next := nextSteps(changes); next != "" {
					fmt.Fprintln(w, "then: "+next)
				}
			}
			if diff && differ > 0 {
				msg := fmt.Sprintf("%d of %d files differ from those under %s", differ, len(list), out)
				if asJSON {
					msg = ""
				}
				return &exitError{code: 1, msg: msg}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&invPath, "inventory", "", "the inventory (HCL), as omens apply reads it")
	f.StringVar(&host, "host", "", "the host of the inventory to render for")
	f.StringVar(&out, "out", "", "the root the files go under (/ to install them)")
	f.StringVar(&pluginDir, "plugin-dir", "", "directory of the plugin binaries whose SHA-256 becomes plugin_checksum (default: the inventory's plugin_dir)")
	f.BoolVar(&diff, "diff", false, "write nothing: show what would change against the files under --out; exit status 1 when any differs")
	jsonFlag(cmd, &asJSON)
	return cmd
}

// services are the units that read each role's file: restarted when it changes. The
// renewal service is a oneshot that reads its files at each run.
var services = map[string]string{
	hostconf.RoleServerConf: "spire-server", hostconf.RoleServerUnit: "spire-server",
	hostconf.RoleAgentConf: "spire-agent", hostconf.RoleAgentUnit: "spire-agent",
	hostconf.RoleRAEnv: "omens-ra", hostconf.RoleRAUnit: "omens-ra",
}

// enabled are the units to enable when they are new.
var enabled = map[string]string{
	hostconf.RoleServerUnit: "spire-server", hostconf.RoleAgentUnit: "spire-agent",
	hostconf.RoleRAUnit: "omens-ra", hostconf.RoleRenewTimer: "omens-devid-renew.timer",
}

// nextSteps says what to run for the written files to take effect.
func nextSteps(changes []hostconf.Change) string {
	var units bool
	var enable, restart []string
	for _, c := range changes {
		if c.State == hostconf.StateNew && enabled[c.Role] != "" {
			enable = append(enable, enabled[c.Role])
		}
	}
	for _, c := range changes {
		if c.State == hostconf.StateUnchanged {
			continue
		}
		units = units || strings.HasSuffix(c.Path, ".service") || strings.HasSuffix(c.Path, ".timer")
		if s := services[c.Role]; s != "" && !slices.Contains(restart, s) && !slices.Contains(enable, s) {
			restart = append(restart, s)
		}
	}
	var steps []string
	if units {
		steps = append(steps, "systemctl daemon-reload")
	}
	if len(enable) > 0 {
		steps = append(steps, "systemctl enable --now "+strings.Join(enable, " "))
	}
	if len(restart) > 0 {
		steps = append(steps, "systemctl restart "+strings.Join(restart, " "))
	}
	return strings.Join(steps, "; ")
}

func printDiff(w io.Writer, changes []hostconf.Change) {
	for _, c := range changes {
		if c.State == hostconf.StateUnchanged {
			fmt.Fprintf(w, "unchanged %s (%s)\n", c.Target, c.Role)
			continue
		}
		fmt.Fprint(w, c.Diff)
	}
}
