package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"omens.dev/omens/lab"
)

func newLabCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the Tower of Omens on this machine with simulated TPMs",
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", lab.DefaultDir(), "lab state directory")
	newLab := func(cmd *cobra.Command) (*lab.Lab, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return &lab.Lab{Dir: dir, Omens: exe, Progress: cmd.ErrOrStderr()}, nil
	}

	var detach, noMigrate bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (or resume it), print its status, and stay up until Ctrl-C or `omens lab down`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := l.Up(ctx); err != nil {
				return fmt.Errorf("%w\nthe lab is partly up: see `omens lab status --dir %s`, stop it with `omens lab down --dir %s`", err, dir, dir)
			}
			if noMigrate {
				printLabStatus(cmd.OutOrStdout(), l.Status())
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "\nthe Tower today: every agent on a join token")
				printLabStatus(cmd.OutOrStdout(), l.Status())
				if err := l.Migrate(ctx, func(step string, st []lab.HostStatus) {
					fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", step)
					printLabStatus(cmd.OutOrStdout(), st)
				}); err != nil {
					return fmt.Errorf("%w\nthe lab is up but the migration stopped: see `omens lab status --dir %s`; `omens lab migrate` continues it", err, dir)
				}
				call, refused, err := l.Demo(ctx)
				if err != nil {
					return fmt.Errorf("%w\nthe lab is up but the demo workloads failed: see %s/logs", err, dir)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\nstep-ca (on ca) calls OpenBao (on spire) over mTLS with SVIDs:\n%s\n", call)
				fmt.Fprintf(cmd.OutOrStdout(), "\na process without a registration entry (on auth) is refused:\n%s\n", refused)
			}
			if detach {
				fmt.Fprintf(cmd.OutOrStdout(), "\nthe lab runs in the background; stop it with: omens lab down --dir %s\n", dir)
				return nil
			}
			if err := l.HoldForeground(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nthe lab is up; press Ctrl-C (or run `omens lab down`) to stop it")
			<-ctx.Done()
			fmt.Fprintln(cmd.ErrOrStderr(), "lab: stopping")
			return l.Down()
		},
	}
	up.Flags().BoolVar(&detach, "detach", false, "leave the lab running in the background and return")
	up.Flags().BoolVar(&noMigrate, "no-migrate", false, "stop at the Tower of today (agents on join tokens); `omens lab migrate` plays the rest")

	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the lab's status table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			st := l.Status()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printLabStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	jsonFlag(status, &asJSON)

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every process of the lab (the state directory stays)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			if err := l.Down(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "lab: stopped")
			return nil
		},
	}
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Play the plan's migration: DevIDs, agents onto their TPMs, registration as code, join_token removed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			return l.Migrate(cmd.Context(), func(step string, st []lab.HostStatus) {
				fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", step)
				printLabStatus(cmd.OutOrStdout(), st)
			})
		},
	}
	scenario := &cobra.Command{
		Use:   "scenario NAME",
		Short: "Play a failure from the plan on the running lab (bios-update, join-token-after-migration, revoke, server-down)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			play, ok := lab.Scenarios[args[0]]
			if !ok {
				return fmt.Errorf("unknown scenario %q (known: bios-update, join-token-after-migration, revoke, server-down)", args[0])
			}
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			if err := play(l, cmd.Context(), cmd.OutOrStdout()); err != nil {
				return err
			}
			printLabStatus(cmd.OutOrStdout(), l.Status())
			return nil
		},
	}
	cmd.AddCommand(up, status, down, migrate, scenario)
	return cmd
}

func printLabStatus(w io.Writer, hosts []lab.HostStatus) {
	tb := newTable(w)
	tb.row("HOST", "ATTESTATION", "AGENT ID", "TPM", "EK HASH", "EK CERTIFICATE", "BOOT STATE (sha256 PCR 0,2,4,7)")
	for _, h := range hosts {
		ek := h.EKHash
		if len(ek) > 16 {
			ek = ek[:16] + "…"
		}
		var boot []string
		for _, p := range lab.BootPCRs {
			if v := h.BootState[fmt.Sprint(p)]; v != "" {
				boot = append(boot, fmt.Sprintf("%d:%s", p, v[:8]))
			}
		}
		cert := h.EKCert
		if h.Error != "" {
			cert = "error: " + h.Error
		}
		att, id := h.Attestation, h.AgentID
		if att == "" {
			att, id = "-", "-"
		}
		tb.row(h.Host, att, id, h.TPM, ek, cert, strings.Join(boot, " "))
	}
	tb.flush()
}
