package cli

import (
	"fmt"
	"omens.dev/omens/internal/limits"
	"strings"

	"github.com/spf13/cobra"

	"omens.dev/omens/internal/statefile"
	"omens.dev/omens/policy"
	"omens.dev/omens/verify"
)

// PolicyLearned is the JSON form of `omens pcr policy learn`.
type PolicyLearned struct {
	Boot *policy.BootRules `json:"boot"`
	// HCL is the fragment the text form prints.
	HCL string `json:"hcl"`
}

// logFacts returns the facts a boot event log claims: its replay against the PCR values
// it gives itself, in the sha256 bank if it has one (as `omens eventlog show`).
func logFacts(path string) (*verify.BootFacts, error) {
	log, err := readEventLog(path)
	if err != nil {
		return nil, err
	}
	s, err := showEventLog(log)
	if err != nil {
		return nil, err
	}
	if s.Check != "ok" {
		return nil, fmt.Errorf("event log %s is refused: %s", path, s.Check)
	}
	return s.Facts, nil
}

func newPCRPolicyLearnCmd() *cobra.Command {
	var logPath, group, host string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "learn --log FILE [--group NAME | --host EK_HASH] [--json]",
		Short: "Print the boot rules that describe the boot of an event log, as a policy fragment",
		Long: `Print a boot block of the policy file that allows the boot an event log describes:
secure_boot = "required" if Secure Boot was on, the authorities that verified the boot
chain, the boot loaders and the kernel (the last PCR 4 boot application, as the rules
read it), the PK, KEK and db certificate fingerprints, and the dbx entries as
dbx_includes. The kernel command line is not learned. Digests are in the log's sha256
bank when it has one (the bank the server quotes by default).

The log is not verified against a TPM: learn from a machine you trust, read the fragment,
and paste it into the policy file. With --group or --host the fragment is the whole group
or host block; without, the boot block alone.`,
		Example: `  omens pcr policy learn --log /sys/kernel/security/tpm0/binary_bios_measurements --group tower`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group != "" && host != "" {
				return fmt.Errorf("--group and --host do not go together")
			}
			owner, open := "", ""
			switch {
			case group != "":
				owner, open = "group "+group, fmt.Sprintf("group %q {\n", group)
			case host != "":
				ek, err := policy.NormalizeEKHash(host)
				if err != nil {
					return err
				}
				owner, open = "host "+ek, fmt.Sprintf("host %q {\n", ek)
			}
			facts, err := logFacts(logPath)
			if err != nil {
				return err
			}
			rules, err := policy.LearnBoot(owner, facts)
			if err != nil {
				return err
			}
			text := rules.HCL("")
			if open != "" {
				text = open + rules.HCL("  ") + "}\n"
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), PolicyLearned{Boot: rules, HCL: text})
			}
			fmt.Fprint(cmd.OutOrStdout(), text)
			return nil
		},
	}
	cmd.Flags().StringVar(&logPath, "log", "", "boot event log (binary_bios_measurements)")
	cmd.Flags().StringVar(&group, "group", "", "print the fragment as the boot block of this group")
	cmd.Flags().StringVar(&host, "host", "", "print the fragment as the boot block of this host (EK hash)")
	jsonFlag(cmd, &asJSON)
	return cmd
}

func newPCRPolicyAddKernelCmd() *cobra.Command {
	var policyPath, group, host, fromLog string
	cmd := &cobra.Command{
		Use:   "add-kernel --policy FILE (--group NAME | --host HASH|NAME) (DIGEST | --from-log FILE)",
		Short: "Approve a kernel in a boot block of the policy file, before rolling it out",
		Long: `Approve a new kernel before the hosts reboot into it: its digest is added to the kernels
rule of the boot block of a group or host, so that the first boot into it is allowed and
no window is needed. The digest is given in hex, in the bank of the kernels already listed,
or taken from the event log of a boot into the new kernel (--from-log: its last PCR 4 boot
application).

Only the kernels list changes: the digest is appended after its last entry, and the rest
of the file, comments included, stays as it was. The file is replaced atomically (the
SPIRE server plugin reads it again on its next attestation). The block must already have a
kernels rule: adding the rule would refuse every other kernel.`,
		Example: `  omens pcr policy add-kernel --policy pcr-policy.hcl --group tower 5f0c…
  omens pcr policy add-kernel --policy pcr-policy.hcl --host spire --from-log new-boot.bin`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			digest := ""
			switch {
			case len(args) == 1 && fromLog != "":
				return fmt.Errorf("give the kernel digest or --from-log, not both")
			case len(args) == 1:
				digest = args[0]
			case fromLog != "":
				facts, err := logFacts(fromLog)
				if err != nil {
					return err
				}
				if len(facts.BootApplications) == 0 {
					return fmt.Errorf("event log %s holds no PCR 4 boot application: no kernel to approve", fromLog)
				}
				digest = facts.BootApplications[len(facts.BootApplications)-1].Digest
			default:
				return fmt.Errorf("the kernel digest is required: an argument or --from-log FILE")
			}
			if group != "" && host != "" || group == "" && host == "" {
				return fmt.Errorf("name one of --group NAME or --host HASH|NAME")
			}
			src, err := limits.ReadFile(policyPath, limits.PolicyFile)
			if err != nil {
				return fmt.Errorf("policy file: %w", err)
			}
			ek := ""
			if host != "" {
				s, err := policy.Open(policyPath, "")
				if err != nil {
					return err
				}
				if ek, _, err = s.ResolveHost(host); err != nil {
					return err
				}
			}
			out, err := policy.AddKernel(policyPath, src, group, ek, digest)
			if err != nil {
				return err
			}
			if err := statefile.WriteAtomic(policyPath, out, 0o644); err != nil {
				return fmt.Errorf("policy file: %w", err)
			}
			who := "group " + group
			if ek != "" {
				who = "host " + ek
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved kernel %s in the boot rules of %s in %s\n", strings.ToLower(digest), who, policyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&policyPath, "policy", "", "PCR policy file (HCL), the one the SPIRE server plugin is configured with")
	cmd.MarkFlagRequired("policy")
	cmd.Flags().StringVar(&group, "group", "", "group whose boot block approves the kernel")
	cmd.Flags().StringVar(&host, "host", "", "host whose boot block approves the kernel: EK hash or name label")
	cmd.Flags().StringVar(&fromLog, "from-log", "", "take the kernel digest from this boot event log (its last PCR 4 boot application)")
	return cmd
}
