package cli

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
)

func newTPMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tpm",
		Short: "Inspect a TPM, or run a simulated one",
	}
	cmd.AddCommand(newTPMInfoCmd(), newTPMSimulateCmd(), newTPMRebootCmd())
	return cmd
}

func newTPMInfoCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the TPM's manufacturer, vendor string, firmware version and specification level",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := tpm.Open(path)
			if err != nil {
				return err
			}
			defer t.Close()
			info, err := tpm.ReadInfo(t)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			tb := newTable(cmd.OutOrStdout())
			tb.row("Manufacturer", fmt.Sprintf("%s (%s)", info.Manufacturer, info.ManufacturerID))
			tb.row("Vendor string", info.VendorString)
			tb.row("Firmware", info.FirmwareVersion)
			tb.row("Specification", fmt.Sprintf("TPM %s revision %s (%d, day %d)", info.Family, info.Revision, info.SpecYear, info.SpecDay))
			tb.flush()
			return nil
		},
	}
	tpmFlag(cmd, &path)
	jsonFlag(cmd, &asJSON)
	return cmd
}

func newTPMSimulateCmd() *cobra.Command {
	var opts tpmsim.Options
	var socket string
	cmd := &cobra.Command{
		Use:   "simulate --state DIR --socket PATH [--boot-log FILE]",
		Short: "Serve a simulated TPM (Microsoft reference TPM) with EK certificates on a unix socket",
		Long: `Serve a simulated TPM 2.0 on a unix socket that speaks raw TPM commands, so that omens,
go-tpm and SPIRE's tpm_devid agent open it like a device (--tpm PATH, tpm_path).

The first start creates, in --state DIR, the host's seed and its manufacturer: a root and
intermediate CA written to DIR/manufacturer-ca.pem (the bundle a verifier trusts) that
issues the EK certificate (RSA-2048, plus ECC P-256 with --ecc) stored in NV. The TPM's NV
memory is saved to DIR/nv after every command that changed it, so a later start, even
after the process was killed, keeps the EK, its certificate and the persistent keys. At every boot the simulator measures DIR/boot.json into
the PCRs; 'omens tpm reboot' reboots it, optionally after a BIOS update.

With --boot-log FILE the host boots like the machine that wrote FILE, a TCG boot event log
(binary_bios_measurements, SHA-1 or crypto-agile format): FILE is copied to
DIR/binary_bios_measurements, the path to give the agent as event_log_path, and at every
boot, after TPM2_Startup, each of its events is extended into the PCRs in log order
(TPM2_PCR_Extend with the event's digest in each of its banks that the simulator has:
sha1, sha256, sha384, sha512), so that the log replays against the PCRs and a quote.
EV_NO_ACTION events extend nothing; a StartupLocality event starts PCR 0 at that locality,
as a TPM2_Startup from it would. The boot profile is then not measured.

PCRs are volatile: every start of this command and every reboot resets them and plays the
boot again. Once DIR holds a boot log, later starts boot it even without --boot-log;
a new --boot-log replaces it, and removing DIR/binary_bios_measurements returns the host
to its boot profile.

It runs until interrupted (Ctrl-C or SIGTERM).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.StateDir == "" || socket == "" {
				return fmt.Errorf("--state DIR and --socket PATH are required (e.g. omens tpm simulate --state ./spire-tpm --socket ./spire-tpm.sock)")
			}
			sim, err := tpmsim.Start(opts)
			if err != nil {
				return err
			}
			defer sim.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			errc := make(chan error, 1)
			go func() { errc <- sim.Serve(ctx, socket) }()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "simulated TPM serving on %s (control %s)\n", socket, tpmsim.ControlPath(socket))
			fmt.Fprintf(out, "manufacturer CA bundle: %s\n", sim.BundlePath())
			if st := sim.Status(); st.BootLog != nil {
				fmt.Fprintf(out, "booted from event log: %s (%s)\n", st.EventLog, describeBootLog(st.BootLog))
			}
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
				err := <-errc
				fmt.Fprintln(out, "simulated TPM stopped")
				return err
			}
		},
	}
	cmd.Flags().StringVar(&opts.StateDir, "state", "", "directory holding the host's seed, manufacturer CA, EK certificates and boot profile (created if absent)")
	cmd.Flags().StringVar(&socket, "socket", "", "unix socket to serve TPM commands on")
	cmd.Flags().BoolVar(&opts.ECC, "ecc", false, "also provision an ECC P-256 EK and certificate (NV 0x01C0000A)")
	cmd.Flags().StringVar(&opts.Model, "model", "omens-sim", "TPM model written into the EK certificate")
	cmd.Flags().StringVar(&opts.BootLog, "boot-log", "", "TCG boot event log to boot from, copied to DIR/"+tpmsim.EventLogFile+" (the agent's event_log_path)")
	cmd.Flags().BoolVar(&opts.EKExpired, "ek-expired", false, "on a new host, issue EK certificates that expired a minute ago (valid from the manufacturer CA's start): a TPM kept past its certificate's life")
	return cmd
}

// describeBootLog says what playing a boot log did, for a person.
func describeBootLog(r *tpmsim.BootLogReport) string {
	s := fmt.Sprintf("%d events extended in %s", r.Events, strings.Join(r.Banks, ", "))
	if r.StartupLocality != 0 {
		s += fmt.Sprintf(", startup locality %d", r.StartupLocality)
	}
	if len(r.Skipped) > 0 {
		s += fmt.Sprintf("; banks the simulator lacks: %s", strings.Join(r.Skipped, ", "))
	}
	return s
}

func newTPMRebootCmd() *cobra.Command {
	var socket, bootLog string
	var set []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reboot --socket PATH [--set PCR=EVENT]... [--boot-log FILE]",
		Short: "Reboot a simulated TPM (PCRs reset, boot measured again), optionally after a firmware change",
		Long: `Reboot the simulated TPM serving --socket: TPM2_Shutdown, power cycle, TPM2_Startup(CLEAR),
then the boot profile is measured into the PCRs again. Each --set PCR=EVENT replaces what
is measured into that PCR from now on (saved in the state directory), which is how a BIOS
update is played: omens tpm reboot --socket S --set "0=firmware 2.0".

A host booted from an event log (simulate --boot-log) plays its log again. With --boot-log
FILE it reboots into the boot FILE records instead, which replaces the host's log from
now on: a kernel update, a firmware update or Secure Boot turned off, in a log written for
it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if socket == "" {
				return fmt.Errorf("--socket PATH is required (the socket of `omens tpm simulate`)")
			}
			if bootLog != "" && len(set) > 0 {
				return fmt.Errorf("--boot-log and --set do not go together: a host boots its event log or its boot profile")
			}
			profile := tpmsim.Profile{}
			for _, s := range set {
				pcr, ev, err := tpmsim.ParseProfileEntry(s)
				if err != nil {
					return err
				}
				profile[pcr] = append(profile[pcr], ev)
			}
			var st *tpmsim.Status
			var err error
			if bootLog != "" {
				st, err = tpmsim.RebootFromLog(socket, bootLog)
			} else {
				st, err = tpmsim.Reboot(socket, profile)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			if st.BootLog != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "rebooted (boot %d) from event log %s (%s)\n", st.Boots, st.EventLog, describeBootLog(st.BootLog))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebooted (boot %d); measured:\n", st.Boots)
			tb := newTable(cmd.OutOrStdout())
			for pcr := range tpm.NumPCRs {
				if evs, ok := st.BootProfile[pcr]; ok {
					tb.row(fmt.Sprintf("  PCR %d", pcr), strings.Join(evs, ", "))
				}
			}
			tb.flush()
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "TPM socket of the simulator")
	cmd.Flags().StringArrayVar(&set, "set", nil, "PCR=EVENT to measure into PCR from this boot on (repeatable)")
	cmd.Flags().StringVar(&bootLog, "boot-log", "", "TCG boot event log to boot from, from this boot on")
	jsonFlag(cmd, &asJSON)
	return cmd
}
