package cli_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/verify"
)

// These tests hold omens against tpm2-tools on swtpm: two independent TPM 2.0 stacks
// reading the same TPM must see the same bytes.

// tpm2Tool runs a tpm2-tools command against swtpm and returns what it wrote to the file
// given after -o.
func tpm2Tool(t *testing.T, s *testtpm.Swtpm, name string, args ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".bin")
	cmd := exec.Command(name, append(args, "-o", out)...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInteropSwtpm runs its cases on one swtpm: swtpm_setup takes seconds (it generates
// the RSA keys of its CA).
func TestInteropSwtpm(t *testing.T) {
	s := testtpm.StartSwtpm(t)
	t.Run("ek show NV bytes", func(t *testing.T) { testInteropEKCertificateNV(t, s) })
	t.Run("ek verify", func(t *testing.T) { testInteropEKVerify(t, s) })
	t.Run("pcr read", func(t *testing.T) { testInteropPCRRead(t, s) })
}

func testInteropEKCertificateNV(t *testing.T, s *testtpm.Swtpm) {
	testtpm.RequireTool(t, "tpm2_nvread")

	var reports []cli.EKReport
	omensJSON(t, 0, &reports, "ek", "show", "--tpm", s.Socket, "--json")
	if got, want := kinds(reports), []string{"RSA-2048", "ECC-P384"}; !slices.Equal(got, want) {
		t.Fatalf("ek show: EK kinds %v, want %v", got, want)
	}
	for i, tc := range []struct{ index, file string }{
		{"0x01C00002", s.RSAEKCert},
		{"0x01C00016", s.ECCEKCert},
	} {
		r := reports[i]
		if r.NVIndex != tc.index {
			t.Errorf("%s: nv_index %s, want %s", r.Kind, r.NVIndex, tc.index)
		}
		nv := tpm2Tool(t, s, "tpm2_nvread", tc.index)
		if !bytes.Equal(r.CertificateNV, nv) {
			t.Errorf("%s: omens certificate_nv (%d bytes) differs from tpm2_nvread %s (%d bytes)", r.Kind, len(r.CertificateNV), tc.index, len(nv))
		}
		file, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(nv, file) {
			t.Errorf("tpm2_nvread %s differs from %s", tc.index, filepath.Base(tc.file))
		}
		if r.Certificate == nil || !r.Certificate.KeyMatchesEK || r.Error != "" {
			t.Errorf("%s: certificate %+v, error %q; want a certificate matching the EK", r.Kind, r.Certificate, r.Error)
		}
	}
}

func testInteropPCRRead(t *testing.T, s *testtpm.Swtpm) {
	testtpm.RequireTool(t, "tpm2_pcrread")

	// Measure something first, so that the comparison is not of zeros only.
	for _, ev := range []struct{ pcr, data string }{{"0", "interop firmware"}, {"7", "interop secure boot"}, {"7", "interop db"}} {
		if code, stdout, stderr := omens(t, "pcr", "extend", "--tpm", s.Socket, "--pcr", ev.pcr, "--data", ev.data); code != 0 {
			t.Fatalf("pcr extend: exit %d\n%s%s", code, stdout, stderr)
		}
	}
	var v cli.PCRValues
	omensJSON(t, 0, &v, "pcr", "read", "--tpm", s.Socket, "--bank", "sha256", "--pcrs", "0-23", "--json")
	if v.Bank != "sha256" || len(v.PCRs) != 24 {
		t.Fatalf("pcr read: bank %q with %d PCRs, want sha256 with 24", v.Bank, len(v.PCRs))
	}
	if got, want := v.PCRs["0"], pcrEvent("interop firmware"); got != want {
		t.Errorf("PCR 0 = %s, want %s", got, want)
	}
	if got, want := v.PCRs["7"], pcrEvent("interop secure boot", "interop db"); got != want {
		t.Errorf("PCR 7 = %s, want %s", got, want)
	}

	var sel []string
	for i := range 24 {
		sel = append(sel, strconv.Itoa(i))
	}
	// tpm2_pcrread -o writes the digests, concatenated in PCR order.
	raw := tpm2Tool(t, s, "tpm2_pcrread", "sha256:"+strings.Join(sel, ","))
	if len(raw) != 24*32 {
		t.Fatalf("tpm2_pcrread wrote %d bytes, want %d", len(raw), 24*32)
	}
	for i := range 24 {
		want := hex.EncodeToString(raw[i*32 : (i+1)*32])
		if got := v.PCRs[strconv.Itoa(i)]; got != want {
			t.Errorf("PCR %d: omens %s, tpm2_pcrread %s", i, got, want)
		}
	}
}

func testInteropEKVerify(t *testing.T, s *testtpm.Swtpm) {
	bundle, _, err := verify.LoadBundle(s.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Roots()) != 1 || len(bundle.Intermediates()) != 1 {
		t.Fatalf("swtpm CA bundle: %d roots, %d intermediates; want 1 and 1", len(bundle.Roots()), len(bundle.Intermediates()))
	}
	root, inter := bundle.Roots()[0].Subject.CommonName, bundle.Intermediates()[0].Subject.CommonName

	var reports []cli.EKReport
	omensJSON(t, 0, &reports, "ek", "verify", "--tpm", s.Socket, "--ca", s.CABundle, "--json")
	if got, want := kinds(reports), []string{"RSA-2048", "ECC-P384"}; !slices.Equal(got, want) {
		t.Fatalf("ek verify: EK kinds %v, want %v", got, want)
	}
	for _, r := range reports {
		if r.Verification == nil || r.Verification.Result != "trusted" {
			t.Errorf("%s: verification %+v, want trusted", r.Kind, r.Verification)
			continue
		}
		if r.Certificate == nil || !r.Certificate.KeyMatchesEK {
			t.Errorf("%s: certificate %+v, want key_matches_ek", r.Kind, r.Certificate)
		}
		if c := r.Verification.Chain; len(c) != 3 || c[1] != inter || c[2] != root {
			t.Errorf("%s: chain %q, want [EK certificate, %q, %q]", r.Kind, c, inter, root)
		}
	}
	if code, stdout, stderr := omens(t, "ek", "verify", "--tpm", s.Socket, "--ca", s.CABundle); code != 0 || !strings.Contains(stdout, "trusted") {
		t.Errorf("ek verify (text): exit %d\n%s%s", code, stdout, stderr)
	}
}
