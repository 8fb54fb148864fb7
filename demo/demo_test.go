package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"omens.dev/omens/demo"
	"omens.dev/omens/internal/spiretest"
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

	// serve starts a server as openbao on host spire that allows the given peers.
	serve := func(t *testing.T, allow ...string) (url string, logs *syncBuffer) {
		t.Helper()
		src, err := demo.OpenSource(ctx, spire.WorkloadSocket, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ids []spiffeid.ID
		for _, a := range allow {
			ids = append(ids, spiffeid.RequireFromString(a))
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
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
		call := func() *demo.Result {
			t.Helper()
			res, err := demo.Call(ctx, demo.CallConfig{Source: src, URL: url, Expect: spiffeid.RequireFromString(openbaoID)})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		first := call().ServerCert
		deadline := time.Now().Add(45 * time.Second)
		for {
			time.Sleep(time.Second)
			got := call().ServerCert
			if got.SerialNumber.Cmp(first.SerialNumber) != 0 {
				if !got.NotAfter.After(first.NotAfter) {
					t.Errorf("renewed SVID expires %v, not after the first's %v", got.NotAfter, first.NotAfter)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("server still presents SVID serial %x after 45s", first.SerialNumber)
			}
		}
		logs.waitFor(t, "SVID renewed: "+openbaoID+" SVID serial ", 5*time.Second)
	})
}
