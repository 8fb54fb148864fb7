package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"omens.dev/omens/policy"
)

// policyStore is what every policy command works on: the policy file, and its state in
// a file (--state) or in PostgreSQL (--database, as the plugin's pcr_state_database).
type policyStore struct{ policyPath, statePath, database string }

// policyFlags adds --policy, --state and --database.
func policyFlags(cmd *cobra.Command, ps *policyStore) {
	cmd.Flags().StringVar(&ps.policyPath, "policy", "", "PCR policy file (HCL), the one the SPIRE server plugin is configured with")
	cmd.Flags().StringVar(&ps.statePath, "state", "", "policy state file (default: the policy file with .state.json appended)")
	cmd.Flags().StringVar(&ps.database, "database", "", "the state's PostgreSQL database instead of a file, the plugin's pcr_state_database (postgres://USER@HOST/DB; "+
		"a password is better in PGPASSWORD or ~/.pgpass than on the command line)")
	cmd.MarkFlagRequired("policy")
	cmd.MarkFlagsMutuallyExclusive("state", "database")
}

// open opens the store; the caller closes it.
func (ps *policyStore) open(cmd *cobra.Command) (*policy.Store, error) {
	if ps.database != "" {
		return policy.OpenDB(cmd.Context(), ps.policyPath, ps.database)
	}
	return policy.Open(ps.policyPath, ps.statePath)
}

func newPCRAllowNextCmd() *cobra.Command {
	var ps policyStore
	var host string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "allow-next --policy FILE --host HASH|NAME --for DURATION",
		Short: "Open a window in which a host's next new boot state is pinned as allowed (for a BIOS update)",
		Long: `Open a window for one host before updating its firmware. Until the window ends, the
first boot state the host presents that matches none of its allowed PCR sets is accepted at
attestation, pinned in the state file as a new allowed set for that host, and the window
closes. Boot states that match an existing set leave the window open. After the window ends,
a changed boot state is rejected again.

The host is its EK hash (64 hex digits) or the name label of a host block in the policy
file. A host the policy file does not list can get a window only if unknown_hosts names a
group. A new window replaces an open one.`,
		Example: `  omens pcr allow-next --policy pcr-policy.hcl --host spire --for 2h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if host == "" {
				return fmt.Errorf("--host is required: the host's EK hash or its name label in the policy file")
			}
			if window <= 0 {
				return fmt.Errorf("--for is required: how long the window stays open, such as 2h or 30m")
			}
			s, err := ps.open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			ek, name, err := s.ResolveHost(host)
			if err != nil {
				return err
			}
			now := time.Now()
			if err := s.AllowNext(ek, window, now); err != nil {
				return err
			}
			who := ek
			if name != "" {
				who = fmt.Sprintf("%s (%s)", name, ek)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "window open for host %s until %s\n", who, now.Add(window).UTC().Format(time.RFC3339))
			fmt.Fprintf(cmd.OutOrStdout(), "its next new boot state before then will be pinned in %s\n", s.StatePath())
			return nil
		},
	}
	policyFlags(cmd, &ps)
	cmd.Flags().StringVar(&host, "host", "", "host: EK hash (64 hex digits) or name label from the policy file")
	cmd.Flags().DurationVar(&window, "for", 0, "how long the window stays open (e.g. 2h, 30m)")
	return cmd
}

func newPCRPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Inspect the PCR boot-state policy the SPIRE server plugin applies, learn and approve boot rules",
	}
	var ps policyStore
	var asJSON bool
	show := &cobra.Command{
		Use:   "show --policy FILE",
		Short: "Show the allowed PCR sets, open windows and what each host last presented",
		Long: `Show what the policy allows and what happened at attestation: the allowed PCR sets of
each group and host (with short digests), the sets pinned through windows, each host's
window, and the boot state each host presented last with the result and the matched set.
For a host whose event log the server replayed, what that log proved last: Secure Boot,
the kernel digest, the boot loaders and the authorities that verified the boot chain.
Hosts that are not in the policy file but have attested are listed too. With --json, the
same data with full digests.`,
		Example: `  omens pcr policy show --policy pcr-policy.hcl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := ps.open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			now := time.Now()
			r, err := s.Report(now)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			printPolicyReport(cmd.OutOrStdout(), r)
			return nil
		},
	}
	policyFlags(show, &ps)
	jsonFlag(show, &asJSON)
	cmd.AddCommand(show, newPCRPolicyLearnCmd(), newPCRPolicyAddKernelCmd())
	return cmd
}

// short abbreviates a digest or an EK hash for tables.
func shortDigest(h string) string {
	if len(h) <= 8 {
		return h
	}
	return h[:8] + "…"
}

func policyPCRList(pcrs map[string]string) string {
	var parts []string
	for _, k := range policy.SortedPCRs(pcrs) {
		parts = append(parts, k+"="+shortDigest(pcrs[k]))
	}
	return strings.Join(parts, " ")
}

func policyHostName(h policy.HostReport) string {
	switch {
	case h.Name != "":
		return h.Name
	case h.InPolicy:
		return shortDigest(h.EKHash)
	default:
		return shortDigest(h.EKHash) + " (not in policy)"
	}
}

func printPolicyReport(w io.Writer, r *policy.Report) {
	const stamp = time.RFC3339
	tb := newTable(w)
	tb.row("Policy file", r.PolicyFile)
	tb.row("State file", r.StateFile)
	unknown := "reject"
	if r.UnknownHosts != policy.Reject {
		unknown = "group " + r.UnknownHosts
	}
	tb.row("Unknown hosts", unknown)
	tb.flush()

	fmt.Fprintln(w, "\nAllowed sets")
	tb = newTable(w)
	tb.row("  SET", "FOR", "BANK", "PCRS")
	n := 0
	for _, g := range r.Groups {
		for _, s := range g.Sets {
			tb.row("  "+s.Name, "group "+g.Name, s.Bank, policyPCRList(s.PCRs))
			n++
		}
	}
	for _, h := range r.Hosts {
		for _, s := range append(h.Sets, h.Pins...) {
			tb.row("  "+s.Name, "host "+policyHostName(h), s.Bank, policyPCRList(s.PCRs))
			n++
		}
	}
	if n == 0 {
		tb.row("  (none)")
	}
	tb.flush()

	var boot []*policy.BootRules
	for _, g := range r.Groups {
		if g.Boot != nil {
			boot = append(boot, g.Boot)
		}
	}
	for _, h := range r.Hosts {
		if h.Boot != nil {
			boot = append(boot, h.Boot)
		}
	}
	if len(boot) > 0 {
		fmt.Fprintln(w, "\nBoot rules")
		tb = newTable(w)
		tb.row("  FOR", "RULES")
		for _, b := range boot {
			tb.row("  "+b.Owner, strings.Join(b.RuleNames(), ", "))
		}
		tb.flush()
	}

	fmt.Fprintln(w, "\nHosts")
	tb = newTable(w)
	tb.row("  HOST", "EK HASH", "GROUP", "WINDOW", "LAST PRESENTED", "RESULT", "SET")
	var rejections [][2]string
	for _, h := range r.Hosts {
		group := h.Group
		if group == "" {
			group = "-"
		}
		window := "-"
		if wd := h.Window; wd != nil {
			if wd.Open {
				window = "open until " + wd.Until.UTC().Format(stamp)
			} else {
				window = "expired " + wd.Until.UTC().Format(stamp)
			}
		}
		last, result, set := "never", "-", "-"
		if l := h.Last; l != nil {
			last, result = l.Time.UTC().Format(stamp), l.Result
			if l.Set != "" {
				set = l.Set
			}
			if l.Error != "" {
				rejections = append(rejections, [2]string{policyHostName(h), l.Error})
			}
		}
		tb.row("  "+policyHostName(h), shortDigest(h.EKHash), group, window, last, result, set)
	}
	if len(r.Hosts) == 0 {
		tb.row("  (none)")
	}
	tb.flush()

	printLastBoot(w, r.Hosts)

	if len(rejections) > 0 {
		fmt.Fprintln(w, "\nLast rejections")
		tb = newTable(w)
		for _, rj := range rejections {
			tb.row("  "+rj[0], rj[1])
		}
		tb.flush()
	}
}

// printLastBoot prints what each host's last replayed event log proved.
func printLastBoot(w io.Writer, hosts []policy.HostReport) {
	tb := newTable(w)
	n := 0
	for _, h := range hosts {
		if h.Last == nil || h.Last.Boot == nil {
			continue
		}
		if n == 0 {
			fmt.Fprintln(w, "\nLast proven boot (event log)")
			tb.row("  HOST", "SECURE BOOT", "KERNEL", "BOOT LOADERS", "AUTHORITIES")
		}
		n++
		b := h.Last.Boot
		short := func(l []string) string {
			if len(l) == 0 {
				return "-"
			}
			out := make([]string, len(l))
			for i, d := range l {
				out[i] = shortDigest(d)
			}
			return strings.Join(out, ", ")
		}
		sb, kernel := b.SecureBoot, b.Kernel
		if sb == "" {
			sb = "not proven"
		}
		if kernel == "" {
			kernel = "-"
		}
		tb.row("  "+policyHostName(h), sb, shortDigest(kernel), short(b.BootLoaders), short(b.Authorities))
	}
	tb.flush()
}
