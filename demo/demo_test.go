package demo_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"omens.dev/omens/demo"
	"omens.dev/omens/internal/test/spiretest"
)

const (
	openbaoID = "spiffe://funlab.casa/openbao"
	stepCAID  = "spiffe://funlab.casa/step-ca"
	spireHost = "spiffe://funlab.casa/agent/spire"
	caHost    = "spiffe://funlab.casa/agent/ca"
)

// run runs the command line in this process and returns its exit status and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = demo.MainContext(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// syncBuffer is a log destination that the server's goroutines may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls the server log until it contains substr.
func (b *syncBuffer) waitFor(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("server log has no %q after %v:\n%s", substr, timeout, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCount polls the buffer until substr occurs n times in it.
func (b *syncBuffer) waitCount(t *testing.T, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(b.String(), substr) < n {
		if time.Now().After(deadline) {
			t.Fatalf("output has %q fewer than %d times after %v:\n%s", substr, n, timeout, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start runs the command line in this process in the background, as `serve` or
// `call --every` run, and returns its output and a stop that ends it as SIGTERM would
// and returns its exit status. The test's end stops it too.
func start(t *testing.T, args ...string) (stdout, stderr *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- demo.MainContext(ctx, args, stdout, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("%v did not stop within 10s of the signal", args)
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stdout, stderr, stop
}

// freeAddr returns a loopback address that nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serialHex is a certificate's serial number as an SVID file gives it.
func serialHex(cert *x509.Certificate) string { return hex.EncodeToString(cert.SerialNumber.Bytes()) }

// checkStatus compares an SVID file's status with the SVID (id, cert) that this process
// holds.
func checkStatus(t *testing.T, st demo.SVIDStatus, id string, cert *x509.Certificate) {
	t.Helper()
	now := time.Now()
	if st.SPIFFEID != id || st.Serial != serialHex(cert) || !st.NotBefore.Equal(cert.NotBefore) || !st.NotAfter.Equal(cert.NotAfter) {
		t.Errorf("SVID file says %s serial %s valid %v to %v; the SVID is %s serial %s valid %v to %v",
			st.SPIFFEID, st.Serial, st.NotBefore, st.NotAfter, id, serialHex(cert), cert.NotBefore, cert.NotAfter)
	}
	if st.PID != os.Getpid() {
		t.Errorf("SVID file pid %d, want this process's %d", st.PID, os.Getpid())
	}
	if st.UpdatedAt.After(now) || now.Sub(st.UpdatedAt) > time.Minute {
		t.Errorf("SVID file updated_at %v, want a moment before %v", st.UpdatedAt, now)
	}
	if !st.Valid(now) {
		t.Errorf("SVID file: not Valid(%v): %+v", now, st)
	}
}

// waitSVIDFile polls the SVID file at path until it describes the SVID with serial (hex).
func waitSVIDFile(t *testing.T, path, serial string, timeout time.Duration) demo.SVIDStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := demo.ReadSVIDFile(path)
		if err == nil && st.Serial == serial {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("SVID file %s does not describe serial %s after %v: %+v, %v", path, serial, timeout, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// selectors names this process as the hint in the error messages does.
func selectors() string {
	sel := fmt.Sprintf("unix:uid:%d", os.Getuid())
	if u, err := user.LookupId(fmt.Sprint(os.Getuid())); err == nil && u.Username != "" {
		sel += ", unix:user:" + u.Username
	}
	return sel
}

// TestCommandLine covers what needs no SPIRE: help, flag checks, and a socket with no
// agent behind it.
func TestCommandLine(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != 0 || !strings.Contains(out, "serve ") || !strings.Contains(out, "call ") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "--socket", "x.sock", "--expect", openbaoID}, "omens-demo: --url https://HOST:PORT/hello is required\n"},
		{[]string{"call", "--socket", "x.sock", "--url", "https://127.0.0.1:1/hello", "--expect", "openbao"},
			"omens-demo: --expect \"openbao\": not a SPIFFE ID: scheme is missing or invalid\n"},
		{[]string{"call", "--socket", "", "--url", "https://127.0.0.1:1/hello", "--expect", openbaoID},
			"omens-demo: no Workload API socket given (--socket, or SPIFFE_ENDPOINT_SOCKET)\n"},
		{[]string{"serve", "--socket", "x.sock", "--listen", "127.0.0.1:0"}, "omens-demo: --allow SPIFFE_ID is required (once per allowed peer)\n"},
		{[]string{"call", "--socket", "x.sock", "--url", "https://127.0.0.1:1/hello", "--expect", openbaoID, "--every", "99ms"},
			"omens-demo: --every 99ms: below the minimum of 100ms\n"},
		{[]string{"call", "--socket", "x.sock", "--url", "https://127.0.0.1:1/hello", "--expect", openbaoID, "--every", "0s"},
			"omens-demo: --every 0s: below the minimum of 100ms\n"},
		{[]string{"call", "--socket", "x.sock", "--url", "https://127.0.0.1:1/hello", "--expect", openbaoID, "--every", "-1s"},
			"omens-demo: --every -1s: below the minimum of 100ms\n"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != 1 || errOut != tc.want {
			t.Errorf("%v: exit %d, stderr %q; want exit 1, %q", tc.args, code, errOut, tc.want)
		}
	}

	socket := filepath.Join(t.TempDir(), "none.sock")
	start := time.Now()
	code, _, errOut := run(t, "call", "--socket", socket, "--url", "https://127.0.0.1:1/hello", "--expect", openbaoID, "--timeout", "2s")
	want := "omens-demo: no SVID from the Workload API at " + socket + " within 2s: cannot reach it: is the SPIRE agent running there? (Unavailable: "
	if code != 1 || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "no such file or directory") {
		t.Errorf("no agent: exit %d, stderr %q; want exit 1, %q…", code, errOut, want)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("no agent: gave up after %v, want about 2s", d)
	}
}

// TestMutualTLS runs a SPIRE server with agents for the hosts spire and ca, gives this
// process the identity openbao under the one and step-ca under the other, and has the
// two talk mutual TLS. A third agent, with no entries, stands for a process that has no
// registration entry.
func TestMutualTLS(t *testing.T) {
	// Workload SVIDs live 20s, so the agent renews them every ten seconds or so.
	srv := spiretest.StartServer(t, spiretest.ServerConfig{DefaultX509SVIDTTL: "20s"})
	spire := spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: srv.JoinToken(t, spireHost), Name: "spire"})
	ca := spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: srv.JoinToken(t, caHost), Name: "ca"})
	nobody := spiretest.StartAgent(t, srv, spiretest.AgentConfig{JoinToken: srv.JoinToken(t, ""), Name: "nobody"})

	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	srv.CreateEntry(t, spireHost, openbaoID, uid)
	srv.CreateEntry(t, caHost, stepCAID, uid)
	for socket, id := range map[string]string{spire.WorkloadSocket: openbaoID, ca.WorkloadSocket: stepCAID} {
		if _, err := spiretest.WaitX509SVID(t, socket, id, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// serveOn starts a server on l as openbao on host spire that allows the given peers.
	serveOn := func(t *testing.T, l net.Listener, allow ...string) (url string, logs *syncBuffer) {
		t.Helper()
		src, err := demo.OpenSource(ctx, spire.WorkloadSocket, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ids []spiffeid.ID
		for _, a := range allow {
			ids = append(ids, spiffeid.RequireFromString(a))
		}
		logs = &syncBuffer{}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- demo.Serve(sctx, l, demo.ServerConfig{Source: src, Allow: ids, Log: log.New(logs, "", 0)})
		}()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			src.Close()
		})
		logs.waitFor(t, "serving "+openbaoID+" on https://", 5*time.Second)
		return "https://" + l.Addr().String() + "/hello", logs
	}
	// serve starts a server as openbao on a port of its own.
	serve := func(t *testing.T, allow ...string) (url string, logs *syncBuffer) {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return serveOn(t, l, allow...)
	}
	// callAs calls url as step-ca on host ca with src, expecting openbao.
	callAs := func(t *testing.T, src demo.Source, url string) *demo.Result {
		t.Helper()
		res, err := demo.Call(ctx, demo.CallConfig{Source: src, URL: url, Expect: spiffeid.RequireFromString(openbaoID)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// awaitRenewal calls url until the server presents an SVID other than first, and
	// returns it.
	awaitRenewal := func(t *testing.T, src demo.Source, url string, first *x509.Certificate) *x509.Certificate {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			time.Sleep(time.Second)
			got := callAs(t, src, url).ServerCert
			if got.SerialNumber.Cmp(first.SerialNumber) != 0 {
				if !got.NotAfter.After(first.NotAfter) {
					t.Errorf("renewed SVID expires %v, not after the first's %v", got.NotAfter, first.NotAfter)
				}
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("server still presents SVID serial %x after 45s", first.SerialNumber)
			}
		}
	}

	url, logs := serve(t, stepCAID)

	t.Run("step-ca calls openbao", func(t *testing.T) {
		code, out, errOut := run(t, "call", "--socket", ca.WorkloadSocket, "--url", url, "--expect", openbaoID, "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var hello demo.Hello
		if err := json.Unmarshal([]byte(out), &hello); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if hello.Server != openbaoID || hello.Client != stepCAID {
			t.Errorf("answer %+v, want server %s, client %s", hello, openbaoID, stepCAID)
		}
		if _, err := time.Parse(time.RFC3339Nano, hello.Time); err != nil {
			t.Errorf("time: %v", err)
		}
		logs.waitFor(t, "GET /hello from "+stepCAID+" (127.0.0.1:", 5*time.Second)

		code, out, errOut = run(t, "call", "--socket", ca.WorkloadSocket, "--url", url, "--expect", openbaoID)
		if code != 0 || !strings.HasPrefix(out, "server  "+openbaoID+"\nclient  "+stepCAID+"\ntime    ") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("client expects another server", func(t *testing.T) {
		const other = "spiffe://funlab.casa/not-openbao"
		code, out, errOut := run(t, "call", "--socket", ca.WorkloadSocket, "--url", url, "--expect", other)
		want := "omens-demo: refused the server at " + url + ": it is " + openbaoID + ", not the expected " + other + "\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", code, out, errOut, want)
		}
		logs.waitFor(t, "failed: the client refused this server (remote error: tls: bad certificate)", 5*time.Second)
	})

	t.Run("server allows another client", func(t *testing.T) {
		const other = "spiffe://funlab.casa/someone-else"
		url, logs := serve(t, other)
		code, out, errOut := run(t, "call", "--socket", ca.WorkloadSocket, "--url", url, "--expect", openbaoID)
		want := "omens-demo: the server at " + url + " refused this workload (" + stepCAID +
			") in the TLS handshake (remote error: tls: bad certificate): is this ID allowed there (serve --allow)?\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", code, out, errOut, want)
		}
		logs.waitFor(t, "in the TLS handshake: "+stepCAID+" is not allowed (allowed: "+other+")", 5*time.Second)
		if strings.Contains(logs.String(), "GET /hello") {
			t.Errorf("a refused client reached the handler:\n%s", logs)
		}
	})

	t.Run("no registration entry", func(t *testing.T) {
		want := "omens-demo: no SVID from the Workload API at " + nobody.WorkloadSocket +
			" within 3s: is there a registration entry for this process? (" + selectors() +
			"); the agent answered: PermissionDenied: no identity issued\n"
		for _, args := range [][]string{
			{"call", "--url", url, "--expect", openbaoID},
			{"serve", "--listen", "127.0.0.1:0", "--allow", stepCAID},
		} {
			start := time.Now()
			code, out, errOut := run(t, append(args, "--socket", nobody.WorkloadSocket, "--timeout", "3s")...)
			if code != 1 || out != "" || errOut != want {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1, stderr %q", args[0], code, out, errOut, want)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("%s: gave up after %v, want about 3s", args[0], d)
			}
		}
	})

	t.Run("server SVID renewed without restart", func(t *testing.T) {
		src, err := demo.OpenSource(ctx, ca.WorkloadSocket, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		awaitRenewal(t, src, url, callAs(t, src, url).ServerCert)
		logs.waitFor(t, "SVID renewed: "+openbaoID+" SVID serial ", 5*time.Second)
	})

	t.Run("serve --svid-file follows renewals", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "openbao.json")
		addr := freeAddr(t)
		_, logs, stop := start(t, "serve", "--socket", spire.WorkloadSocket, "--listen", addr, "--allow", stepCAID, "--svid-file", path)
		logs.waitFor(t, "serving "+openbaoID+" on https://", 15*time.Second)
		url := "https://" + addr + "/hello"
		src, err := demo.OpenSource(ctx, ca.WorkloadSocket, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()

		// The file describes the SVID the server presents.
		first := callAs(t, src, url).ServerCert
		st1 := waitSVIDFile(t, path, serialHex(first), 5*time.Second)
		checkStatus(t, st1, openbaoID, first)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o644 {
			t.Errorf("SVID file mode %v, want -rw-r--r--", fi.Mode())
		}

		// The agent renews the SVID: the file follows.
		renewed := awaitRenewal(t, src, url, first)
		st2 := waitSVIDFile(t, path, serialHex(renewed), 5*time.Second)
		checkStatus(t, st2, openbaoID, renewed)
		if !st2.UpdatedAt.After(st1.UpdatedAt) {
			t.Errorf("renewal: updated_at %v, not after the first write's %v", st2.UpdatedAt, st1.UpdatedAt)
		}
		logs.waitFor(t, "SVID renewed: "+openbaoID+" SVID serial "+serialHex(renewed), 5*time.Second)

		// Stopped, it leaves the file in place.
		if code := stop(); code != 0 {
			t.Errorf("serve: exit %d after the signal\n%s", code, logs)
		}
		if _, err := demo.ReadSVIDFile(path); err != nil {
			t.Errorf("after exit: %v", err)
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
			t.Errorf("SVID file directory holds %d files, want only the SVID file (no temporary files left)", len(entries))
		}
	})

	t.Run("call --svid-file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "step-ca.json")
		before, err := spiretest.FetchX509SVID(t, ca.WorkloadSocket, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run(t, "call", "--socket", ca.WorkloadSocket, "--url", url, "--expect", openbaoID, "--svid-file", path)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		after, err := spiretest.FetchX509SVID(t, ca.WorkloadSocket, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st, err := demo.ReadSVIDFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The agent may have renewed the SVID while call ran: it held one of the two.
		held := before.Certificates[0]
		if st.Serial == serialHex(after.Certificates[0]) {
			held = after.Certificates[0]
		}
		checkStatus(t, st, stepCAID, held)
	})

	t.Run("call --every", func(t *testing.T) {
		// Nothing listens at addr at first, so the calls fail; then openbao starts there and
		// they succeed.
		addr := freeAddr(t)
		url := "https://" + addr + "/hello"
		path := filepath.Join(t.TempDir(), "step-ca.json")
		out, errOut, stop := start(t, "call", "--socket", ca.WorkloadSocket, "--url", url, "--expect", openbaoID,
			"--every", "200ms", "--svid-file", path)
		out.waitCount(t, " failed: ", 2, 20*time.Second)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		serveOn(t, l, stepCAID)
		out.waitCount(t, " ok server ", 3, 10*time.Second)
		stopped := time.Now()
		if code := stop(); code != 0 {
			t.Errorf("exit %d after the signal; stderr:\n%s", code, errOut)
		}
		if d := time.Since(stopped); d > 2*time.Second {
			t.Errorf("stopped %v after the signal, want at once", d)
		}

		failed := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ failed: call ` + regexp.QuoteMeta(url+": dial tcp "+addr+": connect: connection refused") + `$`)
		ok := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ok server ` + regexp.QuoteMeta(openbaoID) + `$`)
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		var fails, oks int
		for _, line := range lines {
			switch {
			case failed.MatchString(line) && oks == 0:
				fails++
			case ok.MatchString(line):
				oks++
			default:
				t.Errorf("unexpected line %q in:\n%s", line, out)
			}
			if ts, _, _ := strings.Cut(line, " "); ts != "" {
				if _, err := time.Parse(time.RFC3339, ts); err != nil {
					t.Errorf("line %q: %v", line, err)
				}
			}
		}
		if fails < 2 || oks < 3 {
			t.Errorf("%d failed and %d ok lines, want at least 2 then 3:\n%s", fails, oks, out)
		}
		st, err := demo.ReadSVIDFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.SPIFFEID != stepCAID || st.PID != os.Getpid() {
			t.Errorf("SVID file: %+v, want %s held by pid %d", st, stepCAID, os.Getpid())
		}
	})
}

// svidStatus is a status as the writer makes one, at 10:00 on 29 November 2026.
func svidStatus() demo.SVIDStatus {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	return demo.SVIDStatus{
		SPIFFEID:  openbaoID,
		Serial:    "7c0f3e",
		NotBefore: t0,
		NotAfter:  t0.Add(time.Hour),
		PID:       4242,
		UpdatedAt: t0.Add(1500 * time.Millisecond),
	}
}

// sameStatus reports whether a and b say the same, whatever the time zones.
func sameStatus(a, b demo.SVIDStatus) bool {
	return a.SPIFFEID == b.SPIFFEID && a.Serial == b.Serial && a.PID == b.PID &&
		a.NotBefore.Equal(b.NotBefore) && a.NotAfter.Equal(b.NotAfter) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// TestSVIDFile writes an SVID file, reads it back, and replaces it as a renewal does.
func TestSVIDFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openbao.json")
	first := svidStatus()
	renewed := first
	renewed.Serial = "0a91d2"
	renewed.NotBefore = first.NotBefore.Add(30 * time.Minute)
	renewed.NotAfter = first.NotAfter.Add(30 * time.Minute)
	renewed.UpdatedAt = first.UpdatedAt.Add(30 * time.Minute)
	for _, want := range []demo.SVIDStatus{first, renewed} {
		if err := demo.WriteSVIDFile(path, want); err != nil {
			t.Fatal(err)
		}
		got, err := demo.ReadSVIDFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStatus(got, want) {
			t.Errorf("read %+v, want %+v", got, want)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o644 {
			t.Errorf("mode %v, want -rw-r--r--", fi.Mode())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("directory holds %d files, want only the SVID file (no temporary files left)", len(entries))
		}
	}

	// The file, as another program reads it.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	wantRaw := map[string]any{
		"spiffe_id":  openbaoID,
		"serial":     "0a91d2",
		"not_before": "2026-11-29T10:30:00Z",
		"not_after":  "2026-11-29T11:30:00Z",
		"pid":        4242.0,
		"updated_at": "2026-11-29T10:30:01.5Z",
	}
	if fmt.Sprint(raw) != fmt.Sprint(wantRaw) {
		t.Errorf("file holds %v, want %v", raw, wantRaw)
	}

	// What ReadSVIDFile would refuse is not written, and the file stays as it was.
	bad := renewed
	bad.SPIFFEID = ""
	want := "demo: SVID file " + path + ": spiffe_id is missing"
	if err := demo.WriteSVIDFile(path, bad); err == nil || err.Error() != want {
		t.Errorf("WriteSVIDFile without spiffe_id: %v, want %s", err, want)
	}
	if got, err := demo.ReadSVIDFile(path); err != nil || !sameStatus(got, renewed) {
		t.Errorf("after a refused write: %+v, %v; want %+v", got, err, renewed)
	}

	// No directory to write in.
	missing := filepath.Join(dir, "none", "openbao.json")
	err = demo.WriteSVIDFile(missing, first)
	if err == nil || !strings.HasPrefix(err.Error(), "demo: write SVID file "+missing+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteSVIDFile in a missing directory: %v", err)
	}
}

func TestSVIDStatusValid(t *testing.T) {
	s := svidStatus()
	for _, tc := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{"before not_before", s.NotBefore.Add(-time.Second), false},
		{"at not_before", s.NotBefore, true},
		{"within", s.NotBefore.Add(time.Minute), true},
		{"at not_after", s.NotAfter, true},
		{"after not_after", s.NotAfter.Add(time.Second), false},
	} {
		if got := s.Valid(tc.now); got != tc.want {
			t.Errorf("%s: Valid(%v) = %v, want %v", tc.name, tc.now, got, tc.want)
		}
	}
}

// TestReadSVIDFileRefuses covers each check ReadSVIDFile makes on what it reads.
func TestReadSVIDFileRefuses(t *testing.T) {
	dir := t.TempDir()
	good, err := json.Marshal(svidStatus())
	if err != nil {
		t.Fatal(err)
	}
	// edit returns the good file with key set to v, or removed when v is nil.
	edit := func(key string, v any) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"oversized", string(good) + strings.Repeat(" ", demo.MaxSVIDFileSize), "larger than 65536 bytes"},
		{"empty", "", "malformed JSON: unexpected end of JSON input"},
		{"truncated", string(good[:len(good)/2]), "malformed JSON: unexpected end of JSON input"},
		{"not JSON", "spiffe_id: " + openbaoID, "malformed JSON: invalid character 's' looking for beginning of value"},
		{"trailing data", string(good) + "{}", "malformed JSON: invalid character '{' after top-level value"},
		{"string", `"` + openbaoID + `"`, "malformed JSON: a JSON string, not an object"},
		{"array", "[]", "malformed JSON: a JSON array, not an object"},
		{"pid a string", edit("pid", "4242"), "pid is a JSON string, want int"},
		{"pid too large", strings.Replace(string(good), `"pid":4242`, `"pid":1e99`, 1), "pid is a JSON number 1e99, want int"},
		{"spiffe_id a number", edit("spiffe_id", 7), "spiffe_id is a JSON number, want string"},
		{"not_after not RFC 3339", edit("not_after", "tomorrow"), `not_after "tomorrow" is not an RFC 3339 time`},
		{"updated_at not RFC 3339", edit("updated_at", "2026-11-29 10:00:00"), `updated_at "2026-11-29 10:00:00" is not an RFC 3339 time`},
		{"null", "null", "spiffe_id is missing"},
		{"no spiffe_id", edit("spiffe_id", nil), "spiffe_id is missing"},
		{"empty spiffe_id", edit("spiffe_id", ""), "spiffe_id is missing"},
		{"spiffe_id not a SPIFFE ID", edit("spiffe_id", "openbao"), `spiffe_id "openbao" is not a SPIFFE ID: scheme is missing or invalid`},
		{"no serial", edit("serial", nil), "serial is missing"},
		{"serial not hex", edit("serial", "zz"), `serial "zz" is not hex: encoding/hex: invalid byte: U+007A 'z'`},
		{"no not_before", edit("not_before", nil), "not_before is missing"},
		{"no not_after", edit("not_after", nil), "not_after is missing"},
		{"not_after before not_before", edit("not_after", "2026-11-29T09:00:00Z"),
			"not_after 2026-11-29T09:00:00Z is before not_before 2026-11-29T10:00:00Z"},
		{"no pid", edit("pid", nil), "pid 0 is not a process ID"},
		{"negative pid", edit("pid", -1), "pid -1 is not a process ID"},
		{"no updated_at", edit("updated_at", nil), "updated_at is missing"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		want := "demo: SVID file " + path + ": " + tc.want
		if _, err := demo.ReadSVIDFile(path); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", tc.name, err, want)
		}
	}

	missing := filepath.Join(dir, "none.json")
	want := "demo: SVID file: lstat " + missing + ": no such file or directory"
	if _, err := demo.ReadSVIDFile(missing); err == nil || err.Error() != want || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want %s (fs.ErrNotExist)", err, want)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf("demo: SVID file %s: not a regular file (mode %v)", dir, fi.Mode())
	if _, err := demo.ReadSVIDFile(dir); err == nil || err.Error() != want {
		t.Errorf("directory: %v, want %s", err, want)
	}

	// A symbolic link is refused, even to a good file: its writer may not read the target.
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(writeTemp(t, string(good)), link); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf("demo: SVID file %s: not a regular file (mode %v)", link, fi.Mode())
	if _, err := demo.ReadSVIDFile(link); err == nil || err.Error() != want {
		t.Errorf("symbolic link: %v, want %s", err, want)
	}

	// Fields a later writer may add are ignored.
	if _, err := demo.ReadSVIDFile(writeTemp(t, edit("agent", spireHost))); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}

// writeTemp writes content to a file of its own and returns its path.
func writeTemp(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "svid.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// FuzzReadSVIDFile checks that ReadSVIDFile never panics, and that what it accepts
// passes its checks and survives a write and a read unchanged.
func FuzzReadSVIDFile(f *testing.F) {
	good, err := json.Marshal(svidStatus())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(good), "", "null", "{}", "[]", `{"pid":1e99}`, `{"spiffe_id":"spiffe://x/y","serial":"0"}`,
		`{"not_before":"0000-01-01T00:00:00Z","not_after":"9999-12-31T23:59:59+23:59"}`,
		strings.Repeat("[", 10000),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := writeTemp(t, string(b))
		st, err := demo.ReadSVIDFile(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		if _, err := spiffeid.FromString(st.SPIFFEID); err != nil {
			t.Errorf("accepted spiffe_id %q: %v", st.SPIFFEID, err)
		}
		if st.PID <= 0 || st.NotAfter.Before(st.NotBefore) || st.UpdatedAt.IsZero() {
			t.Errorf("accepted %+v", st)
		}
		if err := demo.WriteSVIDFile(path, st); err != nil {
			t.Fatalf("accepted %+v, cannot write it back: %v", st, err)
		}
		again, err := demo.ReadSVIDFile(path)
		if err != nil || !sameStatus(again, st) {
			t.Errorf("written back and read: %+v, %v; want %+v", again, err, st)
		}
	})
}
