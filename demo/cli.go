package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Main runs the omens-demo command line with args and returns the exit status. SIGINT
// and SIGTERM stop `serve` and `call --every`.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return MainContext(ctx, args, stdout, stderr)
}

// MainContext is Main under ctx: `serve` and `call --every` stop when ctx ends.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "omens-demo:", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "omens-demo",
		Short: "Demo workloads that talk mutual TLS with SPIFFE X.509-SVIDs",
		Long: `omens-demo stands in for the Tower's workloads, OpenBao on host spire
(spiffe://funlab.casa/openbao) and step-ca on host ca (spiffe://funlab.casa/step-ca).
It fetches its X.509-SVID from the SPIRE agent's Workload API and talks mutual TLS,
authorizing its peer by SPIFFE ID: "serve" answers GET /hello, "call" sends it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newServeCmd(), newCallCmd())
	return root
}

// socketFlags adds --socket and --timeout.
func socketFlags(cmd *cobra.Command, socket *string, timeout *time.Duration) {
	cmd.Flags().StringVar(socket, "socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"),
		"the SPIRE agent's Workload API socket: a path or unix:///path (default $SPIFFE_ENDPOINT_SOCKET)")
	cmd.Flags().DurationVar(timeout, "timeout", DefaultTimeout,
		"how long to wait for an SVID from the Workload API, and for each request")
}

// svidFileFlag adds --svid-file.
func svidFileFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "svid-file", "",
		"keep a JSON file at this path describing the SVID this process holds (rewritten on each renewal, left in place on exit)")
}

// stderrLog is the log of serve, and of call --every: one line per event on stderr.
func stderrLog(cmd *cobra.Command) *log.Logger {
	return log.New(cmd.ErrOrStderr(), "omens-demo: ", log.LstdFlags|log.Lmsgprefix)
}

func parseID(flag, s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("--%s %q: not a SPIFFE ID: %v", flag, s, err)
	}
	return id, nil
}

func newServeCmd() *cobra.Command {
	var (
		socket, listen, svidFile string
		allow                    []string
		timeout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve --socket SOCKET --listen HOST:PORT --allow SPIFFE_ID...",
		Short: "Answer GET /hello over mutual TLS to the allowed SPIFFE IDs",
		Long: `serve answers GET /hello over HTTPS with mutual TLS, with JSON naming its own SPIFFE ID,
the caller's and the time. Only callers whose SVID carries an --allow'ed ID complete the
TLS handshake; the others are refused. It logs one line per request and per refusal, and
uses each SVID the agent renews without a restart. It runs until SIGINT or SIGTERM.

With --svid-file it keeps a JSON file describing the SVID it holds (spiffe_id, serial,
not_before, not_after, pid, updated_at), written when it gets its first SVID and replaced
on each renewal. The file stays when the process exits: a reader should check that pid is
still alive.`,
		Example: `  omens-demo serve --socket /run/spire/agent/public/api.sock --listen 127.0.0.1:8443 \
      --allow spiffe://funlab.casa/step-ca --svid-file /run/omens-demo/openbao.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen == "" {
				return errors.New("--listen HOST:PORT is required")
			}
			if len(allow) == 0 {
				return errors.New("--allow SPIFFE_ID is required (once per allowed peer)")
			}
			var ids []spiffeid.ID
			for _, a := range allow {
				id, err := parseID("allow", a)
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			if _, err := SocketAddr(socket); err != nil {
				return err
			}
			ctx := cmd.Context()
			logger := stderrLog(cmd)
			src, err := OpenSource(ctx, socket, timeout)
			if err != nil {
				return err
			}
			defer src.Close()
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return Serve(ctx, l, ServerConfig{Source: src, Allow: ids, Log: logger, Timeout: timeout, SVIDFile: svidFile})
		},
	}
	socketFlags(cmd, &socket, &timeout)
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on, such as 127.0.0.1:8443")
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "a SPIFFE ID that may call (repeatable)")
	svidFileFlag(cmd, &svidFile)
	return cmd
}

func newCallCmd() *cobra.Command {
	var (
		socket, target, expect, svidFile string
		asJSON                           bool
		timeout, every                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "call --socket SOCKET --url https://HOST:PORT/hello --expect SPIFFE_ID [--every DURATION]",
		Short: "Send GET /hello over mutual TLS to a server with the expected SPIFFE ID",
		Long: `call sends GET to --url over HTTPS with mutual TLS, presenting this process's SVID, and
accepts only a server whose SVID carries the --expect'ed ID. It prints the answer and
exits 0, or explains the failure and exits 1.

With --every DURATION (at least 100ms) it calls again and again, every DURATION, until
SIGINT or SIGTERM, and then exits 0. It keeps its SVID source open, so it presents each
SVID the agent renews, and prints one line per call, the time of the call in UTC first:

  2026-11-29T10:00:00Z ok server spiffe://funlab.casa/openbao
  2026-11-29T10:00:05Z failed: <why>

A failed call does not stop it. Renewals are logged on stderr.

With --svid-file it keeps a JSON file describing the SVID it holds (spiffe_id, serial,
not_before, not_after, pid, updated_at), written when it gets its first SVID and, with
--every, replaced on each renewal. The file stays when the process exits: a reader should
check that pid is still alive.`,
		Example: `  omens-demo call --socket /run/spire/agent/public/api.sock \
      --url https://127.0.0.1:8443/hello --expect spiffe://funlab.casa/openbao

  # call every 5 seconds until interrupted, keeping a status file
  omens-demo call --socket /run/spire/agent/public/api.sock \
      --url https://127.0.0.1:8443/hello --expect spiffe://funlab.casa/openbao \
      --every 5s --svid-file /run/omens-demo/step-ca.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target == "" {
				return errors.New("--url https://HOST:PORT/hello is required")
			}
			if expect == "" {
				return errors.New("--expect SPIFFE_ID is required")
			}
			want, err := parseID("expect", expect)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("every") && every < minEvery {
				return fmt.Errorf("--every %v: below the minimum of %v", every, minEvery)
			}
			if _, err := SocketAddr(socket); err != nil {
				return err
			}
			ctx := cmd.Context()
			src, err := OpenSource(ctx, socket, timeout)
			if err != nil {
				return err
			}
			defer src.Close()
			own, err := src.GetX509SVID()
			if err != nil {
				return fmt.Errorf("own SVID: %w", err)
			}
			if svidFile != "" {
				if err := writeSVIDStatus(svidFile, own); err != nil {
					return err
				}
			}
			cfg := CallConfig{Source: src, URL: target, Expect: want, Timeout: timeout}
			out := cmd.OutOrStdout()
			if every > 0 {
				defer watchRenewals(ctx, src, own, stderrLog(cmd), svidFile)()
				return callEvery(ctx, out, cfg, every)
			}
			res, err := Call(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(res.Hello, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			}
			_, err = fmt.Fprintf(out, "server  %s\nclient  %s\ntime    %s\n", res.Hello.Server, res.Hello.Client, res.Hello.Time)
			return err
		},
	}
	socketFlags(cmd, &socket, &timeout)
	cmd.Flags().StringVar(&target, "url", "", "the server's URL, such as https://127.0.0.1:8443/hello")
	cmd.Flags().StringVar(&expect, "expect", "", "the server's SPIFFE ID; any other server is refused")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the answer as JSON")
	cmd.Flags().DurationVar(&every, "every", 0,
		"call again every DURATION (at least 100ms) until SIGINT or SIGTERM, printing one line per call")
	svidFileFlag(cmd, &svidFile)
	return cmd
}

// minEvery is the shortest interval of call --every.
const minEvery = 100 * time.Millisecond

// oneLine keeps a failure on its line of the call --every output.
var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// callEvery calls cfg.URL every interval until ctx ends, and then returns nil. It prints
// one line per call to out, the call's start time first:
//
//	2026-11-29T10:00:00Z ok server spiffe://funlab.casa/openbao
//	2026-11-29T10:00:05Z failed: <why>
//
// A failed call does not stop it, and a call that ctx interrupts prints nothing.
func callEvery(ctx context.Context, out io.Writer, cfg CallConfig, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		start := time.Now().UTC().Format(time.RFC3339)
		res, err := Call(ctx, cfg)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			_, err = fmt.Fprintf(out, "%s failed: %s\n", start, oneLine.Replace(err.Error()))
		} else {
			_, err = fmt.Fprintf(out, "%s ok server %s\n", start, res.Hello.Server)
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
