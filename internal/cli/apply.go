package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"omens.dev/omens/registry"
)

// defaultSPIRESocket is the SPIRE server's default socket_path.
const defaultSPIRESocket = "/tmp/spire-server/private/api.sock"

// spireTimeout bounds one command's calls to the SPIRE server API.
const spireTimeout = 2 * time.Minute

// spireSocketFlag adds --spire-socket.
func spireSocketFlag(cmd *cobra.Command, socket *string) {
	cmd.Flags().StringVar(socket, "spire-socket", defaultSPIRESocket, "the SPIRE server API socket (the server's socket_path)")
}

func newApplyCmd() *cobra.Command {
	var (
		file, socket          string
		dryRun, prune, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Register an inventory's hosts and workloads in SPIRE (registration as code)",
		Long: `Apply an inventory file (HCL) to a SPIRE server through its API: each host becomes a
node alias spiffe://TD/agent/HOST on the selectors of its TPM (EK hash, DevID subject,
PCR policy), each workload an entry parented on its host's alias. The command prints a
diff (+ create, ~ update, - delete, = unchanged) and makes it so; a second run changes
nothing.

Entries that omens manages carry a hint "omens:host:NAME" or "omens:workload:NAME".
With --prune, managed entries that the inventory no longer names are deleted; hand-made
entries (any other hint) are never touched. See examples/tower.hcl for the format.`,
		Example: `  omens apply --file tower.hcl --dry-run
  omens apply --file tower.hcl --spire-socket /run/spire/server/api.sock --prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("--file PATH (the inventory) is required")
			}
			inv, err := registry.LoadInventory(file)
			if err != nil {
				return err
			}
			rc, err := registry.Dial(socket)
			if err != nil {
				return err
			}
			defer rc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), spireTimeout)
			defer cancel()
			plan, err := rc.Plan(ctx, inv, prune)
			if err != nil {
				return err
			}
			applied := false
			var applyErr error
			if !dryRun && plan.HasChanges() {
				applyErr = rc.Apply(ctx, plan)
				applied = applyErr == nil
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, struct {
					*registry.Plan
					Summary string `json:"summary"`
					DryRun  bool   `json:"dry_run"`
					Applied bool   `json:"applied"`
				}{plan, plan.Summary(), dryRun, applied}); err != nil {
					return err
				}
			} else {
				fmt.Fprint(out, plan)
				switch {
				case !plan.HasChanges():
				case dryRun:
					fmt.Fprintln(out, "dry run: nothing was changed")
				case applied:
					fmt.Fprintf(out, "applied: %d created, %d updated, %d deleted\n", plan.Count(registry.Create), plan.Count(registry.Update), plan.Count(registry.Delete))
				}
			}
			if applyErr != nil {
				return fmt.Errorf("apply: %w", applyErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "the inventory file (HCL), such as tower.hcl")
	spireSocketFlag(cmd, &socket)
	f.BoolVar(&dryRun, "dry-run", false, "print the diff and change nothing")
	f.BoolVar(&prune, "prune", false, "delete entries that omens manages and that the inventory no longer names")
	jsonFlag(cmd, &asJSON)
	return cmd
}
