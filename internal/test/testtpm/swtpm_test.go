package testtpm

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

func TestSwtpm(t *testing.T) {
	s := StartSwtpm(t)

	tpm, err := linuxudstpm.Open(s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()

	// linuxudstpm dials once per command: several commands in a row must work.
	for range 3 {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapTPMProperties,
			Property:      uint32(tpm2.TPMPTManufacturer),
			PropertyCount: 1,
		}.Execute(tpm)
		if err != nil {
			t.Fatalf("GetCapability: %v", err)
		}
		props, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			t.Fatal(err)
		}
		if len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTManufacturer {
			t.Fatalf("GetCapability returned %+v", props.TPMProperty)
		}
		if got, want := props.TPMProperty[0].Value, uint32(0x49424D00); got != want { // "IBM\0"
			t.Errorf("TPM_PT_MANUFACTURER = %#x, want %#x", got, want)
		}
	}

	// The EK certificates in NV are the files swtpm_setup wrote, without padding.
	for idx, file := range map[tpm2.TPMHandle]string{0x01C00002: s.RSAEKCert, 0x01C00016: s.ECCEKCert} {
		der, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(tpm)
		if err != nil {
			t.Fatalf("NVReadPublic(%#x): %v", idx, err)
		}
		nv, err := pub.NVPublic.Contents()
		if err != nil {
			t.Fatal(err)
		}
		if int(nv.DataSize) != len(der) {
			t.Errorf("NV %#x holds %d bytes, certificate file %d", idx, nv.DataSize, len(der))
		}
		verifyEKCert(t, der, s.CABundle)
	}
}

// verifyEKCert checks that der chains to the CA bundle. swtpm marks the subject
// alternative name (a directoryName with the TPM manufacturer, model and version) critical,
// which crypto/x509 does not process, and uses the TCG EK certificate extended key usage.
func verifyEKCert(t *testing.T, der []byte, bundle string) {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing EK certificate: %v", err)
	}
	pemData, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for n := 0; ; n++ {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			roots.AddCert(c)
		} else {
			inters.AddCert(c)
		}
	}
	sanOID := asn1.ObjectIdentifier{2, 5, 29, 17}
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(sanOID) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		t.Errorf("EK certificate %q does not chain to the CA bundle: %v", cert.Subject, err)
	}
}

func TestSwtpmPCRRead(t *testing.T) {
	RequireTool(t, "tpm2_pcrread")
	s := StartSwtpm(t)
	cmd := exec.Command("tpm2_pcrread", "sha256:0,1,2")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	zero := "0x" + strings.Repeat("0", 64)
	if !bytes.Contains(out, []byte("sha256:")) || bytes.Count(out, []byte(zero)) != 3 {
		t.Errorf("tpm2_pcrread output:\n%s", out)
	}
}

func TestSwtpmStops(t *testing.T) {
	var s *Swtpm
	t.Run("run", func(t *testing.T) { s = StartSwtpm(t) })
	if s == nil || t.Skipped() {
		t.Skip("swtpm did not start")
	}
	// Cleanup has run: the process must be gone and reaped.
	if done, _ := s.proc.Exited(); !done {
		t.Error("swtpm still running after cleanup")
	}
	if err := probe(s.Socket); err == nil {
		t.Errorf("socket %s still answers after cleanup", s.Socket)
	}
}
