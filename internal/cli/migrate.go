package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/registry"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move the SPIRE agents off join tokens onto TPM attestation",
		Long: `The move off join tokens, host by host: "status" shows how each agent attested (join
token, TPM in EK mode, TPM in DevID mode); "finish", once every host of the inventory has
a TPM-attested agent, bans the join-token agents and renders the server configuration
without NodeAttestor "join_token"; "rollback" puts one host back on a join token or from
DevID to EK mode, and "forward" moves it on again.`,
	}
	cmd.AddCommand(newMigrateStatusCmd(), newMigrateFinishCmd(), newMigrateRollbackCmd(), newMigrateForwardCmd())
	return cmd
}

func newMigrateStatusCmd() *cobra.Command {
	var (
		file, socket string
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the attested agents with their attestation method and host",
		Long: `List every agent the SPIRE server has attested (ListAgents) with its attestation method:
join_token, tpm-ek (NodeAttestor "tpm" on the EK alone) or tpm-devid (a DevID
certificate: selectors tpm:devid:subject:..., or SPIRE's tpm_devid). The host comes from
the inventory (--file: EK hash or DevID subject), or else from the agent's node alias
spiffe://TD/agent/HOST. With --file, the hosts that still lack a TPM-attested agent are
listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var inv *registry.Inventory
			if file != "" {
				var err error
				if inv, err = registry.LoadInventory(file); err != nil {
					return err
				}
			}
			rc, err := registry.Dial(socket)
			if err != nil {
				return err
			}
			defer rc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), spireTimeout)
			defer cancel()
			m, err := rc.Migration(ctx, inv, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), m)
			}
			printMigration(cmd.OutOrStdout(), m, inv != nil)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the inventory file (HCL), to name hosts and show which are not migrated")
	spireSocketFlag(cmd, &socket)
	jsonFlag(cmd, &asJSON)
	return cmd
}

func printMigration(w io.Writer, m *registry.Migration, withInventory bool) {
	if len(m.Agents) == 0 {
		fmt.Fprintln(w, "no attested agents")
	} else {
		t := newTable(w)
		t.row("HOST", "METHOD", "ATTESTOR", "AGENT ID", "STATE")
		now := time.Now()
		for _, a := range m.Agents {
			host := a.Host
			if host == "" {
				host = "-"
			}
			state := "attested"
			switch {
			case a.Banned:
				state = "banned"
			case !a.Live(now):
				state = "expired"
			}
			t.row(host, string(a.Method), a.AttestationType, a.ID, state)
		}
		t.flush()
	}
	if !withInventory {
		return
	}
	if pending := m.Pending(); len(pending) > 0 {
		fmt.Fprintf(w, "\nno TPM-attested agent yet: %s\n", strings.Join(pending, ", "))
	} else {
		fmt.Fprintln(w, "\nevery host has a TPM-attested agent: `omens migrate finish` can remove join_token")
	}
}

func newMigrateFinishCmd() *cobra.Command {
	var file, socket, serverConfig, out string
	cmd := &cobra.Command{
		Use:   "finish",
		Short: "Ban the join-token agents and render the server config without join_token",
		Long: `Finish the move off join tokens. While a host of the inventory has no live TPM-attested
agent, refuse (exit 1) and name those hosts. Otherwise ban every join-token agent through
the SPIRE server API (a ban evicts the agent and refuses its next attestation), and
render the server configuration without its NodeAttestor "join_token" block, everything
else kept as it is, to --out or to standard output. Restart the SPIRE server with it:
until then the server still accepts new join tokens.`,
		Example: `  omens migrate finish --file tower.hcl --server-config server.conf --out server.conf.new`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || serverConfig == "" {
				return fmt.Errorf("--file PATH (the inventory) and --server-config PATH (the SPIRE server's configuration) are required")
			}
			inv, err := registry.LoadInventory(file)
			if err != nil {
				return err
			}
			// Render first, so that a configuration omens cannot edit stops it before
			// any agent is banned.
			src, err := limits.ReadFile(serverConfig, limits.ServerConfig)
			if err != nil {
				return err
			}
			rendered, found, err := registry.RemoveNodeAttestor(src, "join_token")
			if err != nil {
				return fmt.Errorf("%s: %w", serverConfig, err)
			}
			rc, err := registry.Dial(socket)
			if err != nil {
				return err
			}
			defer rc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), spireTimeout)
			defer cancel()
			banned, err := rc.FinishMigration(ctx, inv, time.Now())
			var nr *registry.NotReadyError
			if errors.As(err, &nr) {
				return &exitError{code: 1, msg: "migrate finish: " + strings.TrimPrefix(nr.Error(), "registry: ")}
			}
			info := cmd.OutOrStdout()
			if out == "" {
				info = cmd.ErrOrStderr()
			}
			for _, a := range banned {
				host := a.Host
				if host == "" {
					host = "unknown host"
				}
				fmt.Fprintf(info, "banned join-token agent %s (%s)\n", a.ID, host)
			}
			if err != nil {
				return err
			}
			if len(banned) == 0 {
				fmt.Fprintln(info, "no join-token agent left to ban")
			}
			if !found {
				fmt.Fprintf(info, "%s has no NodeAttestor \"join_token\" block: the configuration is unchanged\n", serverConfig)
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(rendered)
				return err
			}
			mode := os.FileMode(0o600)
			if fi, err := os.Stat(serverConfig); err == nil {
				mode = fi.Mode().Perm()
			}
			if err := os.WriteFile(out, rendered, mode); err != nil {
				return err
			}
			if found {
				fmt.Fprintf(info, "wrote %s without NodeAttestor \"join_token\"; restart the SPIRE server with it\n", out)
			} else {
				fmt.Fprintf(info, "wrote %s\n", out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "the inventory file (HCL): the hosts that must be on TPM attestation")
	spireSocketFlag(cmd, &socket)
	f.StringVar(&serverConfig, "server-config", "", "the SPIRE server's configuration file (server.conf)")
	f.StringVar(&out, "out", "", "write the new configuration here instead of to standard output")
	return cmd
}
