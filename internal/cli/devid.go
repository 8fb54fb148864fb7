package cli

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"omens.dev/omens/registry"

	"github.com/google/go-tpm/tpm2"
	"github.com/spf13/cobra"

	"omens.dev/omens/enroll"
	"omens.dev/omens/internal/limits"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

func newDevIDCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "devid",
		Short: "Enroll and inspect this host's DevID certificate",
	}
	cmd.AddCommand(newDevIDEnrollCmd(), newDevIDStatusCmd(), newDevIDRenewCmd(), newDevIDRevokeCmd())
	return cmd
}

func parseHandle(s string) (tpm2.TPMHandle, error) {
	if s == "" {
		return 0, nil
	}
	h, err := tpmrules.ParsePersistentHandle(s)
	if err != nil {
		return 0, fmt.Errorf("handle %w", err)
	}
	return h, nil
}

func newDevIDEnrollCmd() *cobra.Command {
	var path, raURL, raRoot, host, handle, dir, keyAlg string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "enroll --ra URL --ra-root FILE --host NAME",
		Short: "Create a DevID key in the TPM and get its certificate through the RA",
		Long: `Create a DevID key in the TPM (under the TCG SRK template), prove the TPM to the RA and get
the certificate from step-ca. Writes DIR/devid.crt (certificate chain), DIR/devid.pub and
DIR/devid.priv (the key's blobs, as SPIRE's tpm_devid loads them; the private blob is
encrypted by this TPM) and DIR/devid.json; with --handle the key is also persisted there.
A host the RA does not know yet is queued for an operator: run it again once approved.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if raURL == "" || raRoot == "" || host == "" {
				return fmt.Errorf("--ra URL, --ra-root FILE and --host NAME are required")
			}
			h, err := parseHandle(handle)
			if err != nil {
				return err
			}
			roots, err := readPool(raRoot)
			if err != nil {
				return err
			}
			meta, err := enroll.Enroll(cmd.Context(), enroll.Config{TPMPath: path, RAURL: raURL, RARoots: roots, Host: host, Dir: dir, Handle: h, KeyAlg: keyAlg})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), meta)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s: DevID certificate serial %s from %s, valid until %s\n", meta.Host, meta.Serial, meta.Issuer, meta.NotAfter.Format(time.RFC3339))
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (chain), %s and %s (key blobs)", filepath.Join(dir, enroll.CertFile), filepath.Join(dir, enroll.PubFile), filepath.Join(dir, enroll.PrivFile))
			if meta.Handle != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "; key persisted at %s", meta.Handle)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	tpmFlag(cmd, &path)
	f := cmd.Flags()
	f.StringVar(&raURL, "ra", "", "the RA's URL, e.g. https://ca.funlab.casa:8443")
	f.StringVar(&raRoot, "ra-root", "", "step-ca's root certificate (PEM), which the RA's TLS certificate chains to")
	f.StringVar(&host, "host", "", "the host name the certificate carries, e.g. auth.funlab.casa")
	f.StringVar(&handle, "handle", "", "also persist the DevID key at this handle, e.g. 0x81010002")
	f.StringVar(&dir, "dir", "/var/lib/omens/devid", "directory for the certificate and key blobs")
	f.StringVar(&keyAlg, "key", "ecc", "DevID key: ecc (P-256) or rsa (2048)")
	jsonFlag(cmd, &asJSON)
	return cmd
}

// DevIDStatus is the JSON form of `omens devid status`.
type DevIDStatus struct {
	enroll.Meta
	Subject  string `json:"subject"`
	InTPM    bool   `json:"key_in_tpm"`
	TPMCheck string `json:"tpm_check"`
	Renew    string `json:"renew_after"`
}

func newDevIDStatusCmd() *cobra.Command {
	var path, dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the DevID certificate (subject, issuer, expiry) and whether its key is in this TPM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cur, err := enroll.Load(dir)
			if err != nil {
				return err
			}
			st, leaf := DevIDStatus{Meta: cur.Meta}, cur.Leaf
			st.Subject, st.Issuer, st.NotAfter = leaf.Subject.String(), leaf.Issuer.String(), leaf.NotAfter.UTC()
			st.Renew = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3).UTC().Format(time.RFC3339)
			st.InTPM, st.TPMCheck = keyInTPM(path, dir, &st.Meta, leaf)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			tb := newTable(cmd.OutOrStdout())
			tb.row("Host", st.Host)
			tb.row("Subject", st.Subject)
			tb.row("Issuer", st.Issuer)
			tb.row("Serial", st.Serial)
			tb.row("Valid until", st.NotAfter.Format(time.RFC3339))
			tb.row("Renew after", st.Renew)
			tb.row("Key in this TPM", fmt.Sprintf("%v (%s)", st.InTPM, st.TPMCheck))
			tb.flush()
			return nil
		},
	}
	tpmFlag(cmd, &path)
	cmd.Flags().StringVar(&dir, "dir", "/var/lib/omens/devid", "directory of the enrolled DevID")
	jsonFlag(cmd, &asJSON)
	return cmd
}

// keyInTPM loads the DevID key (from its handle, else from its blobs under the SRK) and
// compares it with the certificate's key.
func keyInTPM(path, dir string, meta *enroll.Meta, leaf *x509.Certificate) (bool, string) {
	t, err := tpm.Open(path)
	if err != nil {
		return false, err.Error()
	}
	defer t.Close()
	var key *tpm.DevIDKey
	if meta.Handle != "" {
		h, err := parseHandle(meta.Handle)
		if err != nil {
			return false, err.Error()
		}
		if key, err = tpm.LoadPersistentDevID(t, h); err != nil {
			return false, err.Error()
		}
	} else {
		pub, err := limits.ReadFile(filepath.Join(dir, enroll.PubFile), limits.KeyBlob)
		if err != nil {
			return false, err.Error()
		}
		priv, err := limits.ReadFile(filepath.Join(dir, enroll.PrivFile), limits.KeyBlob)
		if err != nil {
			return false, err.Error()
		}
		alg := tpm2.TPMAlgECC
		if meta.KeyAlg == "rsa" {
			alg = tpm2.TPMAlgRSA
		}
		srk, err := tpm.LoadSRK(t, alg)
		if err != nil {
			return false, err.Error()
		}
		key, err = tpm.LoadDevID(t, srk, pub, priv)
		srk.Close(t)
		if err != nil {
			return false, "blobs do not load in this TPM: " + err.Error()
		}
	}
	defer key.Close(t)
	pk, err := key.PublicKey()
	if err != nil {
		return false, err.Error()
	}
	if eq, ok := pk.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(leaf.PublicKey) {
		return false, "the TPM's key is not the certificate's"
	}
	where := "loaded from devid.pub/devid.priv"
	if meta.Handle != "" {
		where = "persisted at " + meta.Handle
	}
	return true, where
}

func newDevIDRenewCmd() *cobra.Command {
	var path, raURL, raRoot, dir string
	var force, watch bool
	var interval, retryDelay time.Duration
	var attempts int
	cmd := &cobra.Command{
		Use:   "renew --ra URL --ra-root FILE [--force] [--watch]",
		Short: "Re-enroll the DevID with a fresh attestation once two thirds of its life have passed",
		Long: `Re-enroll the DevID in --dir through the RA, with a fresh TPM attestation and a new key in
the TPM, once two thirds of the certificate's life have passed (60 of 90 days), or now
with --force. The files are replaced atomically and a persisted key is replaced at its
handle; SPIRE agents pick up the new certificate at their next attestation. While the RA
cannot be reached (no connection, an answer 5xx) it tries again, --attempts times in all,
waiting --retry-delay, then twice as long each time; the current DevID (files and key)
stays until the new certificate is issued. With --watch it keeps running and checks every
--interval (the systemd units in deploy/systemd run it from a timer instead).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if raURL == "" || raRoot == "" {
				return fmt.Errorf("--ra URL and --ra-root FILE are required")
			}
			roots, err := readPool(raRoot)
			if err != nil {
				return err
			}
			cfg := enroll.Config{TPMPath: path, RAURL: raURL, RARoots: roots, Dir: dir}
			out := cmd.OutOrStdout()
			report := func(m *enroll.Meta, err error) {
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "omens: renewal failed (the current DevID stays): %v\n", err)
					return
				}
				fmt.Fprintf(out, "renewed %s: serial %s, valid until %s\n", m.Host, m.Serial, m.NotAfter.Format(time.RFC3339))
			}
			if watch {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				fmt.Fprintf(out, "watching %s, checking every %s\n", dir, interval)
				enroll.Watch(ctx, cfg, interval, report)
				return nil
			}
			b := enroll.Backoff{Attempts: attempts, First: retryDelay, Max: enroll.DefaultBackoff.Max}
			m, err := enroll.RenewRetrying(cmd.Context(), cfg, force, b, func(n int, err error, next time.Duration) {
				fmt.Fprintf(cmd.ErrOrStderr(), "omens: renewal attempt %d of %d failed, the RA is unreachable (the current DevID stays): %v; next attempt in %s\n", n, b.Attempts, err, next)
			})
			var nd *enroll.ErrNotDue
			if errors.As(err, &nd) {
				fmt.Fprintln(out, nd.Error())
				return nil
			}
			if err != nil {
				return err
			}
			report(m, nil)
			return nil
		},
	}
	tpmFlag(cmd, &path)
	f := cmd.Flags()
	f.StringVar(&raURL, "ra", "", "the RA's URL")
	f.StringVar(&raRoot, "ra-root", "", "step-ca's root certificate (PEM)")
	f.StringVar(&dir, "dir", "/var/lib/omens/devid", "directory of the enrolled DevID")
	f.BoolVar(&force, "force", false, "renew now, whatever the certificate's age")
	f.BoolVar(&watch, "watch", false, "keep running and renew when due")
	f.DurationVar(&interval, "interval", time.Hour, "how often --watch checks")
	f.IntVar(&attempts, "attempts", enroll.DefaultBackoff.Attempts, "tries in all while the RA is unreachable")
	f.DurationVar(&retryDelay, "retry-delay", enroll.DefaultBackoff.First, "wait before the first retry, doubled after each")
	return cmd
}

func newDevIDRevokeCmd() *cobra.Command {
	var host, state, database, spireSocket, trustDomain string
	var ca caFlags
	cmd := &cobra.Command{
		Use:   "revoke --host NAME --state DIR [step-ca flags] [--spire-socket PATH]",
		Short: "Decommission a host (operator, on the RA host): revoke its DevID and ban its SPIRE agent",
		Long: `Decommission a host: revoke in step-ca every DevID certificate the RA issued to it that is
neither revoked nor expired, earlier ones too (reason cessationOfOperation; step-ca lists
them in its CRL, which the SPIRE server plugin reads through devid_crl_url or
devid_crl_path), mark the host decommissioned in the RA so it cannot enroll again until an
operator unbinds and approves it, and, with --spire-socket, ban its SPIRE agent
(spiffe://TD/spire/agent/tpm/<EK hash>) through the SPIRE server API, so its workloads
get no new SVIDs. When step-ca refuses a revocation, the command names the serials left
and running it again revokes only those.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if host == "" {
				return fmt.Errorf("--host NAME is required, with --state DIR (the RA's state directory) or --database URL")
			}
			client, err := ca.client()
			if err != nil {
				return err
			}
			store, err := openRAStore(cmd, state, database)
			if err != nil {
				return err
			}
			defer store.Close()
			b, revoked, err := store.Decommission(cmd.Context(), client, host, time.Now())
			out := cmd.OutOrStdout()
			if len(revoked) > 0 {
				fmt.Fprintf(out, "revoked DevID certificate serials %s of %s in step-ca (they are in the CRL now)\n", strings.Join(revoked, ", "), host)
			}
			if err != nil {
				return err
			}
			if len(revoked) == 0 {
				fmt.Fprintf(out, "%s has no DevID certificate left to revoke (each is revoked or expired)\n", host)
			}
			if spireSocket == "" {
				fmt.Fprintf(out, "its SPIRE agent is refused at its next attestation; to end it now, ban spiffe://%s/spire/agent/tpm/%s (--spire-socket)\n", trustDomain, b.EKHash)
				return nil
			}
			rc, err := registry.Dial(spireSocket)
			if err != nil {
				return err
			}
			defer rc.Close()
			id := fmt.Sprintf("spiffe://%s/spire/agent/tpm/%s", trustDomain, b.EKHash)
			if err := rc.BanAgent(cmd.Context(), id); err != nil {
				return fmt.Errorf("%w\nthe certificate is revoked; ban the agent by hand: spire-server agent ban -spiffeID %s", err, id)
			}
			fmt.Fprintf(out, "banned SPIRE agent %s\n", id)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "", "the host to decommission, e.g. auth.funlab.casa")
	f.StringVar(&state, "state", "", "the RA's state directory")
	raDatabaseFlag(cmd, &database)
	f.StringVar(&spireSocket, "spire-socket", "", "the SPIRE server API socket, to ban the host's agent")
	f.StringVar(&trustDomain, "trust-domain", "funlab.casa", "the SPIRE trust domain")
	ca.add(cmd)
	return cmd
}
