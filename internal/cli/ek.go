package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

func newEKCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ek",
		Short: "Show and verify the TPM's endorsement key certificates",
	}
	cmd.AddCommand(newEKShowCmd(), newEKVerifyCmd())
	return cmd
}

// EKReport is the JSON form of one EK in `omens ek show` and `omens ek verify`.
type EKReport struct {
	Kind          string      `json:"kind"`
	NVIndex       string      `json:"nv_index"`
	EKHandle      string      `json:"ek_handle,omitempty"` // persistent handle, when the EK is persisted
	EKHash        string      `json:"ek_hash"`
	NVSize        int         `json:"nv_size,omitempty"`
	CertificateNV []byte      `json:"certificate_nv,omitempty"` // the NV content exactly as read (base64 in JSON)
	Certificate   *CertReport `json:"certificate,omitempty"`
	Error         string      `json:"error,omitempty"` // why the certificate could not be parsed or does not match the EK
	Verification  *Verdict    `json:"verification,omitempty"`
	ekCert        *verify.EKCertificate
	chains        [][]*x509.Certificate // verified chains, when read with a bundle
	chainErr      error                 // why the chain did not verify, when read with a bundle
}

// CertReport describes an EK certificate.
type CertReport struct {
	Subject         string    `json:"subject"`
	Issuer          string    `json:"issuer"`
	Serial          string    `json:"serial"`
	NotBefore       time.Time `json:"not_before"`
	NotAfter        time.Time `json:"not_after"`
	KeyType         string    `json:"key_type"`
	KeyMatchesEK    bool      `json:"key_matches_ek"`
	TPMManufacturer string    `json:"tpm_manufacturer,omitempty"`
	TPMVendor       string    `json:"tpm_vendor,omitempty"`
	TPMModel        string    `json:"tpm_model,omitempty"`
	TPMVersion      string    `json:"tpm_version,omitempty"`
	Quirks          []string  `json:"quirks,omitempty"`
}

// Verdict is the result of verifying one EK certificate against a CA bundle.
type Verdict struct {
	Result string   `json:"result"` // trusted, expired, not_yet_valid, untrusted, key_mismatch, malformed, no_certificate
	Error  string   `json:"error,omitempty"`
	Chain  []string `json:"chain,omitempty"` // subjects from the EK certificate up to the root
}

// readEKs reports every EK of the TPM at path; with a bundle, it also verifies each EK
// certificate's chain for verdict.
func readEKs(path string, bundle *verify.Bundle) ([]EKReport, error) {
	t, err := tpm.Open(path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	eks, err := tpm.EndorsementKeys(t)
	if err != nil {
		return nil, err
	}
	out := make([]EKReport, 0, len(eks))
	for _, ek := range eks {
		r := EKReport{Kind: ek.Kind.Name, NVIndex: tpmrules.FormatHandle(ek.Kind.CertIndex)}
		if ek.Persistent {
			r.EKHandle = tpmrules.FormatHandle(ek.Kind.PersistentHandle)
		}
		if r.EKHash, err = verify.EKHash(ek.PublicKey); err != nil {
			return nil, err
		}
		if ek.Certificate == nil {
			r.Error = fmt.Sprintf("no EK certificate in NV %s", r.NVIndex)
			out = append(out, r)
			continue
		}
		r.NVSize, r.CertificateNV = len(ek.Certificate), ek.Certificate
		check, err := verify.VerifyEKCert(ek.Certificate, ek.PublicKey, bundle, time.Now())
		if check.Cert == nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		c := check.Cert
		r.ekCert = c
		r.Certificate = &CertReport{
			Subject:         nameOrEmpty(c.Cert.Subject.String()),
			Issuer:          c.Cert.Issuer.String(),
			Serial:          fmt.Sprintf("0x%X", c.Cert.SerialNumber),
			NotBefore:       c.Cert.NotBefore.UTC(),
			NotAfter:        c.Cert.NotAfter.UTC(),
			KeyType:         c.KeyType,
			TPMManufacturer: c.TPM.Manufacturer,
			TPMVendor:       c.TPM.ManufacturerName,
			TPMModel:        c.TPM.Model,
			TPMVersion:      c.TPM.Version,
			Quirks:          c.Quirks,
		}
		if !check.KeyMatches {
			r.Error = err.Error()
		} else {
			r.Certificate.KeyMatchesEK = true
			r.chains, r.chainErr = check.Chains, err
		}
		out = append(out, r)
	}
	return out, nil
}

func nameOrEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}

func newEKShowCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Read every EK certificate from NV, parse it and check it certifies the TPM's EK",
		Long: `Read the EK certificates from the TCG NV indices (RSA 0x01C00002, ECC P-256 0x01C0000A,
ECC P-384 0x01C00016), load each EK from its persistent handle or recreate it from the TCG
template, and show who made the TPM and whether the certificate's key is the EK's.
With --json the exact NV bytes are included (certificate_nv, base64).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eks, err := readEKs(path, nil)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), eks); err != nil {
					return err
				}
			} else {
				printEKs(cmd.OutOrStdout(), eks)
			}
			for _, r := range eks {
				if r.Error != "" {
					return &exitError{code: 1}
				}
			}
			return nil
		},
	}
	tpmFlag(cmd, &path)
	jsonFlag(cmd, &asJSON)
	return cmd
}

func printEKs(w io.Writer, eks []EKReport) {
	for i, r := range eks {
		if i > 0 {
			fmt.Fprintln(w)
		}
		where := "created from the TCG template"
		if r.EKHandle != "" {
			where = "persistent at " + r.EKHandle
		}
		fmt.Fprintf(w, "EK %s (NV %s, %d bytes; EK %s)\n", r.Kind, r.NVIndex, r.NVSize, where)
		tb := newTable(w)
		tb.row("  EK hash", r.EKHash)
		if c := r.Certificate; c != nil {
			tb.row("  Subject", c.Subject)
			tb.row("  Issuer", c.Issuer)
			tb.row("  Serial", c.Serial)
			tb.row("  Valid", fmt.Sprintf("%s to %s", c.NotBefore.Format(time.DateTime), c.NotAfter.Format(time.DateTime)))
			vendor := c.TPMVendor
			if vendor == "" {
				vendor = "unknown vendor"
			}
			tb.row("  TPM", fmt.Sprintf("%s (%s), model %q, version %s", vendor, c.TPMManufacturer, c.TPMModel, c.TPMVersion))
			match := "matches the EK"
			if !c.KeyMatchesEK {
				match = "DOES NOT match the EK"
			}
			tb.row("  Key", fmt.Sprintf("%s, %s", c.KeyType, match))
			if len(c.Quirks) > 0 {
				tb.row("  Quirks", strings.Join(c.Quirks, "; "))
			}
		}
		if r.Verification != nil {
			v := r.Verification
			tb.row("  Verification", v.Result)
			if v.Error != "" {
				tb.row("  Reason", v.Error)
			}
			if len(v.Chain) > 0 {
				tb.row("  Chain", strings.Join(v.Chain, " <- "))
			}
		} else if r.Error != "" {
			tb.row("  Error", r.Error)
		}
		tb.flush()
	}
}

func newEKVerifyCmd() *cobra.Command {
	var path, caPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --ca PATH",
		Short: "Verify every EK certificate against a bundle of manufacturer CAs",
		Long: `Verify each EK certificate in the TPM against the manufacturer root and intermediate CAs
in --ca (a PEM or DER file, or a directory of them), following the TCG EK Credential
Profile, and check that it certifies this TPM's EK. An expired certificate is reported as
expired, apart from an untrusted one. Exits 1 unless every certificate is trusted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caPath == "" {
				return fmt.Errorf("--ca PATH is required: the TPM manufacturer CA bundle (for a simulated TPM, STATE/manufacturer-ca.pem)")
			}
			bundle, problems, err := verify.LoadBundle(caPath)
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintf(cmd.ErrOrStderr(), "omens: CA bundle: skipped %s: %s\n", p.File, p.Reason)
			}
			eks, err := readEKs(path, bundle)
			if err != nil {
				return err
			}
			failed := 0
			for i := range eks {
				eks[i].Verification = verdict(&eks[i])
				if eks[i].Verification.Result != "trusted" {
					failed++
				}
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), eks); err != nil {
					return err
				}
			} else {
				printEKs(cmd.OutOrStdout(), eks)
			}
			if failed > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d of %d EK certificates did not verify", failed, len(eks))}
			}
			return nil
		},
	}
	tpmFlag(cmd, &path)
	cmd.Flags().StringVar(&caPath, "ca", "", "manufacturer CA bundle: PEM or DER file, or a directory of them")
	jsonFlag(cmd, &asJSON)
	return cmd
}

// verdict judges one EK report read with a bundle.
func verdict(r *EKReport) *Verdict {
	switch {
	case r.CertificateNV == nil:
		return &Verdict{Result: "no_certificate", Error: r.Error}
	case r.ekCert == nil:
		return &Verdict{Result: "malformed", Error: r.Error}
	case r.Error != "":
		return &Verdict{Result: "key_mismatch", Error: r.Error}
	}
	if err := r.chainErr; err != nil {
		res := "untrusted"
		switch {
		case errors.Is(err, verify.ErrExpired):
			res = "expired"
		case errors.Is(err, verify.ErrNotYetValid):
			res = "not_yet_valid"
		case errors.Is(err, verify.ErrNotEKCert):
			res = "not_ek_certificate"
		}
		return &Verdict{Result: res, Error: err.Error()}
	}
	v := &Verdict{Result: "trusted"}
	if len(r.chains) > 0 {
		for _, c := range r.chains[0] {
			v.Chain = append(v.Chain, chainName(c))
		}
	}
	return v
}

func chainName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "EK certificate"
}
