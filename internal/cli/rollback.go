package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/statefile"
	"omens.dev/omens/migrate"
	"omens.dev/omens/registry"
)

// moveFlags are the flags of migrate rollback and migrate forward.
type moveFlags struct {
	inventory, host, to, out, serverOut, pluginDir, socket string
	asJSON                                                 bool
}

// MoveReport is `omens migrate rollback --json` and `omens migrate forward --json`.
type MoveReport struct {
	*migrate.Result
	Inventory string `json:"inventory"` // changed or unchanged
	Changed   bool   `json:"changed"`
	Undo      string `json:"undo,omitempty"`
}

func newMigrateRollbackCmd() *cobra.Command {
	f := &moveFlags{}
	cmd := &cobra.Command{
		Use:   "rollback --inventory FILE --host NAME --to join_token|ek [--out DIR] [--plugin-dir DIR]",
		Short: "Put one host back on a join token, or from DevID mode back to EK mode",
		Long: `Put host NAME back a phase when its TPM attestation fails, as the plan's rollback asks:

  --to join_token  the host's agent attests with a join token again: a token is generated
                   through the SPIRE server API (its agent aliased to spiffe://TD/agent/NAME,
                   so the host's workloads keep their entries) and written to the host's
                   join_token_file (mode 0600); the server's configuration gets NodeAttestor
                   "join_token" back.
  --to ek          from DevID mode back to EK mode, when its DevID fails (revoked, expired,
                   the RA down at renewal): the agent attests with its EK certificate alone,
                   under the same agent ID; while other hosts stay in DevID mode the server
                   accepts it as an EK-mode exception (ek_mode_hosts_path, by its ek_hash),
                   and its node alias is updated to its EK hash alone.

The host's phase is set in the inventory (its comments kept), and the host's files are
rendered again under --out (/ installs them), as omens config render does; so are the
server host's (its configuration, its EK-mode exceptions) under --server-out, or, without
it, the command says what to run on the server host. Every step is printed, file by file, then what to restart and how to undo it. A
second run changes nothing.`,
		Example: `  omens migrate rollback --inventory tower.hcl --host auth --to ek --out /
  omens migrate rollback --inventory tower.hcl --host auth --to join_token --out /`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMove(cmd, f, "rollback", []registry.Phase{registry.PhaseJoinToken, registry.PhaseEK})
		},
	}
	moveFlagSet(cmd, f, "join_token or ek: the phase the host goes back to")
	return cmd
}

func newMigrateForwardCmd() *cobra.Command {
	f := &moveFlags{}
	cmd := &cobra.Command{
		Use:   "forward --inventory FILE --host NAME --to ek|devid [--out DIR] [--plugin-dir DIR]",
		Short: "Move one host on to EK or DevID mode (what undoes a rollback)",
		Long: `Move host NAME on to TPM attestation: --to ek (its EK certificate) or --to devid (its
DevID certificate, which must be enrolled: omens devid enroll). The host's phase is set
in the inventory and the host's files and the server's are rendered again under --out,
as omens migrate rollback does; a second run changes nothing. After the agent attests in
DevID mode, omens apply gives its node alias the DevID selector again.`,
		Example: `  omens migrate forward --inventory tower.hcl --host auth --to devid --out /`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMove(cmd, f, "forward", []registry.Phase{registry.PhaseEK, registry.PhaseDevID})
		},
	}
	moveFlagSet(cmd, f, "ek or devid: the phase the host moves to")
	return cmd
}

func moveFlagSet(cmd *cobra.Command, f *moveFlags, toHelp string) {
	fs := cmd.Flags()
	fs.StringVar(&f.inventory, "inventory", "", "the inventory (HCL); the host's phase is changed in it")
	fs.StringVar(&f.host, "host", "", "the host of the inventory to move")
	fs.StringVar(&f.to, "to", "", toHelp)
	fs.StringVar(&f.out, "out", "/", "the root the rendered files go under (/ installs them)")
	fs.StringVar(&f.serverOut, "server-out", "", "the root the server host's files go under, when it is another host (default: print how to render them there)")
	fs.StringVar(&f.pluginDir, "plugin-dir", "", "directory of the plugin binaries whose SHA-256 becomes plugin_checksum (default: the inventory's plugin_dir)")
	fs.StringVar(&f.socket, "spire-socket", "", "the SPIRE server API socket (default: the inventory's spire_server_socket of the server host)")
	fs.StringVar(&f.socket, "server-socket", "", "the same as --spire-socket")
	jsonFlag(cmd, &f.asJSON)
}

func runMove(cmd *cobra.Command, f *moveFlags, verb string, allowed []registry.Phase) error {
	if f.inventory == "" || f.host == "" || f.to == "" {
		return fmt.Errorf("--inventory FILE, --host NAME and --to PHASE are required (see omens migrate %s --help)", verb)
	}
	to := registry.Phase(f.to)
	if !slices.Contains(allowed, to) {
		return fmt.Errorf("--to %q: want %s", f.to, strings.Join(phaseNames(allowed), " or "))
	}
	src, err := limits.ReadFile(f.inventory, limits.Inventory)
	if err != nil {
		return err
	}
	before, err := registry.ParseInventory(f.inventory, src)
	if err != nil {
		return err
	}
	h := before.Host(f.host)
	if h == nil {
		return fmt.Errorf("%s: host %q is not in the inventory", f.inventory, f.host)
	}
	from := h.Phase
	if verb == "rollback" && to == registry.PhaseEK && from == registry.PhaseJoinToken {
		return fmt.Errorf("host %s is on a join token: rollback --to ek goes back from DevID mode; to move it on, run omens migrate forward --to ek", f.host)
	}
	newSrc, changed, err := registry.SetPhase(f.inventory, src, f.host, to)
	if err != nil {
		return err
	}
	inv, err := registry.ParseInventory(f.inventory, newSrc)
	if err != nil {
		return err
	}
	socket := f.socket
	if socket == "" && inv.Server != nil {
		if sh := inv.Host(inv.Server.Host); sh != nil {
			socket = inv.PathsOf(sh).SPIREServerSocket
		}
	}
	if socket == "" {
		socket = defaultSPIRESocket
	}
	rc, err := registry.Dial(socket)
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), spireTimeout)
	defer cancel()
	res, err := migrate.Move(ctx, inv, migrate.Options{
		Host: f.host, From: from, Root: f.out, ServerRoot: f.serverOut, Render: hostconf.Options{PluginDir: f.pluginDir}, Client: rc,
	})
	if err != nil {
		return err
	}
	// The inventory last: a move that failed leaves it as it was, to run again.
	rep := MoveReport{Result: res, Inventory: hostconf.StateUnchanged}
	if changed {
		if err := statefile.WriteAtomic(f.inventory, newSrc, 0o644); err != nil {
			return err
		}
		rep.Inventory = hostconf.StateChanged
	}
	rep.Changed = changed || res.Changed()
	if from != to {
		rep.Undo = undoCommand(f, from)
	}
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), rep)
	}
	printMove(cmd.OutOrStdout(), f, rep)
	return nil
}

func phaseNames(ps []registry.Phase) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p))
	}
	return out
}

// undoCommand is the command that puts the host back in phase from.
func undoCommand(f *moveFlags, from registry.Phase) string {
	verb := "forward"
	if from == registry.PhaseJoinToken {
		verb = "rollback"
	}
	s := fmt.Sprintf("omens migrate %s --inventory %s --host %s --to %s", verb, f.inventory, f.host, from)
	if f.out != "/" {
		s += " --out " + f.out
	}
	if f.serverOut != "" {
		s += " --server-out " + f.serverOut
	}
	if f.pluginDir != "" {
		s += " --plugin-dir " + f.pluginDir
	}
	return s
}

func printMove(w io.Writer, f *moveFlags, rep MoveReport) {
	if !rep.Changed {
		fmt.Fprintf(w, "nothing changed: host %s is in phase %s, its files and entries as they should be\n", rep.Host, rep.To)
		return
	}
	fmt.Fprintf(w, "host %s: phase %s -> %s\n", rep.Host, rep.From, rep.To)
	t := newTable(w)
	t.row("STATE", "HOST", "WHAT", "FILE OR ENTRY", "DETAIL")
	t.row(rep.Inventory, "-", "inventory", f.inventory, "phase = \""+string(rep.To)+"\"")
	for _, s := range rep.Steps {
		state, host, path := s.State, s.Host, s.Target
		switch state {
		case hostconf.StateNew, hostconf.StateChanged:
			state = "wrote"
		case hostconf.StateUnchanged:
			continue // unchanged files are not news
		}
		if host == "" {
			host = "-"
		}
		if path == "" {
			path = s.Path
		}
		detail := s.Detail
		if detail == "" {
			detail = "-"
		}
		t.row(state, host, s.What, path, detail)
	}
	t.flush()
	hosts := make([]string, 0, len(rep.Restart))
	for h := range rep.Restart {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		svcs := rep.Restart[h]
		if h == rep.Host && rep.NewIdentity {
			// Another agent ID: the agent attests afresh.
			fmt.Fprintf(w, "then, on %s: systemctl stop spire-agent; rm -r %s (the SVID of its old agent ID: it attests afresh); systemctl start spire-agent\n", h, rep.AgentData)
			svcs = slices.DeleteFunc(slices.Clone(svcs), func(s string) bool { return s == "spire-agent" })
			if len(svcs) == 0 {
				continue
			}
		}
		fmt.Fprintf(w, "then, on %s: systemctl restart %s\n", h, strings.Join(svcs, " "))
	}
	if rep.To == registry.PhaseDevID {
		fmt.Fprintf(w, "once its agent attests in DevID mode: omens apply --file %s (its node alias gains the DevID selector)\n", f.inventory)
	}
	if rep.Undo != "" {
		fmt.Fprintf(w, "to undo: %s\n", rep.Undo)
	}
}
