package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/pgstate"
	"omens.dev/omens/ra"
	"omens.dev/omens/ra/stepca"
)

func newRACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ra",
		Short: "The registration authority that enrolls DevID certificates through step-ca",
	}
	cmd.AddCommand(newRAServeCmd(), newRAPendingCmd(), newRAApproveCmd(), newRAUnbindCmd(), newRATemplateCmd())
	return cmd
}

func readPool(path string) (*x509.CertPool, error) {
	b, err := limits.ReadFile(path, limits.CABundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func newRAServeCmd() *cobra.Command {
	var o struct {
		listen, name, state, database, ekCA string
		metricsListen                       string
		lifetime, grace                     time.Duration
	}
	var ca caFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve DevID enrollment over HTTPS, beside step-ca",
		Long: `Serve DevID enrollment (POST /v1/enroll/begin, /v1/enroll/finish) over HTTPS. A device
proves its TPM (EK certificate from --ek-ca, credential activation, TPM2_Certify of its
DevID key over a fresh nonce, a CSR signed by that key); the RA then checks that the host
name is bound to that EK (omens ra approve) and asks step-ca for the certificate with a
one-time token of the JWK provisioner, whose key it decrypts from step-ca's ca.json. The
RA's own TLS certificate comes from the same step-ca.

Each TPM that asks for an unbound host is queued as a contender for it (omens ra pending);
a host bound to one TPM refuses every other (check host_binding). Every certificate issued
to a host is recorded; when a host renews, its previous certificate stays valid for
--supersede-grace (the host's SPIRE agent presents the new one at its next attestation),
then the RA revokes it in step-ca (reason superseded), checking every minute; a host holds
at most 8 valid certificates (check rate_limit).

A refused client gets only the failed check, a request id and a fixed sentence; the
detail is logged, one decision per line, under that request id (request_id=...). Open
enrollments are bounded: one per EK (a new begin replaces the old one), 16 per client
address (an IPv6 client: its /64) and 30 requests a minute per address (check
rate_limit, HTTP 429), 1024 in all (the oldest is dropped).

With --database instead of --state, the bindings and the open enrollments live in
PostgreSQL (the schema is created or migrated at start), so that several RA replicas
behind one address serve one fleet: an enrollment begun on one finishes on another. The
per-address request limit stays per replica.

On a host, omens-ra.service runs it: omens config render writes the unit (its paths as
these flags) and /etc/omens/ra.env (the listen address, name, step-ca's URL and
provisioner, from the inventory's ra and step_ca blocks).


With --metrics-listen the RA serves GET /metrics for Prometheus on that address, over
plain HTTP (keep it on loopback or a monitoring network): requests, enrollments and
renewals by result and check, revocations, step-ca's latency and errors (docs/metrics.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ekCA == "" {
				return fmt.Errorf("--ek-ca is required (see omens ra serve --help)")
			}
			if o.state == "" && o.database == "" {
				return fmt.Errorf("--state DIR or --database URL is required (see omens ra serve --help)")
			}
			if o.grace <= 0 {
				return fmt.Errorf("--supersede-grace %s: want a positive duration, such as 1h", o.grace)
			}
			client, err := ca.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return ra.Serve(ctx, ra.ServeConfig{
				Listen: o.listen, Name: o.name, StateDir: o.state, Database: o.database, EKCAPath: o.ekCA,
				StepCA: client, Lifetime: o.lifetime, SupersedeGrace: o.grace,
				MetricsListen: o.metricsListen,
				Log:           slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
				Ready: func(addr string) {
					where := o.state
					if o.database != "" {
						where = "PostgreSQL " + pgstate.DescribeString(o.database)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "RA serving on https://%s (state %s)\n", addr, where)
				},
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to serve HTTPS on")
	f.StringVar(&o.name, "name", "ra.funlab.casa", "the RA's DNS name in its TLS certificate")
	f.StringVar(&o.state, "state", "", "directory for the host bindings and the pending queue")
	raDatabaseFlag(cmd, &o.database)
	f.StringVar(&o.ekCA, "ek-ca", "", "TPM manufacturer CA bundle for EK certificates (file or directory)")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "address to serve GET /metrics on, over plain HTTP, such as 127.0.0.1:9465 (empty: no metrics)")
	ca.add(cmd)
	f.DurationVar(&o.lifetime, "lifetime", 2160*time.Hour, "DevID certificate lifetime")
	f.DurationVar(&o.grace, "supersede-grace", ra.DefaultSupersedeGrace, "how long a host's previous DevID certificate stays valid after a renewal, before the RA revokes it (reason superseded)")
	return cmd
}

func newRAPendingCmd() *cobra.Command {
	var state, database string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pending --state DIR|--database URL",
		Short: "List enrollment requests waiting for an operator, and the bound hosts",
		Long: `List every TPM that asked for a host no binding allows yet: one line per (host, EK), with
the time of its first request, the client address it came from and its EK certificate's
issuer. When several TPMs asked for one host, approve the right one with --ek; the others
are refused from then on. Then the bound hosts, with every DevID certificate issued to
each (serial, expiry, and whether it is superseded or revoked).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openRAStore(cmd, state, database)
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := s.Read()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), b)
			}
			out := cmd.OutOrStdout()
			tb := newTable(out)
			tb.row("PENDING HOST", "EK HASH", "FIRST SEEN", "SOURCE", "EK ISSUER", "REQUESTS")
			for _, p := range b.PendingList() {
				issuer := p.EKIssuer
				if issuer == "" {
					issuer = "(no EK certificate)"
				}
				tb.row(p.Host, p.EKHash, p.FirstSeen.Format(time.RFC3339), p.Source, issuer, fmt.Sprint(p.Requests))
			}
			tb.flush()
			fmt.Fprintln(out)
			tb = newTable(out)
			tb.row("BOUND HOST", "EK HASH", "DEVID SERIAL", "NOT AFTER", "STATE")
			now := time.Now()
			for _, h := range sortedHosts(b) {
				if len(h.Certificates) == 0 {
					tb.row(h.Host, h.EKHash, "", "", hostState(h))
				}
				for _, c := range h.Certificates {
					tb.row(h.Host, h.EKHash, c.Serial, c.NotAfter.Format(time.RFC3339), certState(h, c, now))
				}
			}
			tb.flush()
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "the RA's state directory")
	raDatabaseFlag(cmd, &database)
	jsonFlag(cmd, &asJSON)
	return cmd
}

func hostState(h *ra.Binding) string {
	if h.Decommissioned {
		return "decommissioned"
	}
	return "approved"
}

func certState(h *ra.Binding, c *ra.Issued, now time.Time) string {
	switch {
	case !c.Revoked.IsZero():
		return "revoked " + c.Revoked.Format(time.RFC3339)
	case !now.Before(c.NotAfter):
		return "expired"
	case !c.Superseded.IsZero():
		return "superseded " + c.Superseded.Format(time.RFC3339)
	case h.Decommissioned:
		return "decommissioned, not revoked"
	}
	return "current"
}

func sortedHosts(b *ra.Bindings) []*ra.Binding {
	out := slices.Collect(maps.Values(b.Hosts))
	slices.SortFunc(out, func(x, y *ra.Binding) int { return strings.Compare(x.Host, y.Host) })
	return out
}

func newRAApproveCmd() *cobra.Command {
	var state, database, ek string
	cmd := &cobra.Command{
		Use:   "approve HOST --state DIR|--database URL [--ek HASH]",
		Short: "Bind a host name to a TPM: the pending request's EK, or --ek ahead of time",
		Long: `Bind HOST to a TPM. Without --ek, the one TPM that asked for HOST is bound; when more than
one TPM asked (omens ra pending lists each, with its first request, address and EK issuer),
nothing is bound and the command names the --ek values to choose from: which TPM is the
real host is the operator's decision. With --ek, HOST is bound to that EK, asked or not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openRAStore(cmd, state, database)
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := s.Approve(args[0], strings.ToLower(ek), time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bound %s to EK %s; its next enrollment gets a DevID certificate\n", b.Host, b.EKHash)
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "the RA's state directory")
	raDatabaseFlag(cmd, &database)
	cmd.Flags().StringVar(&ek, "ek", "", "EK hash to bind the host to ahead of its first request (omens ek show prints it)")
	return cmd
}

func newRATemplateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "template",
		Short: "Print the X.509 template that step-ca's provisioner must hold for the RA (the DevID profile)",
		Long: `Print the X.509 template of the DevID profile: the subject (the host's common name only)
and SANs come from the RA's one-time token, key usage digitalSignature and extended key
usage clientAuth are fixed, and nothing of the certificate request but its key is used.
omens ra serve refuses to start until the provisioner holds it. On the step-ca host:

  omens ra template > devid.tpl
  step ca provisioner update tower-of-omens --x509-template devid.tpl --ca-config ca.json

then restart step-ca (or send it SIGHUP).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), stepca.DevIDTemplate)
			return err
		},
	}
}

func newRAUnbindCmd() *cobra.Command {
	var state, database string
	cmd := &cobra.Command{
		Use:   "unbind HOST --state DIR|--database URL",
		Short: "Remove a host's binding (a replaced machine, or a decommissioned one to enroll again)",
		Long: `Remove HOST's binding and its record of DevID certificates. It refuses while a certificate
issued to HOST is neither revoked nor expired, and names those serials: forgetting them
would leave a valid DevID that no decommission could find. Revoke them first with
omens devid revoke --host HOST (which revokes every one of them in step-ca), then unbind.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openRAStore(cmd, state, database)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.Unbind(args[0], time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unbound %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "the RA's state directory")
	raDatabaseFlag(cmd, &database)
	return cmd
}

// raDatabaseFlag adds --database, the RA's state in PostgreSQL instead of --state.
func raDatabaseFlag(cmd *cobra.Command, database *string) {
	cmd.Flags().StringVar(database, "database", "", "the RA's PostgreSQL database instead of --state, shared by RA replicas (postgres://USER@HOST/DB; "+
		"a password is better in PGPASSWORD or ~/.pgpass than on the command line)")
	cmd.MarkFlagsMutuallyExclusive("state", "database")
}

// openRAStore opens the RA's state: the directory state or the database; the caller
// closes it.
func openRAStore(cmd *cobra.Command, state, database string) (*ra.Store, error) {
	switch {
	case database != "":
		return ra.OpenDBStore(cmd.Context(), database)
	case state != "":
		return ra.OpenStore(state)
	}
	return nil, fmt.Errorf("--state DIR (the RA's state directory) or --database URL (its PostgreSQL database) is required")
}

// caFlags are the step-ca settings of the commands that act for the RA.
type caFlags struct{ url, root, config, provisioner, passwordFile string }

func (f *caFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.url, "ca-url", "", "step-ca URL")
	fl.StringVar(&f.root, "ca-root", "", "step-ca's root certificate (PEM)")
	fl.StringVar(&f.config, "ca-config", "", "step-ca's ca.json, which holds the provisioner's encrypted key (or a JWK file)")
	fl.StringVar(&f.provisioner, "provisioner", "tower-of-omens", "the JWK provisioner")
	fl.StringVar(&f.passwordFile, "provisioner-password-file", "", "file holding the provisioner key's password")
}

func (f *caFlags) client() (*stepca.Client, error) {
	for flag, v := range map[string]string{"--ca-url": f.url, "--ca-root": f.root, "--ca-config": f.config, "--provisioner-password-file": f.passwordFile} {
		if v == "" {
			return nil, fmt.Errorf("%s is required", flag)
		}
	}
	pw, err := limits.ReadFile(f.passwordFile, limits.PasswordFile)
	if err != nil {
		return nil, err
	}
	prov, err := stepca.LoadProvisioner(f.config, f.provisioner, []byte(strings.TrimRight(string(pw), "\r\n")))
	if err != nil {
		return nil, err
	}
	roots, err := readPool(f.root)
	if err != nil {
		return nil, err
	}
	return stepca.New(f.url, roots, prov), nil
}
