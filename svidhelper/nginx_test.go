package svidhelper_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/svidhelper"
)

// nginxBin is Debian's nginx (scripts/install-deps.sh installs it).
const nginxBin = "/usr/sbin/nginx"

// uniqueID is the x500UniqueIdentifier SPIRE's CredentialComposer "uniqueid" puts in
// the subject of the X.509-SVID of id: the first 16 bytes of SHA-256 over the ID, in hex.
func uniqueID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// nginxConf is nginx standing in for OpenBao's listener on spire: its certificate and key
// are the helper's files, it requires a client certificate that chains to the SPIFFE
// bundle file, and it authorizes the client by SPIFFE ID.
//
// nginx cannot read a URI SAN (no variable holds one, and Debian's nginx has no njs), so
// the SPIFFE ID is checked through the subject: the SPIRE server runs the
// CredentialComposer "uniqueid", which puts x500UniqueIdentifier = SHA-256(SPIFFE ID)
// (16 bytes, hex) in the subject of every X.509-SVID it signs. A client certificate that
// verified against the trust domain's bundle (ssl_verify_client on) and whose subject
// ($ssl_client_s_dn, RFC 2253, where a "," inside a value is escaped as "\,") holds
// the unique ID of spiffe://funlab.casa/step-ca was issued by the trust domain's CA
// for that ID; any other SVID of the trust domain gets 403. The body names the ID.
func nginxConf(dir string, port int, cert, key, bundle string) string {
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    map $ssl_client_s_dn $spiffe_client {
        default "";
        "~(^|[^\\\\],)x500UniqueIdentifier=%[6]s(,|$)" "%[7]s";
    }
    server {
        listen 127.0.0.1:%[2]d ssl;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        ssl_client_certificate %[5]s;
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / {
            default_type text/plain;
            if ($spiffe_client = "") {
                return 403 "forbidden: $ssl_client_s_dn\n";
            }
            return 200 "$spiffe_client\n";
        }
    }
}
`, dir, port, cert, key, bundle, uniqueID(stepCAID), stepCAID)
}

func freePort(t testing.TB) int { return enginetest.FreePort(t) }

// startNginx runs nginx in the foreground as this test's child, from a temporary prefix
// directory, until the test ends.
func startNginx(t *testing.T, dir, conf string) *proc.Process {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "nginx.out")
	p, err := proc.Start("nginx", exec.Command(nginxBin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log")), logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(20 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Log(proc.Tail(filepath.Join(dir, "error.log")))
		}
	})
	return p
}

// TestNginxRotation: nginx, a server that reads its certificate from files, stands in for
// OpenBao's listener on spire; `omens svid helper` (renew_signal SIGHUP, nginx's pid
// file) keeps its files current; a client holding step-ca's SVID from the Workload API of
// ca calls it over mTLS in a loop, checking nginx's SPIFFE ID. Across at least two
// rotations nginx is reloaded and serves the certificate the helper last wrote, and no
// call fails.
func TestNginxRotation(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		enginetest.Missing(t, fmt.Sprintf("nginx: %v: install Debian's nginx (scripts/install-deps.sh)", err))
	}
	tw := startTower(t)

	certDir := t.TempDir()
	port := freePort(t)
	nginxDir := t.TempDir()
	pidFile := filepath.Join(nginxDir, "nginx.pid")
	helperLog := startHelper(t, "openbao-helper.conf", helperConf(tw.openbaoSock, certDir,
		`renew_signal = "SIGHUP"`, `pid_file_name = "`+pidFile+`"`))
	cert, key, bundle := filepath.Join(certDir, "svid.pem"), filepath.Join(certDir, "svid_key.pem"), filepath.Join(certDir, "svid_bundle.pem")
	waitFor(t, time.Minute, "the helper wrote nginx's files", func() bool { return helperLog.count("SVID written") == 1 })
	checkFiles(t, certDir, openbaoID)
	// The helper saw no pid file yet: nginx starts with the files it wrote.
	if !strings.Contains(helperLog.String(), "no pid file yet") {
		t.Fatalf("first write did not note the missing pid file:\n%s", helperLog.String())
	}

	nginx := startNginx(t, nginxDir, nginxConf(nginxDir, port, cert, key, bundle))
	url := fmt.Sprintf("https://127.0.0.1:%d/", port)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+tw.stepCASock)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	client := mtlsClient(src, src, spiffeid.RequireFromString(openbaoID))
	waitFor(t, time.Minute, "nginx answers", func() bool {
		if done, err := nginx.Exited(); done {
			t.Fatalf("nginx exited: %v", err)
		}
		_, _, err := call(client, url)
		return err == nil
	})
	pid, err := svidhelper.ReadPIDFile(pidFile)
	if err != nil || pid != nginx.PID() {
		t.Fatalf("nginx pid file: %d, %v; want %d", pid, err, nginx.PID())
	}

	// A client with another SVID of the trust domain (OpenBao's own) is refused by ID,
	// one without a certificate by the TLS layer.
	other, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+tw.openbaoSock)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if status, body, err := call(mtlsClient(other, other, spiffeid.RequireFromString(openbaoID)), url); err != nil || status != http.StatusForbidden {
		t.Fatalf("call with OpenBao's SVID: %d %q %v, want 403", status, body, err)
	} else {
		t.Logf("a call with OpenBao's own SVID is refused: %d %s", status, strings.TrimSpace(body))
	}
	noCert := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: tlsconfig.TLSClientConfig(src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(openbaoID)))}}
	if status, _, err := call(noCert, url); err != nil || status != http.StatusBadRequest {
		t.Fatalf("call without a client certificate: %d %v, want 400 (No required SSL certificate was sent)", status, err)
	}

	// step-ca's calls, one connection each, during the rotations.
	var mu sync.Mutex
	var calls int
	var failures []string
	served := map[string]bool{} // leaf serials nginx served
	var order []string
	stopLoop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stopLoop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			status, body, serial, err := callSerial(client, url)
			mu.Lock()
			calls++
			switch {
			case err != nil:
				failures = append(failures, err.Error())
			case status != http.StatusOK || body != stepCAID+"\n":
				failures = append(failures, fmt.Sprintf("HTTP %d %q", status, body))
			case !served[serial]:
				served[serial] = true
				order = append(order, serial)
			}
			mu.Unlock()
		}
	}()
	servedNow := func(serial string) bool {
		mu.Lock()
		defer mu.Unlock()
		return served[serial]
	}
	// Two rotations after nginx started, each served once nginx reloaded.
	start := helperLog.count("SVID rotated")
	for r := 1; r <= 2; r++ {
		waitFor(t, rotationTimeout, fmt.Sprintf("rotation %d", r), func() bool { return helperLog.count("SVID rotated") >= start+r })
		serial := fileSerial(t, certDir)
		waitFor(t, rotationTimeout, fmt.Sprintf("nginx serves the rotated certificate %s", serial), func() bool { return servedNow(serial) })
		checkFiles(t, certDir, openbaoID)
	}
	close(stopLoop)
	<-loopDone

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d of %d calls failed; first: %s", len(failures), calls, failures[0])
	}
	if len(order) < 3 {
		t.Fatalf("nginx served %d certificates (%v), want the first and two rotated ones", len(order), order)
	}
	if n := strings.Count(helperLog.String(), fmt.Sprintf("signal=SIGHUP pid=%d", nginx.PID())); n < 2 {
		t.Fatalf("%d SIGHUPs to nginx logged, want at least 2:\n%s", n, helperLog.String())
	}
	t.Logf("%d calls, none failed; nginx served %d certificates in turn: %s", calls, len(order), strings.Join(order, ", "))
}

func mtlsClient(svids x509svid.Source, bundles x509bundle.Source, server spiffeid.ID) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: tlsconfig.MTLSClientConfig(svids, bundles, tlsconfig.AuthorizeID(server))}}
}

func call(c *http.Client, url string) (int, string, error) {
	status, body, _, err := callSerial(c, url)
	return status, body, err
}

// callSerial makes one call and returns the status, the body and the serial of the leaf
// certificate the server presented.
func callSerial(c *http.Client, url string) (int, string, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, "", "", err
	}
	var serial string
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		leaf := resp.TLS.PeerCertificates[0]
		if id := spiffeIDOf(leaf); id != openbaoID {
			return 0, "", "", fmt.Errorf("server presented %q, want %s", id, openbaoID)
		}
		serial = hex.EncodeToString(leaf.SerialNumber.Bytes())
	}
	return resp.StatusCode, string(b), serial, nil
}
