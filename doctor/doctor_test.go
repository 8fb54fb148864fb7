package doctor_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/doctor"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// check returns the line of check name, failing the test when the report has none.
func check(t *testing.T, r *doctor.Report, name string) doctor.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in the report:\n%s", name, dump(r))
	return doctor.Check{}
}

// wantLine requires check name to have status and exactly detail.
func wantLine(t *testing.T, r *doctor.Report, name string, status doctor.Status, detail string) {
	t.Helper()
	c := check(t, r, name)
	if c.Status != status || c.Detail != detail {
		t.Errorf("check %s:\n got %s %q\nwant %s %q", name, c.Status, c.Detail, status, detail)
	}
	if status != doctor.Pass && c.Next == "" {
		t.Errorf("check %s is %s but says nothing to do next", name, status)
	}
}

// wantStatus requires check name to have status and its detail to contain each part.
func wantStatus(t *testing.T, r *doctor.Report, name string, status doctor.Status, parts ...string) {
	t.Helper()
	c := check(t, r, name)
	if c.Status != status {
		t.Errorf("check %s is %s (%s), want %s", name, c.Status, c.Detail, status)
	}
	for _, p := range parts {
		if !strings.Contains(c.Detail, p) {
			t.Errorf("check %s: detail %q lacks %q", name, c.Detail, p)
		}
	}
}

func dump(r *doctor.Report) string {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%s %s: %s | %s\n", c.Status, c.Name, c.Detail, c.Next)
	}
	return b.String()
}

// ekHash is the EK hash of the EK certificate file (DER) swtpm_setup wrote.
func ekHash(t *testing.T, certFile string) (string, *x509.Certificate) {
	t.Helper()
	der, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	h, err := verify.EKHash(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return h, c
}

// agentConf writes a spire-agent.conf (spireconf, the one renderer) with NodeAttestor
// "tpm" whose plugin_data holds data, and returns its path.
func agentConf(t *testing.T, dir string, port int, cmd, checksum string, data ...spireconf.Setting) string {
	t.Helper()
	src, err := spireconf.Agent{
		TrustDomain:   "funlab.casa",
		ServerAddress: "127.0.0.1",
		ServerPort:    port,
		DataDir:       filepath.Join(dir, "data"),
		Plugins: []spireconf.Plugin{
			{Type: "NodeAttestor", Name: "tpm", Cmd: cmd, Checksum: checksum, Data: data},
			spireconf.AgentDiskKeyManager(filepath.Join(dir, "data")),
			spireconf.UnixWorkloadAttestor(),
		},
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(p, src, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var pluginContent = []byte("#!/bin/sh\necho omens-attestor-agent\n")

// pluginBinary writes an executable stand-in for the plugin binary and returns its path
// and sha256: the checks read only its bytes.
func pluginBinary(t *testing.T, dir string) (string, string) {
	t.Helper()
	p := filepath.Join(dir, "omens-attestor-agent")
	if err := os.WriteFile(p, pluginContent, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pluginContent)
	return p, hex.EncodeToString(sum[:])
}

// lineOf is the number of the first line of file that contains s.
func lineOf(t *testing.T, file, s string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, s)
	return 0
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestSwtpmHost runs the doctor on swtpm with its EK certificates, the manufacturer CA and
// an agent configuration in EK mode, then in DevID mode: the agent's checks pass or fail
// as the agent would.
func TestSwtpmHost(t *testing.T) {
	s := testtpm.StartSwtpm(t)
	dir := t.TempDir()
	rsaHash, rsaCert := ekHash(t, s.RSAEKCert)
	eccHash, _ := ekHash(t, s.ECCEKCert)

	// Without an agent configuration: the TPM's checks, and "not checked" for the rest.
	r := doctor.Run(doctor.Options{TPMPath: s.Socket, CAPath: s.CABundle, EventLogPath: ""})
	wantLine(t, r, "tpm", doctor.Pass, s.Socket+" (a unix socket)")
	wantStatus(t, r, "tpm_info", doctor.Pass, "TPM 2.0 revision ", "manufacturer IBM (id:49424D00)", "firmware ")
	wantLine(t, r, "ek_cert_rsa_2048", doctor.Pass, fmt.Sprintf("NV 0x01C00002, EK hash %s: issuer %s, valid until %s; trusted (swtpm-localca <- swtpm-localca-rootca)",
		rsaHash, rsaCert.Issuer, rsaCert.NotAfter.UTC().Format(time.DateOnly)))
	wantStatus(t, r, "ek_cert_ecc_p384", doctor.Pass, "NV 0x01C00016, EK hash "+eccHash, "trusted")
	wantLine(t, r, "pcr_bank", doctor.Pass, "sha256 allocated with PCRs 0,2,4,7, the agent's pcr_selection")
	for _, name := range []string{"agent_config", "plugin", "plugin_checksum", "ak", "devid_cert", "devid_key", "spire_server", "luks"} {
		wantStatus(t, r, name, doctor.Warn, "not checked: no --")
	}
	if r.Failed() {
		t.Errorf("the doctor fails a swtpm host with EK certificates:\n%s", dump(r))
	}

	// Without --ca, the chain is not checked: a warning that says how.
	r = doctor.Run(doctor.Options{TPMPath: s.Socket})
	wantStatus(t, r, "ek_cert_rsa_2048", doctor.Warn, "; chain not checked")
	if c := check(t, r, "ek_cert_rsa_2048"); !strings.Contains(c.Next, "--ca FILE") {
		t.Errorf("next step %q does not name --ca", c.Next)
	}

	// The agent in EK mode, its server not running.
	plugin, sum := pluginBinary(t, dir)
	port := closedPort(t)
	conf := agentConf(t, dir, port, plugin, sum, spireconf.Setting{Key: "tpm_path", Value: s.Socket},
		spireconf.Setting{Key: "pcr_selection", Value: []int{0, 2, 4, 7}})
	opts := doctor.Options{CAPath: s.CABundle, AgentConfigPath: conf}
	r = doctor.Run(opts)
	wantLine(t, r, "agent_config", doctor.Pass, fmt.Sprintf(`%s: trust domain funlab.casa, server 127.0.0.1:%d, NodeAttestor "tpm" in EK mode`, conf, port))
	wantLine(t, r, "tpm", doctor.Pass, s.Socket+" (a unix socket)") // the agent's tpm_path
	wantLine(t, r, "plugin", doctor.Pass, fmt.Sprintf("%s (%d bytes)", plugin, len(pluginContent)))
	wantLine(t, r, "plugin_checksum", doctor.Pass, fmt.Sprintf("sha256 %s matches %s", sum, plugin))
	wantLine(t, r, "ak", doctor.Pass, "no key at 0x81010010 yet: the agent creates the AK there at its first attestation")
	wantLine(t, r, "devid_cert", doctor.Pass, "not used: the agent attests in EK mode (no devid_cert_path)")
	wantStatus(t, r, "spire_server", doctor.Fail, fmt.Sprintf("127.0.0.1:%d: dial tcp 127.0.0.1:%d: connect: connection refused", port, port))

	// The AK the agent persists, under its EK (RSA-2048, the first with a certificate).
	tp, err := tpm.Open(s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ek, err := tpm.LoadEK(tp, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm.LoadOrCreateAK(tp, ek, tpmrules.DefaultAKHandle)
	if err != nil {
		t.Fatal(err)
	}
	ak.Close(tp)
	ek.Close(tp)
	r = doctor.Run(opts)
	wantLine(t, r, "ak", doctor.Pass, fmt.Sprintf("0x81010010 holds an AK (%s) under the RSA-2048 EK", tpmrules.KeyTypeName(tpmrules.AKTemplate.Type)))

	// A missing plugin binary, and a plugin_checksum that is not the binary's.
	missing := filepath.Join(dir, "bin", "omens-attestor-agent")
	r = doctor.Run(doctor.Options{AgentConfigPath: agentConf(t, dir, port, missing, sum, spireconf.Setting{Key: "tpm_path", Value: s.Socket})})
	wantLine(t, r, "plugin", doctor.Fail, "plugin_cmd "+missing+": no such file or directory")
	wantLine(t, r, "plugin_checksum", doctor.Warn, "not checked: no plugin binary")
	other := strings.Repeat("ab", 32)
	r = doctor.Run(doctor.Options{AgentConfigPath: agentConf(t, dir, port, plugin, other, spireconf.Setting{Key: "tpm_path", Value: s.Socket})})
	wantLine(t, r, "plugin_checksum", doctor.Fail, fmt.Sprintf("plugin_checksum %s is not the sha256 of %s, %s: SPIRE refuses to start the plugin", other, plugin, sum))
	r = doctor.Run(doctor.Options{AgentConfigPath: agentConf(t, dir, port, plugin, "", spireconf.Setting{Key: "tpm_path", Value: s.Socket})})
	wantLine(t, r, "plugin_checksum", doctor.Warn, fmt.Sprintf("no plugin_checksum: SPIRE runs whatever binary is at %s (its sha256 is %s)", plugin, sum))

	// A key the plugin does not know: the agent would not start.
	bad := agentConf(t, dir, port, plugin, sum, spireconf.Setting{Key: "pcr_selectoin", Value: []int{0}})
	r = doctor.Run(doctor.Options{AgentConfigPath: bad})
	wantLine(t, r, "agent_config", doctor.Fail, fmt.Sprintf(`%s:%d: NodeAttestor "tpm" plugin_data: unknown key "pcr_selectoin" (line 1)`, bad, lineOf(t, bad, `NodeAttestor "tpm"`)))

	// A file that is not a SPIRE agent configuration.
	r = doctor.Run(doctor.Options{TPMPath: s.Socket, AgentConfigPath: s.CABundle})
	wantStatus(t, r, "agent_config", doctor.Fail, "doctor: "+s.CABundle+": ")
	wantLine(t, r, "plugin", doctor.Warn, "not checked: the agent configuration cannot be read (see agent_config)")

	// DevID mode: a DevID key made in this TPM, persisted at the plan's handle, and its
	// certificate, valid, about to expire, expired, or of another key.
	srk, err := tpm.LoadSRK(tp, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm.CreateDevID(tp, srk, tpm2.TPMAlgECC)
	srk.Close(tp)
	if err != nil {
		t.Fatal(err)
	}
	pubBlob, privBlob := filepath.Join(dir, "devid.pub"), filepath.Join(dir, "devid.priv")
	if err := os.WriteFile(pubBlob, key.PublicBlob, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(privBlob, key.PrivateBlob, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tpm.PersistDevID(tp, key, tpmrules.PlanDevIDHandle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testtpm.EvictDevID(tp, tpmrules.PlanDevIDHandle) })
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "devid.crt")
	devidConf := agentConf(t, dir, port, plugin, sum, spireconf.Setting{Key: "tpm_path", Value: s.Socket},
		spireconf.Setting{Key: "devid_cert_path", Value: certPath}, spireconf.Setting{Key: "devid_priv_path", Value: "0x81010002"})
	now := time.Now()
	for _, tc := range []struct {
		name          string
		key           crypto.PublicKey
		notAfter      time.Time
		status        doctor.Status
		detail        string
		keyStatus     doctor.Status
		keyDetailPart string
	}{
		{"valid", pub, now.Add(90 * 24 * time.Hour), doctor.Pass, "%s: CN=auth.funlab.casa, serial 2a, valid until %s (89 days)", doctor.Pass, "at 0x81010002 in this TPM, the key of the certificate"},
		{"expiring", pub, now.Add(3*24*time.Hour + time.Hour), doctor.Warn, "%s: CN=auth.funlab.casa, serial 2a expires at %s, in 3 days", doctor.Pass, "at 0x81010002"},
		{"expired", pub, now.Add(-time.Hour), doctor.Fail, "%s: CN=auth.funlab.casa, serial 2a expired at %s", doctor.Pass, "at 0x81010002"},
		{"another key", newKey(t).Public(), now.Add(90 * 24 * time.Hour), doctor.Pass, "%s: CN=auth.funlab.casa, serial 2a, valid until %s (89 days)", doctor.Fail, "certifies another key than the DevID key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeDevIDCert(t, certPath, tc.key, now.Add(-24*time.Hour), tc.notAfter)
			r := doctor.Run(doctor.Options{AgentConfigPath: devidConf, Now: now})
			wantLine(t, r, "devid_cert", tc.status, fmt.Sprintf(tc.detail, certPath, tc.notAfter.UTC().Truncate(time.Second).Format(time.RFC3339)))
			wantStatus(t, r, "devid_key", tc.keyStatus, tc.keyDetailPart)
		})
	}

	// The same key from its blobs (tpm_devid's files), loaded under the SRK.
	writeDevIDCert(t, certPath, pub, now.Add(-24*time.Hour), now.Add(90*24*time.Hour))
	blobConf := agentConf(t, dir, port, plugin, sum, spireconf.Setting{Key: "tpm_path", Value: s.Socket},
		spireconf.Setting{Key: "devid_cert_path", Value: certPath}, spireconf.Setting{Key: "devid_priv_path", Value: privBlob},
		spireconf.Setting{Key: "devid_pub_path", Value: pubBlob})
	r = doctor.Run(doctor.Options{AgentConfigPath: blobConf, Now: now})
	wantLine(t, r, "devid_key", doctor.Pass, "from "+privBlob+", loaded under the SRK in this TPM, the key of the certificate")
	if left, err := tpm.TransientHandles(tp); err != nil || len(left) > 0 {
		t.Errorf("the DevID check left transient objects %v (%v)", left, err)
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeDevIDCert writes a DevID certificate for pub, issued by a CA made for the test
// (the doctor does not verify the chain; the server does).
func writeDevIDCert(t *testing.T, path string, pub crypto.PublicKey, notBefore, notAfter time.Time) {
	t.Helper()
	ca := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test DevID CA"},
		NotBefore: notBefore, NotAfter: notAfter.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, ca.Public(), ca)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "auth.funlab.casa"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, pub, ca)
	if err != nil {
		t.Fatal(err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSwtpmWithoutEKCertificate: a TPM whose EK certificate indices are not defined
// fails, naming the EK hash an allow list would need.
func TestSwtpmWithoutEKCertificate(t *testing.T) {
	s := testtpm.StartSwtpm(t)
	rsaHash, _ := ekHash(t, s.RSAEKCert)
	tp, err := tpm.Open(s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []tpmrules.EKKind{tpmrules.EKRSA2048, tpmrules.EKECCP384} {
		rp, err := tpm2.NVReadPublic{NVIndex: kind.CertIndex}.Execute(tp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: kind.CertIndex, Name: rp.NVName},
		}).Execute(tp); err != nil {
			t.Fatalf("NV_UndefineSpace %s: %v", tpmrules.FormatHandle(kind.CertIndex), err)
		}
	}
	tp.Close()
	r := doctor.Run(doctor.Options{TPMPath: s.Socket, CAPath: s.CABundle})
	wantLine(t, r, "ek_cert", doctor.Fail, "no EK certificate in NV (RSA-2048 0x01C00002, ECC-P256 0x01C0000A, ECC-P384 0x01C00016 are not defined; EK RSA-2048 hash "+rsaHash+")")
	if !r.Failed() {
		t.Error("the report does not fail")
	}
}

// TestSwtpmPCRBankOff: the sha256 bank switched off (tpm2_pcrallocate, then a TPM reset)
// fails the bank check, and the event log cannot be replayed.
func TestSwtpmPCRBankOff(t *testing.T) {
	testtpm.RequireTool(t, "tpm2_pcrallocate")
	s := testtpm.StartSwtpm(t)
	cmd := exec.Command("tpm2_pcrallocate", "sha1:all+sha256:none")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrallocate: %v\n%s", err, out)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(log, []byte("not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := doctor.Run(doctor.Options{TPMPath: s.Socket, CAPath: s.CABundle, EventLogPath: log})
	wantLine(t, r, "pcr_bank", doctor.Fail, "the sha256 bank is not allocated (allocated: sha1 (24 PCRs)); the agent quotes sha256 PCRs 0,2,4,7")
	wantLine(t, r, "event_log", doctor.Warn, log+" (8 bytes) not replayed: the sha256 PCRs could not be read")
	if !r.Failed() {
		t.Error("the report does not fail")
	}
}

// requireLUKSTools ends the test unless cryptsetup and clevis can run.
func requireLUKSTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"cryptsetup", "clevis", "clevis-luks-bind", "clevis-encrypt-tpm2", "tpm2_createprimary"} {
		if _, err := exec.LookPath(tool); err != nil {
			enginetest.Missing(t, fmt.Sprintf("%s not found in PATH; install it with: apt-get install cryptsetup-bin clevis clevis-luks clevis-tpm2 tpm2-tools", tool))
		}
	}
}

// luksImage makes a LUKS2 image file with a key file in dir, and, for each of binds,
// a Clevis tpm2 token made by the real `clevis luks bind` against swtpm (cryptsetup
// works on a file without device-mapper).
func luksImage(t *testing.T, s *testtpm.Swtpm, dir, name string, binds ...string) string {
	t.Helper()
	img, keyFile := filepath.Join(dir, name+".img"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(keyFile, []byte("omens doctor test passphrase "+name), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(nil, "truncate", "-s", "32M", img)
	run(nil, "cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, img)
	tcti := []string{"TPM2TOOLS_TCTI=" + s.TCTI()}
	for _, cfg := range binds {
		run(tcti, "clevis", "luks", "bind", "-y", "-k", keyFile, "-d", img, "tpm2", cfg)
		// swtpm has no resource manager: flush what tpm2-tools left loaded, as the
		// kernel's /dev/tpmrm0 does when a client closes it.
		for _, what := range []string{"-t", "-l", "-s"} {
			run(tcti, "tpm2_flushcontext", what)
		}
	}
	return img
}

// TestLUKSClevisBinding reads real Clevis tpm2 tokens from LUKS2 images and compares
// them with the PCRs the agent quotes (0,2,4,7 by default).
func TestLUKSClevisBinding(t *testing.T) {
	requireLUKSTools(t)
	s := testtpm.StartSwtpm(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		binds  []string
		status doctor.Status
		detail string
	}{
		{"same PCRs", []string{`{"pcr_bank":"sha256","pcr_ids":"0,7"}`}, doctor.Pass,
			"%s: token 0 (keyslot 1): tpm2 on sha256 PCRs 0,7, all quoted by the agent (sha256 0,2,4,7)"},
		{"other PCRs", []string{`{"pcr_bank":"sha256","pcr_ids":"0,1,7"}`}, doctor.Fail,
			"%s: token 0 (keyslot 1): tpm2 on sha256 PCRs 0,1,7; token 0 is sealed to PCR 1, which the agent does not quote (sha256 0,2,4,7): the disk unlocks on a boot state no attestation checks"},
		{"PCR 4", []string{`{"pcr_bank":"sha256","pcr_ids":"0,4,7"}`}, doctor.Warn,
			"%s: token 0 (keyslot 1): tpm2 on sha256 PCRs 0,4,7; token 0 includes PCR 4, which changes at every kernel update: the disk will not unlock by TPM after one until it is rebound"},
		{"no PCR", []string{`{}`}, doctor.Warn,
			"%s: token 0 (keyslot 1): tpm2 on no PCR; token 0 is sealed to no PCR: the disk unlocks with this TPM whatever booted"},
		{"no binding", nil, doctor.Fail, "%s: no Clevis tpm2 binding in its LUKS2 tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := luksImage(t, s, dir, strings.ReplaceAll(tc.name, " ", "-"), tc.binds...)
			r := doctor.Run(doctor.Options{TPMPath: s.Socket, LUKSDevice: img})
			wantLine(t, r, "luks", tc.status, fmt.Sprintf(tc.detail, img))
		})
	}
	// A file that is no LUKS2 image.
	plain := filepath.Join(dir, "plain.img")
	if err := os.WriteFile(plain, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r := doctor.Run(doctor.Options{TPMPath: s.Socket, LUKSDevice: plain})
	wantStatus(t, r, "luks", doctor.Fail, "cryptsetup luksDump --dump-json-metadata "+plain+": ")
}
