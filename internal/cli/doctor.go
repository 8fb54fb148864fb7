package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"omens.dev/omens/doctor"
)

func newDoctorCmd() *cobra.Command {
	var opts doctor.Options
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--tpm PATH] [--ca FILE] [--agent-config FILE] [--luks DEVICE] [--event-log FILE] [--json]",
		Short: "Check that this host is ready to attest with its TPM: one line per check, pass, warn or fail",
		Long: `Check this host's readiness for TPM attestation, one line per check with what to do next:
the TPM (which path, TPM 2.0, manufacturer, firmware); its EK certificates per kind and,
with --ca, their chain to the manufacturer; the PCR bank the agent quotes, allocated with
its PCRs; the boot event log, replayed against the current PCRs; the Secure Boot state it
proves; with --luks, the Clevis tpm2 binding of a LUKS2 device or image file against the
PCRs the agent quotes (PCR 4 changes at every kernel update); with --agent-config (the
SPIRE agent's configuration), the plugin binary and its plugin_checksum, the AK handle,
the DevID certificate and its expiry, the DevID key in this TPM, and the SPIRE server.

A check warns about what it could not check because it was not given, and about what is
allowed but will bite. Exits 1 when any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := doctor.Run(opts)
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			} else {
				printDoctor(cmd.OutOrStdout(), r)
			}
			if r.Failed() {
				var failed []string
				for _, c := range r.Checks {
					if c.Status == doctor.Fail {
						failed = append(failed, c.Name)
					}
				}
				return &exitError{code: 1, msg: fmt.Sprintf("doctor: %d of %d checks failed (%s)", r.Fail, len(r.Checks), strings.Join(failed, ", "))}
			}
			return nil
		},
	}
	tpmFlag(cmd, &opts.TPMPath)
	cmd.Flags().StringVar(&opts.CAPath, "ca", "", "TPM manufacturer CA bundle (PEM or DER file, or a directory) to verify the EK certificates' chains")
	cmd.Flags().StringVar(&opts.AgentConfigPath, "agent-config", "", "the SPIRE agent's configuration (spire-agent.conf)")
	cmd.Flags().StringVar(&opts.LUKSDevice, "luks", "", "LUKS2 device or image file whose Clevis tpm2 binding to check")
	cmd.Flags().StringVar(&opts.EventLogPath, "event-log", "", "boot event log (default: the agent's event_log_path, else /sys/kernel/security/tpm0/binary_bios_measurements)")
	jsonFlag(cmd, &asJSON)
	return cmd
}

func printDoctor(w io.Writer, r *doctor.Report) {
	tb := newTable(w)
	tb.row("STATUS", "CHECK", "DETAIL")
	for _, c := range r.Checks {
		detail := c.Detail
		if c.Next != "" {
			detail += " — next: " + c.Next
		}
		tb.row(string(c.Status), c.Name, detail)
	}
	tb.flush()
	fmt.Fprintf(w, "\n%d checks: %d pass, %d warn, %d fail\n", len(r.Checks), r.Pass, r.Warn, r.Fail)
}
