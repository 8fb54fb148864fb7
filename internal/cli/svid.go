package cli

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"omens.dev/omens/svidhelper"
)

func newSVIDCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "svid",
		Short: "X.509-SVIDs for services that read certificate files",
	}
	cmd.AddCommand(newSVIDHelperCmd())
	return cmd
}

func newSVIDHelperCmd() *cobra.Command {
	var config string
	var daemon bool
	cmd := &cobra.Command{
		Use:   "helper --config FILE",
		Short: "Write the SVID, its key and the bundle as PEM files; signal or restart the service at every rotation",
		Long: `helper fetches X.509-SVIDs from the SPIFFE Workload API and writes, in cert_dir, the
certificate chain (svid_file_name), the private key (svid_key_file_name, mode 0600) and the
trust bundle (svid_bundle_file_name), each replaced atomically. At every rotation it sends
renew_signal to the pid in pid_file_name, and starts, signals or restarts cmd (with
cmd_args). The configuration file has spiffe-helper's keys and meanings:

  agent_address = "/run/spire/agent/public/api.sock"
  cert_dir = "/etc/openbao/svid"
  svid_file_name = "svid.pem"
  svid_key_file_name = "svid_key.pem"
  svid_bundle_file_name = "svid_bundle.pem"
  renew_signal = "SIGHUP"
  pid_file_name = "/run/openbao/openbao.pid"

daemon_mode = false writes the files once and exits 0. One log line per rotation names
the SPIFFE ID, the serial and the expiry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := svidhelper.Load(config)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("daemon-mode") {
				cfg.DaemonMode = daemon
				// Validate the combination again, as if the file said so.
				if cfg, err = svidhelper.Override(config, cfg); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return svidhelper.Run(ctx, cfg, svidhelper.Options{
				Log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
			})
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the helper configuration file (HCL, spiffe-helper's keys)")
	cmd.Flags().BoolVar(&daemon, "daemon-mode", true, "override daemon_mode: false writes the files once and exits")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
