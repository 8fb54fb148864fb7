package cli

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"omens.dev/omens/bench"
	"omens.dev/omens/hostconf"
	"omens.dev/omens/tpm/tpmsim/mfgca"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure omens under load through the real engines",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchAttestCmd())
	return cmd
}

func newBenchAttestCmd() *cobra.Command {
	var o bench.Options
	var asJSON, quiet, ha bool
	var plugin, ekCA string
	cmd := &cobra.Command{
		Use:   "attest --agents N --concurrency C",
		Short: "Attest N distinct TPM identities through a real SPIRE server's agent API",
		Long: `Start a SPIRE server (spire-server from make tools) with NodeAttestor "tpm" (the
omens-attestor-server binary beside omens, or --plugin) in a temporary directory, and
attest N distinct TPM identities through its agent API, C at a time: the AttestAgent
stream a SPIRE agent opens, over a new TLS connection each time, from a loopback address
of its own per agent (SPIRE limits attestation to one a second per address), with
NodeAttestor "tpm"'s Hello and Evidence.

Each identity is a software TPM (package bench/softtpm, never used by the agent): its own
RSA-2048 EK with a certificate from a manufacturer CA made for the run (--ek-ca: RSA-2048
keys by default, as Infineon, STMicro and Google sign their RSA EK certificates; p256 or
p384 for an ECDSA chain, as Nuvoton's; P-384 costs the plugin a slower signature per new
TPM), its own P-256 AK,
credential activation and quotes over the server's nonces computed in software as the
TPM 2.0 specification says. The server plugin verifies them as it does a real TPM's.

The table (or --json) gives the attested, refused and lost attempts (lost: no answer,
retried after half a second), the rate, latency percentiles (dial to SVID), the CPU
seconds of the spire-server and plugin processes (/proc/PID/stat) and their peak RSS
(VmHWM). Progress lines go to stderr.

--restart-server-at N restarts the server (SIGTERM, start) once N agents are attested;
every agent must still end attested. --reattest-for D then has every agent re-attest
again and again for D, as SPIRE's agent does at each SVID rotation for a node attestor
that can re-attest: a new connection, key and CSR, the full exchange.

--ha runs two SPIRE servers behind one address instead, SPIRE's layout past one machine:
a throwaway PostgreSQL cluster (Debian's postgresql, initdb and postgres in a temporary
directory, as the user nobody when run as root) holds SPIRE's datastore (DataStore "sql",
database_type "postgres") and the plugin's boot-state state (pcr_state_database, with a
policy that admits the software TPMs' boot state), each server keeps its own CA key, and
Debian's haproxy is the address the agents dial (SPIRE's per-address attestation rate
limit is off: every agent comes from haproxy's address). --kill-server-at N then kills one
server (SIGKILL) once N agents are attested; the run goes on through haproxy. The report
adds the extra attestations the kill caused (attempts beyond one per agent and one per
re-attestation turn) and how many agents hold an SVID the surviving server still
verifies (those need not re-attest). Everything is stopped and removed after, also on
Ctrl-C.

The exit code is 1 when an agent ends without an SVID.`,
		Example: `  omens bench attest --agents 1000 --concurrency 1000
  omens bench attest --agents 1000 --concurrency 1000 --restart-server-at 500
  omens bench attest --agents 1000 --concurrency 1000 --reattest-for 1m --json
  omens bench attest --ha --agents 1000 --concurrency 200 --kill-server-at 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Agents <= 0 || o.Concurrency <= 0 {
				return fmt.Errorf("--agents %d --concurrency %d: give both, at least 1 (such as --agents 1000 --concurrency 1000)", o.Agents, o.Concurrency)
			}
			if o.RestartAt < 0 || o.RestartAt > o.Agents {
				return fmt.Errorf("--restart-server-at %d: want between 1 and --agents (%d)", o.RestartAt, o.Agents)
			}
			if o.KillAt < 0 || o.KillAt > o.Agents {
				return fmt.Errorf("--kill-server-at %d: want between 1 and --agents (%d)", o.KillAt, o.Agents)
			}
			if o.KillAt > 0 && !ha {
				return fmt.Errorf("--kill-server-at needs --ha: one server has no other to go on through (use --restart-server-at)")
			}
			if o.KillAt > 0 && o.RestartAt > 0 {
				return fmt.Errorf("--kill-server-at and --restart-server-at: choose one")
			}
			o.EKCA = mfgca.KeyAlgorithm(ekCA)
			if !slices.Contains(mfgca.KeyAlgorithms, o.EKCA) {
				return fmt.Errorf("--ek-ca %q: want one of %v", ekCA, mfgca.KeyAlgorithms)
			}
			if plugin == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				plugin = filepath.Join(filepath.Dir(exe), hostconf.ServerPlugin)
			}
			if !quiet {
				o.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			target := bench.SingleServer(plugin)
			if ha {
				target = bench.HAServers(plugin, o.Progress)
			}
			rep, err := bench.Run(ctx, target, o)
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				err = rep.WriteTable(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if rep.Attested != o.Agents {
				return &exitError{code: 1, msg: fmt.Sprintf("%d of %d agents attested", rep.Attested, o.Agents)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Agents, "agents", 0, "distinct TPM identities to attest")
	f.IntVar(&o.Concurrency, "concurrency", 0, "attestations in flight at once")
	f.IntVar(&o.RestartAt, "restart-server-at", 0, "restart the SPIRE server once this many agents are attested")
	f.BoolVar(&ha, "ha", false, "two SPIRE servers on one PostgreSQL cluster behind haproxy")
	f.IntVar(&o.KillAt, "kill-server-at", 0, "with --ha: kill one server (SIGKILL) once this many agents are attested")
	f.DurationVar(&o.ReattestFor, "reattest-for", 0, "after the first attestations, re-attest every agent again and again for this long (such as 1m)")
	f.DurationVar(&o.AttemptTimeout, "attempt-timeout", 2*time.Minute, "an attestation without an answer after this long is lost (and retried)")
	f.StringVar(&ekCA, "ek-ca", string(mfgca.RSA2048), "key type of the manufacturer CA made for the run: rsa2048, p256 or p384")
	f.StringVar(&plugin, "plugin", "", "the omens-attestor-server binary (default: beside omens)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	return cmd
}
