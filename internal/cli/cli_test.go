package cli_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// omens runs the CLI in-process and returns its exit code, stdout and stderr.
func omens(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// omensJSON runs the CLI, requires exit code want, and decodes its stdout into v.
func omensJSON(t *testing.T, want int, v any, args ...string) {
	t.Helper()
	code, stdout, stderr := omens(t, args...)
	if code != want {
		t.Fatalf("omens %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("omens %s: output is not the expected JSON: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// simHost is a simulated TPM served on a unix socket in this process.
type simHost struct {
	sim    *tpmsim.Sim
	socket string
	bundle string // manufacturer CA bundle
}

// startSim starts the simulated TPM and serves it until the test ends. The reference
// simulator is one per process: a second startSim waits for the first to be closed, so
// tests that call it must not run in parallel.
func startSim(t *testing.T, ecc bool) *simHost {
	t.Helper()
	sim, socket := testtpm.ServeSim(t, tpmsim.Options{ECC: ecc})
	return &simHost{sim: sim, socket: socket, bundle: sim.BundlePath()}
}

// replaceNV redefines an NV index of the simulated TPM (platform hierarchy) with data,
// keeping its attributes: a TPM whose EK certificate index holds something else.
func replaceNV(t *testing.T, h *simHost, index tpm2.TPMHandle, data []byte) {
	t.Helper()
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(h.sim)
	if err != nil {
		t.Fatalf("NV_ReadPublic 0x%08X: %v", uint32(index), err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: index, Name: rp.NVName}}).Execute(h.sim); err != nil {
		t.Fatalf("NV_UndefineSpace 0x%08X: %v", uint32(index), err)
	}
	pub.DataSize = uint16(len(data))
	pub.Attributes.Written = false
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(*pub)}).Execute(h.sim); err != nil {
		t.Fatalf("NV_DefineSpace 0x%08X: %v", uint32(index), err)
	}
	rp, err = tpm2.NVReadPublic{NVIndex: index}.Execute(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		_, err := tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:min(off+512, len(data))]},
			Offset:     uint16(off),
		}.Execute(h.sim)
		if err != nil {
			t.Fatalf("NV_Write 0x%08X at %d: %v", uint32(index), off, err)
		}
	}
}

// endorsementKeys reads the EKs straight from the TPM, to compare with what the CLI says.
func endorsementKeys(t *testing.T, h *simHost) map[string]tpm.EndorsementKey {
	t.Helper()
	eks, err := tpm.EndorsementKeys(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]tpm.EndorsementKey{}
	for _, ek := range eks {
		out[ek.Kind.Name] = ek
	}
	return out
}

func ekHash(t *testing.T, ek tpm.EndorsementKey) string {
	t.Helper()
	h, err := verify.EKHash(ek.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func writeBundle(t *testing.T, ca *mfgca.CA) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func kinds(reports []cli.EKReport) []string {
	var out []string
	for _, r := range reports {
		out = append(out, r.Kind)
	}
	return out
}

// checkTrusted asserts what `ek verify` reports for a certificate of the simulated
// manufacturer that verifies.
func checkTrusted(t *testing.T, r cli.EKReport) {
	t.Helper()
	if r.Verification == nil || r.Verification.Result != "trusted" {
		t.Errorf("%s: verification %+v, want trusted", r.Kind, r.Verification)
		return
	}
	if r.Certificate == nil || !r.Certificate.KeyMatchesEK {
		t.Errorf("%s: certificate %+v, want key_matches_ek", r.Kind, r.Certificate)
	}
	want := []string{"EK certificate", mfgca.IntermediateCommonName, mfgca.RootCommonName}
	if !slices.Equal(r.Verification.Chain, want) {
		t.Errorf("%s: chain %q, want %q", r.Kind, r.Verification.Chain, want)
	}
}

func TestEKVerifySimulator(t *testing.T) {
	for _, tc := range []struct {
		ecc   bool
		kinds []string
		nv    []string
	}{
		{false, []string{"RSA-2048"}, []string{"0x01C00002"}},
		{true, []string{"RSA-2048", "ECC-P256"}, []string{"0x01C00002", "0x01C0000A"}},
	} {
		t.Run(fmt.Sprintf("ecc=%v", tc.ecc), func(t *testing.T) {
			h := startSim(t, tc.ecc)
			var reports []cli.EKReport
			omensJSON(t, 0, &reports, "ek", "verify", "--tpm", h.socket, "--ca", h.bundle, "--json")
			if got := kinds(reports); !slices.Equal(got, tc.kinds) {
				t.Fatalf("EK kinds %v, want %v", got, tc.kinds)
			}
			eks := endorsementKeys(t, h)
			for i, r := range reports {
				checkTrusted(t, r)
				ek := eks[r.Kind]
				if r.NVIndex != tc.nv[i] {
					t.Errorf("%s: nv_index %s, want %s", r.Kind, r.NVIndex, tc.nv[i])
				}
				if want := fmt.Sprintf("0x%08X", uint32(ek.Kind.PersistentHandle)); r.EKHandle != want {
					t.Errorf("%s: ek_handle %q, want %q (tpmsim persists its EKs)", r.Kind, r.EKHandle, want)
				}
				if want := ekHash(t, ek); r.EKHash != want {
					t.Errorf("%s: ek_hash %s, want %s", r.Kind, r.EKHash, want)
				}
				if !bytes.Equal(r.CertificateNV, ek.Certificate) || r.NVSize != len(ek.Certificate) {
					t.Errorf("%s: certificate_nv (%d bytes, nv_size %d) differs from NV (%d bytes)", r.Kind, len(r.CertificateNV), r.NVSize, len(ek.Certificate))
				}
				if r.Certificate != nil && (r.Certificate.KeyType != r.Kind || r.Certificate.TPMManufacturer != tpmsim.Manufacturer) {
					t.Errorf("%s: key_type %q, tpm_manufacturer %q; want %q, %q", r.Kind, r.Certificate.KeyType, r.Certificate.TPMManufacturer, r.Kind, tpmsim.Manufacturer)
				}
			}

			// ek show: the same EKs, without a verdict; the text form succeeds.
			var shown []cli.EKReport
			omensJSON(t, 0, &shown, "ek", "show", "--tpm", h.socket, "--json")
			if got := kinds(shown); !slices.Equal(got, tc.kinds) {
				t.Errorf("ek show: EK kinds %v, want %v", got, tc.kinds)
			}
			for i, r := range shown {
				if r.Verification != nil || r.Error != "" || r.EKHash != reports[i].EKHash {
					t.Errorf("ek show %s: verification %+v, error %q, ek_hash %s", r.Kind, r.Verification, r.Error, r.EKHash)
				}
			}
			if code, stdout, stderr := omens(t, "ek", "show", "--tpm", h.socket); code != 0 || !strings.Contains(stdout, "matches the EK") {
				t.Errorf("ek show: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}

// verdictWant is what `ek verify` must report for one EK.
type verdictWant struct {
	result   string
	contains []string // substrings of verification.error
}

func TestEKVerifySimulatorRejections(t *testing.T) {
	for _, tc := range []struct {
		name string
		ecc  bool
		// setup changes the TPM and returns the CA bundle to verify against and what
		// each EK must be reported as.
		setup      func(t *testing.T, h *simHost) (string, map[string]verdictWant)
		wantStderr string
	}{
		{
			name: "another manufacturer's CA",
			ecc:  true,
			setup: func(t *testing.T, h *simHost) (string, map[string]verdictWant) {
				other, err := mfgca.NewEphemeral("Other Vendor")
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]verdictWant{}
				for kind, ek := range endorsementKeys(t, h) {
					c, err := verify.ParseEKCertificate(ek.Certificate)
					if err != nil {
						t.Fatal(err)
					}
					want[kind] = verdictWant{"untrusted", []string{
						fmt.Sprintf("issuer %q", c.Cert.Issuer.String()),
						mfgca.IntermediateCommonName,
						"does not chain to the CA bundle",
					}}
				}
				return writeBundle(t, other), want
			},
			wantStderr: "2 of 2 EK certificates did not verify",
		},
		{
			name: "truncated certificate",
			ecc:  true,
			setup: func(t *testing.T, h *simHost) (string, map[string]verdictWant) {
				cert := endorsementKeys(t, h)["RSA-2048"].Certificate
				half := len(cert) / 2
				replaceNV(t, h, tpmrules.EKRSA2048.CertIndex, cert[:half])
				return h.bundle, map[string]verdictWant{
					"RSA-2048": {"malformed", []string{fmt.Sprintf("truncated: DER SEQUENCE declares %d bytes, only %d present", len(cert), half)}},
					"ECC-P256": {"trusted", nil},
				}
			},
			wantStderr: "1 of 2 EK certificates did not verify",
		},
		{
			name: "certificate of the other EK",
			ecc:  true,
			setup: func(t *testing.T, h *simHost) (string, map[string]verdictWant) {
				eks := endorsementKeys(t, h)
				rsa, ecc := eks["RSA-2048"], eks["ECC-P256"]
				// A genuine certificate of this TPM's manufacturer, in the wrong index.
				replaceNV(t, h, tpmrules.EKECCP256.CertIndex, rsa.Certificate)
				return h.bundle, map[string]verdictWant{
					"RSA-2048": {"trusted", nil},
					"ECC-P256": {"key_mismatch", []string{"cert key sha256 " + ekHash(t, rsa), "EK sha256 " + ekHash(t, ecc)}},
				}
			},
			wantStderr: "1 of 2 EK certificates did not verify",
		},
		{
			name: "certificate for a key outside the TPM",
			setup: func(t *testing.T, h *simHost) (string, map[string]verdictWant) {
				ek := endorsementKeys(t, h)["RSA-2048"]
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				ca, err := mfgca.Open(filepath.Dir(h.bundle))
				if err != nil {
					t.Fatal(err)
				}
				der, err := ca.IssueEK(key.Public(), mfgca.EKTemplate{})
				if err != nil {
					t.Fatal(err)
				}
				replaceNV(t, h, tpmrules.EKRSA2048.CertIndex, der)
				keyHash, err := verify.EKHash(key.Public())
				if err != nil {
					t.Fatal(err)
				}
				return h.bundle, map[string]verdictWant{
					"RSA-2048": {"key_mismatch", []string{"cert key sha256 " + keyHash, "EK sha256 " + ekHash(t, ek)}},
				}
			},
			wantStderr: "1 of 1 EK certificates did not verify",
		},
		{
			name: "AK certificate for the EK's key",
			setup: func(t *testing.T, h *simHost) (string, map[string]verdictWant) {
				ek := endorsementKeys(t, h)["RSA-2048"]
				rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Privacy CA"}, IsCA: true, BasicConstraintsValid: true,
					KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
				rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
				if err != nil {
					t.Fatal(err)
				}
				root, _ := x509.ParseCertificate(rootDER)
				// A trusted CA's AK certificate (tcg-kp-AIKCertificate) for the EK's key.
				der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(0xA1), KeyUsage: x509.KeyUsageDigitalSignature,
					UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 3}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)},
					root, ek.PublicKey, rootKey)
				if err != nil {
					t.Fatal(err)
				}
				replaceNV(t, h, tpmrules.EKRSA2048.CertIndex, der)
				bundle := filepath.Join(t.TempDir(), "privacy-ca.pem")
				if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o644); err != nil {
					t.Fatal(err)
				}
				return bundle, map[string]verdictWant{
					"RSA-2048": {"not_ek_certificate", []string{"verify: not an EK certificate: serial 0xa1 is an AK certificate: its extended key usage lists tcg-kp-AIKCertificate (2.23.133.8.3)"}},
				}
			},
			wantStderr: "1 of 1 EK certificates did not verify",
		},
		{
			name: "expired certificate",
			setup: func(t *testing.T, h *simHost) (string, map[string]verdictWant) {
				ek := endorsementKeys(t, h)["RSA-2048"]
				now := time.Now()
				// CAs valid throughout; only the EK certificate has expired.
				ca, err := mfgca.NewEphemeral("Expired Vendor",
					mfgca.WithRootValidity(now.AddDate(0, 0, -30), now.AddDate(10, 0, 0)),
					mfgca.WithIntermediateValidity(now.AddDate(0, 0, -30), now.AddDate(10, 0, 0)))
				if err != nil {
					t.Fatal(err)
				}
				notAfter := now.AddDate(0, 0, -10).Truncate(time.Second)
				der, err := ca.IssueEK(ek.PublicKey, mfgca.EKTemplate{NotBefore: now.AddDate(0, 0, -20), NotAfter: notAfter})
				if err != nil {
					t.Fatal(err)
				}
				replaceNV(t, h, tpmrules.EKRSA2048.CertIndex, der)
				c, err := verify.ParseEKCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				return writeBundle(t, ca), map[string]verdictWant{
					"RSA-2048": {"expired", []string{
						fmt.Sprintf("EK certificate serial %#x", c.Cert.SerialNumber),
						"notAfter " + notAfter.UTC().Format(time.RFC3339),
					}},
				}
			},
			wantStderr: "1 of 1 EK certificates did not verify",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startSim(t, tc.ecc)
			ca, want := tc.setup(t, h)
			args := []string{"ek", "verify", "--tpm", h.socket, "--ca", ca, "--json"}
			code, stdout, stderr := omens(t, args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
			var reports []cli.EKReport
			if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			if len(reports) != len(want) {
				t.Fatalf("EK kinds %v, want %d", kinds(reports), len(want))
			}
			for _, r := range reports {
				w, ok := want[r.Kind]
				if !ok {
					t.Errorf("unexpected EK %s", r.Kind)
					continue
				}
				if w.result == "trusted" {
					checkTrusted(t, r)
					continue
				}
				if r.Verification == nil || r.Verification.Result != w.result {
					t.Errorf("%s: verification %+v, want %s", r.Kind, r.Verification, w.result)
					continue
				}
				for _, sub := range w.contains {
					if !strings.Contains(r.Verification.Error, sub) {
						t.Errorf("%s: error %q does not contain %q", r.Kind, r.Verification.Error, sub)
					}
				}
				if w.result == "key_mismatch" && (r.Certificate == nil || r.Certificate.KeyMatchesEK) {
					t.Errorf("%s: certificate %+v, want key_matches_ek false", r.Kind, r.Certificate)
				}
				if len(r.Verification.Chain) != 0 {
					t.Errorf("%s: chain %q for a certificate that did not verify", r.Kind, r.Verification.Chain)
				}
			}
		})
	}
}

// pcrEvent is the value of a PCR after TPM2_PCR_Event of each event in turn from reset:
// each event's digest extended into the PCR (TPM 2.0 Part 3, 22.3).
func pcrEvent(events ...string) string {
	pcr := make([]byte, sha256.Size)
	for _, ev := range events {
		d := sha256.Sum256([]byte(ev))
		next := sha256.Sum256(append(pcr, d[:]...))
		pcr = next[:]
	}
	return hex.EncodeToString(pcr)
}

func readPCRs(t *testing.T, h *simHost, bank string, pcrs string) map[string]string {
	t.Helper()
	var v cli.PCRValues
	omensJSON(t, 0, &v, "pcr", "read", "--tpm", h.socket, "--bank", bank, "--pcrs", pcrs, "--json")
	if v.Bank != bank {
		t.Errorf("pcr read: bank %q, want %q", v.Bank, bank)
	}
	return v.PCRs
}

func TestPCRReadSimulator(t *testing.T) {
	h := startSim(t, false)
	for _, bankName := range []string{"sha1", "sha256"} {
		bank, err := tpm.ParseBank(bankName)
		if err != nil {
			t.Fatal(err)
		}
		got := readPCRs(t, h, bankName, "0-23")
		all := make([]int, tpm.NumPCRs)
		for i := range all {
			all[i] = i
		}
		want, err := tpm.ReadPCRs(h.sim, bank, all)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: pcr read returned %d PCRs, want %d", bankName, len(got), len(want))
		}
		for i, d := range want {
			if got[strconv.Itoa(i)] != hex.EncodeToString(d) {
				t.Errorf("%s PCR %d: pcr read %q, ReadPCRs %x", bankName, i, got[strconv.Itoa(i)], d)
			}
		}
	}
	// The default boot profile is what was measured.
	got := readPCRs(t, h, "sha256", "0,2,4,7")
	for pcr, evs := range tpmsim.DefaultProfile() {
		if want := pcrEvent(evs...); got[strconv.Itoa(pcr)] != want {
			t.Errorf("PCR %d = %s, want %s (measured %q)", pcr, got[strconv.Itoa(pcr)], want, evs)
		}
	}
	if len(got) != 4 {
		t.Errorf("pcr read --pcrs 0,2,4,7 returned %d PCRs", len(got))
	}

	// pcr extend changes the PCR the way TPM2_PCR_Event does.
	if code, stdout, stderr := omens(t, "pcr", "extend", "--tpm", h.socket, "--pcr", "16", "--data", "test event"); code != 0 {
		t.Fatalf("pcr extend: exit %d\n%s%s", code, stdout, stderr)
	}
	if got, want := readPCRs(t, h, "sha256", "16")["16"], pcrEvent("test event"); got != want {
		t.Errorf("PCR 16 after extend = %s, want %s", got, want)
	}
}

func TestTPMRebootSimulator(t *testing.T) {
	h := startSim(t, false)
	reboot := func(args ...string) tpmsim.Status {
		t.Helper()
		var st tpmsim.Status
		omensJSON(t, 0, &st, append([]string{"tpm", "reboot", "--socket", h.socket, "--json"}, args...)...)
		return st
	}
	firmware1 := pcrEvent(tpmsim.DefaultProfile()[0]...)
	if got := readPCRs(t, h, "sha256", "0")["0"]; got != firmware1 {
		t.Fatalf("PCR 0 at first boot = %s, want %s", got, firmware1)
	}
	omens(t, "pcr", "extend", "--tpm", h.socket, "--pcr", "7", "--data", "after boot")

	// A BIOS update: PCR 0 measures the new firmware from now on.
	st := reboot("--set", "0=firmware 2.0")
	if st.Boots != 2 || !slices.Equal(st.BootProfile[0], []string{"firmware 2.0"}) {
		t.Errorf("status after reboot --set: boots %d, profile %v", st.Boots, st.BootProfile)
	}
	firmware2 := pcrEvent("firmware 2.0")
	after := readPCRs(t, h, "sha256", "0,7")
	if after["0"] != firmware2 || after["0"] == firmware1 {
		t.Errorf("PCR 0 after the firmware update = %s, want %s", after["0"], firmware2)
	}
	if want := pcrEvent(tpmsim.DefaultProfile()[7]...); after["7"] != want {
		t.Errorf("PCR 7 after reboot = %s, want %s (reset, then measured once)", after["7"], want)
	}

	// A plain reboot measures the same boot again.
	if st := reboot(); st.Boots != 3 {
		t.Errorf("boots = %d after the third boot", st.Boots)
	}
	if got := readPCRs(t, h, "sha256", "0")["0"]; got != firmware2 {
		t.Errorf("PCR 0 after a plain reboot = %s, want %s", got, firmware2)
	}

	// The text form names the measured PCRs.
	if code, stdout, _ := omens(t, "tpm", "reboot", "--socket", h.socket); code != 0 || !strings.Contains(stdout, "firmware 2.0") {
		t.Errorf("tpm reboot: exit %d\n%s", code, stdout)
	}
}

func TestTPMInfoSimulator(t *testing.T) {
	h := startSim(t, false)
	var info tpm.Info
	omensJSON(t, 0, &info, "tpm", "info", "--tpm", h.socket, "--json")
	if info.Manufacturer != "MSFT" || info.ManufacturerID != tpmsim.Manufacturer {
		t.Errorf("manufacturer %q (%s), want MSFT (%s)", info.Manufacturer, info.ManufacturerID, tpmsim.Manufacturer)
	}
	if info.Family != "2.0" {
		t.Errorf("spec_family %q, want 2.0", info.Family)
	}
	if code, stdout, _ := omens(t, "tpm", "info", "--tpm", h.socket); code != 0 || !strings.Contains(stdout, "MSFT (id:4D534654)") {
		t.Errorf("tpm info: exit %d\n%s", code, stdout)
	}
}

func TestCommandErrors(t *testing.T) {
	h := startSim(t, false)
	absent := filepath.Join(t.TempDir(), "absent")
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"bad PCR index", []string{"pcr", "read", "--tpm", h.socket, "--pcrs", "0,99"}, `PCR index "99"`},
		{"backwards PCR range", []string{"pcr", "read", "--tpm", h.socket, "--pcrs", "7-3"}, `PCR range "7-3" runs backwards`},
		{"unknown bank", []string{"pcr", "read", "--tpm", h.socket, "--bank", "md5"}, `unknown PCR bank "md5"`},
		{"extend PCR out of range", []string{"pcr", "extend", "--tpm", h.socket, "--pcr", "24", "--data", "x"}, "PCR index 24"},
		{"extend without data", []string{"pcr", "extend", "--tpm", h.socket, "--pcr", "0"}, "--data TEXT is required"},
		{"absent TPM path", []string{"tpm", "info", "--tpm", absent}, "open " + absent},
		{"TPM path not a socket", []string{"tpm", "info", "--tpm", h.bundle}, h.bundle + " is neither a TPM device nor a unix socket"},
		{"verify without CA", []string{"ek", "verify", "--tpm", h.socket}, "--ca PATH is required"},
		{"absent CA bundle", []string{"ek", "verify", "--tpm", h.socket, "--ca", absent}, absent},
		{"reboot without socket", []string{"tpm", "reboot"}, "--socket PATH is required"},
		{"reboot with bad set", []string{"tpm", "reboot", "--socket", h.socket, "--set", "99=x"}, `"99=x"`},
		{"reboot absent socket", []string{"tpm", "reboot", "--socket", absent}, absent},
		{"simulate without flags", []string{"tpm", "simulate"}, "--state DIR and --socket PATH are required"},
		{"extra argument", []string{"tpm", "info", "--tpm", h.socket, "extra"}, `unknown command "extra"`},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := omens(t, tc.args...)
			if code == 0 {
				t.Fatalf("omens %s: exit 0, want an error\n%s", strings.Join(tc.args, " "), stdout)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
		})
	}
}

// TestHelp runs --help on every command, found by walking "Available Commands" from the
// root.
func TestHelp(t *testing.T) {
	seen := map[string]bool{}
	var walk func(path []string)
	walk = func(path []string) {
		name := strings.Join(append([]string{"omens"}, path...), " ")
		seen[name] = true
		code, stdout, stderr := omens(t, append(slices.Clone(path), "--help")...)
		if code != 0 || stderr != "" {
			t.Errorf("%s --help: exit %d, stderr %q", name, code, stderr)
		}
		if !strings.Contains(stdout, "Usage:\n  "+name) {
			t.Errorf("%s --help does not show its usage:\n%s", name, stdout)
		}
		for _, sub := range subcommands(stdout) {
			if sub != "help" {
				walk(append(slices.Clone(path), sub))
			}
		}
	}
	walk(nil)
	t.Logf("--help works on %d commands", len(seen))
	for _, want := range []string{
		"omens tpm info", "omens tpm simulate", "omens tpm reboot",
		"omens ek show", "omens ek verify", "omens pcr read", "omens pcr extend",
	} {
		if !seen[want] {
			t.Errorf("%s is not reachable from omens --help (saw %v)", want, slices.Sorted(maps.Keys(seen)))
		}
	}
}

// subcommands lists the names under "Available Commands:" in cobra's help.
func subcommands(help string) []string {
	var out []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Available Commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			if f := strings.Fields(line); len(f) > 0 {
				out = append(out, f[0])
			}
		}
	}
	return out
}
