package svidhelper_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/test/spiretest"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/svidhelper"
)

// The Tower's two services, as the plan registers them.
const (
	openbaoID = "spiffe://funlab.casa/openbao"
	stepCAID  = "spiffe://funlab.casa/step-ca"
)

// svidTTL is the workload X.509-SVID lifetime of the tests: SPIRE backdates an SVID by
// 10s and its agent renews it at half its life, so an SVID rotates about every 20s.
const svidTTL = "30s"

// rotationTimeout bounds the wait for the rotations a test needs; generous, for a
// small shared machine.
const rotationTimeout = 4 * time.Minute

// tower is a real SPIRE server with the agents of hosts spire (OpenBao) and ca (step-ca),
// each with the entry of its service for this process's uid.
type tower struct {
	srv         *spiretest.Server
	spire, ca   *spiretest.Agent
	openbaoSock string
	stepCASock  string
}

func startTower(t *testing.T) *tower {
	t.Helper()
	srv := spiretest.StartServer(t, spiretest.ServerConfig{
		DefaultX509SVIDTTL: svidTTL, AgentTTL: "1h",
		// x500UniqueIdentifier in each SVID's subject, derived from its SPIFFE ID: what
		// nginx checks (see nginxConf).
		Plugins: []spireconf.Plugin{{Type: "CredentialComposer", Name: "uniqueid"}},
	})
	tw := &tower{srv: srv}
	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	tw.spire = spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: srv.JoinToken(t, "spiffe://funlab.casa/agent/spire"), Name: "spire"})
	tw.ca = spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: srv.JoinToken(t, "spiffe://funlab.casa/agent/ca"), Name: "ca"})
	srv.CreateEntry(t, "spiffe://funlab.casa/agent/spire", openbaoID, uid)
	srv.CreateEntry(t, "spiffe://funlab.casa/agent/ca", stepCAID, uid)
	tw.openbaoSock, tw.stepCASock = tw.spire.WorkloadSocket, tw.ca.WorkloadSocket
	return tw
}

// logBuffer collects the helper's log lines for the test to read.
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("helper: %s", strings.TrimRight(string(p), "\n"))
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many log lines hold msg.
func (l *logBuffer) count(msg string) int { return strings.Count(l.String(), `msg="`+msg+`"`) }

// startHelper runs the helper with the configuration src in this process until the test
// ends, and returns its log.
func startHelper(t *testing.T, name, src string) *logBuffer {
	t.Helper()
	cfg, err := svidhelper.Parse(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- svidhelper.Run(ctx, cfg, svidhelper.Options{Log: slog.New(slog.NewTextHandler(log, nil))})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("helper %s: %v", name, err)
		}
	})
	return log
}

// helperConf is a helper configuration writing into dir, with extra settings.
func helperConf(socket, dir string, extra ...string) string {
	return strings.Join(append([]string{
		"agent_address = " + spireconf.Quote(socket),
		"cert_dir = " + spireconf.Quote(dir),
		`svid_file_name = "svid.pem"`,
		`svid_key_file_name = "svid_key.pem"`,
		`svid_bundle_file_name = "svid_bundle.pem"`,
	}, extra...), "\n") + "\n"
}

// waitFor polls cond until it holds, failing the test with what after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readCerts reads the PEM certificates of a file.
func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			t.Fatalf("%s: a %s block, want CERTIFICATE", path, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatalf("%s: no certificate", path)
	}
	return certs
}

// fileSerial is the serial, in hex, of the leaf in the helper's certificate file.
func fileSerial(t *testing.T, dir string) string {
	t.Helper()
	return hex.EncodeToString(readCerts(t, filepath.Join(dir, "svid.pem"))[0].SerialNumber.Bytes())
}

// checkFiles checks what the helper wrote in dir: a chain for id that verifies against
// the bundle file, the key of its leaf in a 0600 file, public certificate files.
func checkFiles(t *testing.T, dir, id string) {
	t.Helper()
	leaf := readCerts(t, filepath.Join(dir, "svid.pem"))
	roots := x509.NewCertPool()
	for _, c := range readCerts(t, filepath.Join(dir, "svid_bundle.pem")) {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range leaf[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("svid.pem does not verify against svid_bundle.pem: %v", err)
	}
	if len(leaf[0].URIs) != 1 || leaf[0].URIs[0].String() != id {
		t.Fatalf("svid.pem names %v, want %s", leaf[0].URIs, id)
	}
	keyPath := filepath.Join(dir, "svid_key.pem")
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("svid_key.pem has mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(keyPath)
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("svid_key.pem holds no PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := key.(crypto.Signer)
	if !ok || !publicEqual(pub.Public(), leaf[0].PublicKey) {
		t.Fatal("svid_key.pem is not the key of svid.pem's leaf")
	}
	for _, f := range []string{"svid.pem", "svid_bundle.pem"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s: mode %v, %v; want 0644", f, fi.Mode().Perm(), err)
		}
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file %s left in cert_dir", e.Name())
		}
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(x crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// TestOneShot runs `omens svid helper` with daemon_mode = false against real SPIRE: it
// writes the files once and exits 0.
func TestOneShot(t *testing.T) {
	tw := startTower(t)
	dir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "helper.conf")
	if err := os.WriteFile(conf, []byte(helperConf(tw.openbaoSock, dir, "daemon_mode = false")), 0o600); err != nil {
		t.Fatal(err)
	}
	// An older key file that others could read: the new one is 0600 all the same.
	if err := os.WriteFile(filepath.Join(dir, "svid_key.pem"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cli.Main([]string{"svid", "helper", "--config", conf}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	t.Logf("omens svid helper --config helper.conf\n%s", stderr.String())
	if n := strings.Count(stderr.String(), `msg="SVID written"`); n != 1 {
		t.Fatalf("%d SVID written lines, want 1:\n%s", n, stderr.String())
	}
	if want := "spiffe_id=" + openbaoID + " serial=" + fileSerial(t, dir); !strings.Contains(stderr.String(), want) {
		t.Fatalf("log does not say %q:\n%s", want, stderr.String())
	}
	checkFiles(t, dir, openbaoID)

	// --daemon-mode=false overrides the file, as spiffe-helper's -daemon-mode does.
	if err := os.WriteFile(conf, []byte(helperConf(tw.stepCASock, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := cli.Main([]string{"svid", "helper", "--config", conf, "--daemon-mode=false"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--daemon-mode=false: exit %d\n%s", code, stderr.String())
	}
	checkFiles(t, dir, stepCAID)
}

// TestCmdRestartAndSignal runs cmd children through rotations: without renew_signal the
// helper restarts its child at each rotation; with renew_signal it signals the running
// child, and starts it again once it has exited.
func TestCmdRestartAndSignal(t *testing.T) {
	tw := startTower(t)
	work := t.TempDir()

	// Restart: each start of the child appends its pid to starts.
	restartDir := t.TempDir()
	starts := filepath.Join(work, "starts")
	restartLog := startHelper(t, "restart.conf", helperConf(tw.openbaoSock, restartDir,
		`cmd = "/bin/sh"`,
		"cmd_args = "+spireconf.Quote(`-c "echo $$ >> `+starts+`; exec sleep 600"`)))

	// Signal: the child counts SIGUSR1s in reloads and exits at its second one, so the
	// helper must start it again at the rotation after.
	signalDir := t.TempDir()
	reloads, signalStarts := filepath.Join(work, "reloads"), filepath.Join(work, "signal-starts")
	script := `echo $$ >> ` + signalStarts + `; n=0; trap 'n=$((n+1)); echo $n >> ` + reloads + `; [ $n -ge 2 ] && exit 0' USR1; while :; do sleep 0.2; done`
	signalLog := startHelper(t, "signal.conf", helperConf(tw.openbaoSock, signalDir,
		`renew_signal = "SIGUSR1"`, `cmd = "/bin/sh"`, "cmd_args = "+spireconf.Quote(`-c "`+script+`"`)))

	lines := func(p string) []string {
		b, _ := os.ReadFile(p)
		return strings.Fields(string(b))
	}
	waitFor(t, rotationTimeout, "the restarting child started 3 times", func() bool { return len(lines(starts)) >= 3 })
	pids := lines(starts)
	for i, p := range pids[:len(pids)-1] {
		var pid int
		fmt.Sscan(p, &pid)
		if alive(pid) {
			t.Fatalf("child %d (pid %s) still runs after it was restarted", i+1, p)
		}
	}
	if got := restartLog.count("SVID rotated"); got < 2 {
		t.Fatalf("%d rotations logged, want at least 2", got)
	}
	if !strings.Contains(restartLog.String(), "cmd=\"restarted (pid "+pids[1]+", was "+pids[0]+")\"") {
		t.Fatalf("the restart of %s as %s is not logged:\n%s", pids[0], pids[1], restartLog.String())
	}
	checkFiles(t, restartDir, openbaoID)

	waitFor(t, rotationTimeout, "the signalled child started again after it exited", func() bool { return len(lines(signalStarts)) >= 2 })
	if got := lines(reloads); len(got) < 2 || got[0] != "1" || got[1] != "2" {
		t.Fatalf("reloads %q, want the child to count 1 then 2 SIGUSR1s", got)
	}
	if !strings.Contains(signalLog.String(), `cmd="SIGUSR1 to pid `+lines(signalStarts)[0]+`"`) ||
		!strings.Contains(signalLog.String(), `cmd="started again (it had exited) (pid `+lines(signalStarts)[1]+`)"`) {
		t.Fatalf("signal and new start not logged:\n%s", signalLog.String())
	}
}

// spiffeIDOf is the SPIFFE ID of a certificate.
func spiffeIDOf(c *x509.Certificate) string {
	if len(c.URIs) != 1 {
		return ""
	}
	id, err := spiffeid.FromURI(c.URIs[0])
	if err != nil {
		return ""
	}
	return id.String()
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }
