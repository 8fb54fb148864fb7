package stepcatest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/ra/stepca"
)

// TestStartIssueRestart starts a CA with the defaults, checks the ca.json settings it
// promises, gets a certificate from it with the step CLI through the provisioner (an
// independent client, so a mistake in ra/stepca cannot hide one here), fetches the CRL,
// and restarts the CA: the same root, and no process left while it is stopped.
func TestStartIssueRestart(t *testing.T) {
	start := time.Now()
	ca := stepcatest.Start(t, stepcatest.Config{})
	t.Logf("step ca init + step-ca healthy in %v", time.Since(start).Round(time.Millisecond))

	if !strings.HasPrefix(ca.URL, "https://127.0.0.1:") {
		t.Errorf("URL %s, want https://127.0.0.1:PORT", ca.URL)
	}
	if ca.Provisioner != "tower-of-omens" || ca.ProvisionerPassword == "" {
		t.Errorf("provisioner %q with password %q, want tower-of-omens with a password", ca.Provisioner, ca.ProvisionerPassword)
	}
	if got, want := ca.Root.Subject.CommonName, "Tower of Omens CA Root CA"; got != want {
		t.Errorf("root CN %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(ca.Dir, "provisioner-password")); !os.IsNotExist(err) {
		t.Errorf("provisioner password left on disk (stat: %v)", err)
	}
	checkCAJSON(t, ca)

	// The step CLI gets a certificate with the provisioner's default lifetime.
	step, err := engines.Path(engines.Step)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	pwFile := filepath.Join(work, "provisioner-password")
	if err := os.WriteFile(pwFile, []byte(ca.ProvisionerPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	crtFile := filepath.Join(work, "auth.crt")
	step0 := time.Now()
	cmd := exec.Command(step, "ca", "certificate", "auth.funlab.casa", crtFile, filepath.Join(work, "auth.key"),
		"--provisioner", ca.Provisioner, "--provisioner-password-file", pwFile,
		"--ca-url", ca.URL, "--root", ca.RootPath, "--force")
	cmd.Env = append(os.Environ(), "STEPPATH="+filepath.Join(work, "step"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("step ca certificate: %v\n%s", err, out)
	}
	t.Logf("step ca certificate in %v", time.Since(step0).Round(time.Millisecond))
	leaf := readCert(t, crtFile)
	if leaf.Subject.CommonName != "auth.funlab.casa" {
		t.Errorf("leaf CN %q", leaf.Subject.CommonName)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < stepcatest.CertDuration || life > stepcatest.CertDuration+2*time.Minute {
		t.Errorf("leaf lifetime %v, want about %v", life, stepcatest.CertDuration)
	}

	// The CRL is on from the start, signed by the intermediate.
	intermediate := readCert(t, ca.IntermediatePath)
	crl := fetchCRL(t, ca)
	if err := crl.CheckSignatureFrom(intermediate); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("new CA's CRL lists %d certificates", len(crl.RevokedCertificateEntries))
	}

	// Restart: nothing listens while it is stopped; it comes back on the same address
	// with the same root.
	root := ca.Root.Raw
	step0 = time.Now()
	ca.Stop(t)
	if ca.Running() {
		t.Fatal("step-ca still running after Stop")
	}
	if conn, err := net.DialTimeout("tcp", ca.Address, time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Stop", ca.Address)
	}
	ca.Start(t)
	t.Logf("step-ca restarted in %v", time.Since(step0).Round(time.Millisecond))
	if string(readCert(t, ca.RootPath).Raw) != string(root) {
		t.Error("root changed across the restart")
	}
	if err := ca.Healthy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(ca.Log(), "Serving HTTPS on"); n != 2 {
		t.Errorf("log shows %d starts, want 2", n)
	}
}

// checkCAJSON checks the provisioner claims and the crl block that Init writes.
func checkCAJSON(t *testing.T, ca *stepcatest.CA) {
	t.Helper()
	b, err := os.ReadFile(ca.CAConfig)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Address   string
		DNSNames  []string `json:"dnsNames"`
		Authority struct {
			Provisioners []struct {
				Type, Name   string
				EncryptedKey string         `json:"encryptedKey"`
				Claims       map[string]any `json:"claims"`
				Options      struct {
					X509 struct {
						Template string `json:"template"`
					} `json:"x509"`
				} `json:"options"`
			}
		}
		CRL map[string]any `json:"crl"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Address != ca.Address || strings.Join(conf.DNSNames, ",") != "127.0.0.1,localhost" {
		t.Errorf("ca.json address %s, dnsNames %v", conf.Address, conf.DNSNames)
	}
	if len(conf.Authority.Provisioners) != 1 {
		t.Fatalf("ca.json has %d provisioners, want 1", len(conf.Authority.Provisioners))
	}
	p := conf.Authority.Provisioners[0]
	if p.Type != "JWK" || p.Name != "tower-of-omens" || p.EncryptedKey == "" {
		t.Errorf("provisioner %s %q, encrypted key %q", p.Type, p.Name, p.EncryptedKey)
	}
	if p.Claims["defaultTLSCertDuration"] != "2160h0m0s" || p.Claims["maxTLSCertDuration"] != "2160h0m0s" {
		t.Errorf("provisioner claims %v", p.Claims)
	}
	if p.Options.X509.Template != stepca.DevIDTemplate {
		t.Errorf("provisioner X.509 template %q, want omens' DevID template", p.Options.X509.Template)
	}
	want := map[string]any{
		"enabled": true, "generateOnRevoke": true, "cacheDuration": "24h0m0s",
		"renewPeriod": "16h0m0s", "idpURL": ca.URL + "/1.0/crl",
	}
	for k, v := range want {
		if conf.CRL[k] != v {
			t.Errorf("crl.%s = %v, want %v", k, conf.CRL[k], v)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fetchCRL(t *testing.T, ca *stepcatest.CA) *x509.RevocationList {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.RootPool},
	}}
	resp, err := client.Get(ca.URL + "/1.0/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /1.0/crl: %s %v: %s", resp.Status, err, der)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}
