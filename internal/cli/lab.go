package cli

import (
	"fmt"
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
				lab.WriteStatus(cmd.OutOrStdout(), l.Status())
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "\nthe Tower today: every agent on a join token")
				lab.WriteStatus(cmd.OutOrStdout(), l.Status())
				if err := l.Migrate(ctx, func(step string, st []lab.HostStatus) {
					fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", step)
					lab.WriteStatus(cmd.OutOrStdout(), st)
				}); err != nil {
					return fmt.Errorf("%w\nthe lab is up but the migration stopped: see `omens lab status --dir %s`; `omens lab migrate` continues it", err, dir)
				}
				call, refused, err := l.Demo(ctx)
				if err != nil {
					return fmt.Errorf("%w\nthe lab is up but the demo workloads failed: see %s/logs", err, dir)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\nstep-ca (on ca) calls OpenBao (on spire) over mTLS with SVIDs:\n%s\n", call)
				fmt.Fprintf(cmd.OutOrStdout(), "\na process without a registration entry (on auth) is refused:\n%s\n", refused)
				fmt.Fprintln(cmd.OutOrStdout(), "\nthe Tower now: every agent on its TPM, the workloads holding SVIDs")
				lab.WriteStatus(cmd.OutOrStdout(), l.Status())
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nmetrics and alerts:")
			lab.WriteMonitoring(cmd.OutOrStdout(), l.Monitoring())
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
		Short: "Print the lab's status table, its metric endpoints and alerts",
		Long: `Print the lab's status table, a row per host, then where its metrics are: Prometheus
(with omens' alert rules loaded), SPIRE's Prometheus endpoints (server and agents, with
the tpm plugins' metrics) and the RA's /metrics, and the alerts firing now. With --json,
an object: "hosts" (the rows, every value whole) and "monitoring".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			st, mon := l.Status(), l.Monitoring()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Hosts      []lab.HostStatus `json:"hosts"`
					Monitoring lab.Monitoring   `json:"monitoring"`
				}{st, mon})
			}
			lab.WriteStatus(cmd.OutOrStdout(), st)
			fmt.Fprintln(cmd.OutOrStdout())
			return lab.WriteMonitoring(cmd.OutOrStdout(), mon)
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
				lab.WriteStatus(cmd.OutOrStdout(), st)
			})
		},
	}
	scenario := &cobra.Command{
		Use:   "scenario NAME",
		Short: "Play a failure from the plan on the running lab and print what happened",
		Long: `Play a failure from the Tower's plan on the running lab (omens lab up), print each step
and what the Tower did, then the status table. The scenarios:

` + lab.ScenarioHelp() + `
server-down, tpm-failure and network-partition wait for the agent's next re-attestation:
up to a minute; rollback and ek-expired wait for three. network-partition needs root (it
creates a network namespace).`,
		Example:   "  omens lab scenario bios-update",
		Args:      cobra.ExactArgs(1),
		ValidArgs: lab.ScenarioNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			play, ok := lab.FindScenario(args[0])
			if !ok {
				return fmt.Errorf("unknown scenario %q (known: %s)", args[0], strings.Join(lab.ScenarioNames(), ", "))
			}
			l, err := newLab(cmd)
			if err != nil {
				return err
			}
			if err := play.Run(cmd.Context(), l, cmd.OutOrStdout()); err != nil {
				return err
			}
			return lab.WriteStatus(cmd.OutOrStdout(), l.Status())
		},
	}
	cmd.AddCommand(up, status, down, migrate, scenario)
	return cmd
}
