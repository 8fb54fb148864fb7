// Package testtpm starts software TPMs for tests: swtpm (StartSwtpm) and the in-process
// simulator served on a socket (ServeSim); Evict and EvictDevID remove what a test
// persisted.
//
// StartSwtpm runs a real swtpm (TPM 2.0, libtpms) on a unix socket with freshly manufactured
// state: RSA-2048 and ECC P-384 endorsement keys, persisted at 0x81010001 and 0x81010016,
// whose certificates sit in NV at 0x01C00002 and 0x01C00016. The certificates are signed by
// swtpm_localca's own intermediate CA, which it creates per test with its root, so a
// verifier can be given the matching root and intermediate (Swtpm.CABundle).
//
// The tools come from the swtpm, swtpm-tools and tpm2-tools packages. When one is missing
// the test is skipped, or fails if the environment variable CI is "true".
package testtpm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/test/enginetest"
)

const installHint = "apt-get install swtpm swtpm-tools tpm2-tools"

// Swtpm is a running swtpm process serving TPM 2.0 over a unix socket.
type Swtpm struct {
	// Socket is the unix socket for TPM commands; it takes one command per connection
	// and any number of connections one after another (what linuxudstpm.Open expects).
	Socket string
	// CtrlSocket is swtpm's control channel, always Socket + ".ctrl".
	CtrlSocket string
	// CABundle is a PEM file holding the root CA and the intermediate CA that issued
	// the EK certificates.
	CABundle string
	// RSAEKCert and ECCEKCert are DER files with the same bytes as NV 0x01C00002
	// (RSA-2048 EK) and NV 0x01C00016 (ECC P-384 EK).
	RSAEKCert string
	ECCEKCert string
	// Dir holds the TPM state (Dir/state), the CA (Dir/ca) and the logs
	// (Dir/swtpm_setup.log, Dir/swtpm.log).
	Dir string

	proc *proc.Process // swtpm, nil until it starts
}

// StartSwtpm creates a fresh TPM state in t.TempDir() with swtpm_setup (RSA-2048 and
// ECC P-384 EK certificates from a per-test swtpm_localca), starts swtpm on a unix socket
// (control socket at Socket+".ctrl"), waits until it answers, and stops it in t.Cleanup.
// If swtpm or swtpm_setup is missing it skips the test (fails it when CI=true).
func StartSwtpm(t testing.TB) *Swtpm {
	t.Helper()
	RequireTool(t, "swtpm")
	RequireTool(t, "swtpm_setup")
	RequireTool(t, "swtpm_localca")

	dir := t.TempDir()
	sockDir, err := socketDir(dir)
	if err != nil {
		t.Fatalf("testtpm: %v", err)
	}
	if sockDir != dir {
		t.Cleanup(func() { os.RemoveAll(sockDir) })
	}
	s := &Swtpm{
		Dir:       dir,
		Socket:    filepath.Join(sockDir, "tpm.sock"),
		CABundle:  filepath.Join(dir, "ca", "bundle.pem"),
		RSAEKCert: filepath.Join(dir, "ekcerts", "ek-rsa2048.crt"),
		ECCEKCert: filepath.Join(dir, "ekcerts", "ek-secp384r1.crt"),
	}
	s.CtrlSocket = s.Socket + ".ctrl"

	start := time.Now()
	if err := s.manufacture(); err != nil {
		t.Fatalf("testtpm: %v", err)
	}
	setup := time.Since(start)
	if err := s.start(); err != nil {
		s.stop()
		t.Fatalf("testtpm: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("testtpm: %v", err)
		}
	})
	t.Logf("testtpm: swtpm on %s (swtpm_setup %v, start %v)", s.Socket,
		setup.Round(time.Millisecond), (time.Since(start) - setup).Round(time.Millisecond))
	return s
}

// socketDir returns dir if the control socket path in it fits in a sockaddr_un (108 bytes
// with the terminating NUL), or else a new short directory under TMPDIR or /tmp.
func socketDir(dir string) (string, error) {
	const maxPath = 107 - len("/tpm.sock.ctrl")
	if len(dir) <= maxPath {
		return dir, nil
	}
	for _, parent := range []string{os.TempDir(), "/tmp"} {
		if len(parent)+len("/swtpm1234567890") > maxPath {
			continue
		}
		if d, err := os.MkdirTemp(parent, "swtpm"); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no directory with a path short enough for a unix socket (temp dir %s)", dir)
}

// TCTI returns the TPM2TOOLS_TCTI value for tpm2-tools. The swtpm TCTI finds the
// control channel at Socket+".ctrl".
func (s *Swtpm) TCTI() string { return "swtpm:path=" + s.Socket }

// RequireTool skips the test when the command-line tool name is not in PATH, or fails it
// when the environment variable CI is "true".
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		enginetest.Missing(t, fmt.Sprintf("%s not found in PATH; install it with: %s", name, installHint))
	}
}

// manufacture writes the CA and runs swtpm_setup into s.Dir.
func (s *Swtpm) manufacture() error {
	for _, d := range []string{"state", "ca", "ekcerts", "tmp"} {
		if err := os.Mkdir(filepath.Join(s.Dir, d), 0o700); err != nil {
			return err
		}
	}
	caDir := filepath.Join(s.Dir, "ca")
	// swtpm_localca creates its own root and intermediate CA (RSA-3072) in caDir the
	// first time, then signs the EK certificates with the intermediate.
	files := map[string]string{
		"swtpm-localca.conf": "statedir = " + caDir + "\n" +
			"signingkey = " + filepath.Join(caDir, "signkey.pem") + "\n" +
			"issuercert = " + filepath.Join(caDir, "issuercert.pem") + "\n" +
			"certserial = " + filepath.Join(caDir, "certserial") + "\n",
		"swtpm-localca.options": "--platform-manufacturer omens\n" +
			"--platform-version 2.1\n" +
			"--platform-model testtpm\n",
		"swtpm_setup.conf": "create_certs_tool = swtpm_localca\n" +
			"create_certs_tool_config = " + filepath.Join(s.Dir, "swtpm-localca.conf") + "\n" +
			"create_certs_tool_options = " + filepath.Join(s.Dir, "swtpm-localca.options") + "\n" +
			"active_pcr_banks = sha256\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logFile := filepath.Join(s.Dir, "swtpm_setup.log")
	cmd := exec.CommandContext(ctx, "swtpm_setup",
		"--tpm2",
		"--tpmstate", filepath.Join(s.Dir, "state"),
		"--create-ek-cert",
		"--config", filepath.Join(s.Dir, "swtpm_setup.conf"),
		"--write-ek-cert-files", filepath.Join(s.Dir, "ekcerts"),
		"--logfile", logFile,
	)
	// swtpm_setup makes a scratch directory under TMPDIR; keep it inside Dir.
	cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Join(s.Dir, "tmp"))
	// swtpm_setup runs its own swtpm; a timeout must kill both.
	proc.Own(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("swtpm_setup: %v\n%s%s", err, out, log)
	}
	if err := writeBundle(caDir, s.CABundle); err != nil {
		return err
	}
	for _, f := range []string{s.RSAEKCert, s.ECCEKCert} {
		if _, err := os.Stat(f); err != nil {
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("swtpm_setup wrote no EK certificate: %v\n%s", err, log)
		}
	}
	return nil
}

// start runs swtpm and waits until it answers a command.
func (s *Swtpm) start() error {
	// swtpm's standard output and error go to the file of its --log, which it too opens
	// for appending.
	logFile := filepath.Join(s.Dir, "swtpm.log")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+filepath.Join(s.Dir, "state"),
		"--server", "type=unixio,path="+s.Socket,
		"--ctrl", "type=unixio,path="+s.CtrlSocket,
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+logFile+",level=1",
	)
	p, err := proc.Start("swtpm", cmd, logFile)
	if err != nil {
		return err
	}
	s.proc = p
	return p.WaitReady(30*time.Second, 10*time.Millisecond, func(context.Context) error { return probe(s.Socket) })
}

// stop terminates swtpm (SIGTERM, SIGKILL after 5s) and waits for it to exit.
func (s *Swtpm) stop() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.Stop(5 * time.Second)
}

// probe sends TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_MANUFACTURER, 1) on a new
// connection and checks for a success response.
func probe(socket string) error {
	conn, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	cmd := binary.BigEndian.AppendUint16(nil, 0x8001) // TPM_ST_NO_SESSIONS
	cmd = binary.BigEndian.AppendUint32(cmd, 22)      // commandSize
	cmd = binary.BigEndian.AppendUint32(cmd, 0x17A)   // TPM_CC_GetCapability
	cmd = binary.BigEndian.AppendUint32(cmd, 6)       // TPM_CAP_TPM_PROPERTIES
	cmd = binary.BigEndian.AppendUint32(cmd, 0x105)   // TPM_PT_MANUFACTURER
	cmd = binary.BigEndian.AppendUint32(cmd, 1)       // propertyCount
	if _, err := conn.Write(cmd); err != nil {
		return err
	}
	var hdr [10]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return err
	}
	if rc := binary.BigEndian.Uint32(hdr[6:]); rc != 0 {
		return fmt.Errorf("TPM2_GetCapability: response code %#x", rc)
	}
	return nil
}

// writeBundle writes swtpm_localca's own root followed by its intermediate to bundle: the
// chain a verifier is given as its CA bundle.
func writeBundle(dir, bundle string) error {
	root, err := os.ReadFile(filepath.Join(dir, "swtpm-localca-rootca-cert.pem"))
	if err != nil {
		return fmt.Errorf("swtpm_localca made no root CA: %w", err)
	}
	inter, err := os.ReadFile(filepath.Join(dir, "issuercert.pem"))
	if err != nil {
		return fmt.Errorf("swtpm_localca made no intermediate CA: %w", err)
	}
	return os.WriteFile(bundle, append(root, inter...), 0o644)
}
