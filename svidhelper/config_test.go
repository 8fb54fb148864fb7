package svidhelper_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"omens.dev/omens/internal/cli"
	"omens.dev/omens/internal/limits"
	"omens.dev/omens/svidhelper"
)

const goodConfig = `
agent_address = "/run/spire/agent/public/api.sock"
cert_dir = "/etc/openbao/svid"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
renew_signal = "SIGHUP"
pid_file_name = "/run/openbao/openbao.pid"
`

func TestParse(t *testing.T) {
	c, err := svidhelper.Parse("helper.conf", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DaemonMode || c.Signal != syscall.SIGHUP || c.PIDFileName != "/run/openbao/openbao.pid" || c.CertDir != "/etc/openbao/svid" {
		t.Fatalf("parsed %+v", c)
	}
	if got := c.Address(nil); got != "unix:///run/spire/agent/public/api.sock" {
		t.Errorf("Address %s", got)
	}
	cert, key, bundle := c.Paths()
	if cert != "/etc/openbao/svid/svid.pem" || key != "/etc/openbao/svid/svid_key.pem" || bundle != "/etc/openbao/svid/svid_bundle.pem" {
		t.Errorf("Paths %s %s %s", cert, key, bundle)
	}

	// spiffe-helper's defaults: SPIFFE_ENDPOINT_SOCKET, then its default socket.
	c, err = svidhelper.Parse("h", []byte(`svid_file_name = "a"
svid_key_file_name = "b"
svid_bundle_file_name = "c"
cmd = "/usr/bin/ghostunnel"
cmd_args = "server --listen \"a b\" \"say \"\"hi\"\"\""
`))
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "SPIFFE_ENDPOINT_SOCKET" {
			return "unix:///run/x.sock"
		}
		return ""
	}
	if got := c.Address(env); got != "unix:///run/x.sock" {
		t.Errorf("Address with SPIFFE_ENDPOINT_SOCKET %s", got)
	}
	if got := c.Address(func(string) string { return "" }); got != "unix://"+svidhelper.DefaultAgentAddress {
		t.Errorf("default Address %s", got)
	}
	if want := []string{"server", "--listen", "a b", `say "hi"`}; !slices.Equal(c.Args, want) {
		t.Errorf("Args %q, want %q", c.Args, want)
	}
	if cert, _, _ := c.Paths(); cert != "a" {
		t.Errorf("cert path without cert_dir %s", cert)
	}

	c, err = svidhelper.Parse("h", []byte(`daemon_mode = false
svid_file_name = "a"
svid_key_file_name = "b"
svid_bundle_file_name = "c"
cmd = "x"
renew_signal = "SIGUSR1"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DaemonMode || len(c.Warnings) != 2 {
		t.Fatalf("daemon_mode=false: %+v", c)
	}
}

// TestParseRefuses gives each check its exact error.
func TestParseRefuses(t *testing.T) {
	const files = "svid_file_name = \"svid.pem\"\nsvid_key_file_name = \"key.pem\"\nsvid_bundle_file_name = \"bundle.pem\"\n"
	for _, tc := range []struct {
		name, src, want string
	}{
		{"missing files", `cert_dir = "/x"`,
			"svidhelper: h: svid_file_name: missing: name the file in cert_dir, such as \"svid.pem\"\n" +
				"svidhelper: h: svid_key_file_name: missing: name the file in cert_dir, such as \"svid_key.pem\"\n" +
				"svidhelper: h: svid_bundle_file_name: missing: name the file in cert_dir, such as \"svid_bundle.pem\""},
		{"unknown key", files + `certdir = "/x"`,
			`svidhelper: h:4: unknown key "certdir" (want one of agent_address, cert_dir, svid_file_name, svid_key_file_name, svid_bundle_file_name, renew_signal, cmd, cmd_args, pid_file_name, daemon_mode)`},
		{"spiffe-helper key not supported", files + `jwt_svids = [{jwt_audience="a", jwt_svid_file_name="t"}]`,
			"svidhelper: h:4: jwt_svids: spiffe-helper's key is not supported by omens svid helper, which does not do JWT-SVIDs: remove it"},
		{"key file mode", files + `key_file_mode = 0444`,
			"svidhelper: h:4: key_file_mode: spiffe-helper's key is not supported by omens svid helper, which does not do file modes (certificate and bundle 0644, key 0600): remove it"},
		{"twice", files + "cert_dir = \"/a\"\ncert_dir = \"/b\"",
			"svidhelper: h:5: cert_dir: set twice (first on line 4): keep one"},
		{"not a string", files + `cert_dir = 3`, "svidhelper: h:4: cert_dir: want a quoted string"},
		{"daemon_mode not a bool", files + `daemon_mode = "false"`, "svidhelper: h:4: daemon_mode: want true or false"},
		{"a block", files + `agent_address "x" { }`, "svidhelper: h:4: agent_address: a block, want key = value"},
		{"file name with a slash", "svid_file_name = \"../svid.pem\"\nsvid_key_file_name = \"k\"\nsvid_bundle_file_name = \"b\"",
			`svidhelper: h:1: svid_file_name: "../svid.pem" is not a file name: give a name without "/" and put the directory in cert_dir`},
		{"key file is the certificate", "svid_file_name = \"svid.pem\"\nsvid_key_file_name = \"svid.pem\"\nsvid_bundle_file_name = \"b\"",
			`svidhelper: h:2: svid_key_file_name: "svid.pem" is also svid_file_name: give each file its own name`},
		{"bad signal", files + `renew_signal = "HUP"`,
			`svidhelper: h:4: renew_signal: "HUP" is not a signal omens sends (want one of SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH)`},
		{"pid file without signal", files + `pid_file_name = "/run/nginx.pid"`,
			`svidhelper: h:4: pid_file_name: set without renew_signal: name the signal that makes the process reload its certificates, such as renew_signal = "SIGHUP"`},
		{"pid file without daemon", files + "renew_signal = \"SIGHUP\"\npid_file_name = \"/run/nginx.pid\"\ndaemon_mode = false",
			"svidhelper: h:5: pid_file_name: set with daemon_mode = false, which writes the files once and signals nothing: remove one of them"},
		{"cmd_args without cmd", files + `cmd_args = "-x"`,
			"svidhelper: h:4: cmd_args: set without cmd: name the program in cmd, or remove cmd_args"},
		{"unclosed quote", files + "cmd = \"sh\"\ncmd_args = \"-c \\\"echo\"",
			`svidhelper: h:5: cmd_args: a double quote is not closed: close it, or write "" for a literal quote inside quotes`},
		{"relative agent address", files + `agent_address = "agent.sock"`,
			`svidhelper: h:4: agent_address: "agent.sock" is neither an absolute socket path nor a unix:// or tcp:// address: give the agent's socket path, such as "/tmp/spire-agent/public/api.sock"`},
		{"bad agent URL", files + `agent_address = "http://agent"`,
			`svidhelper: h:4: agent_address: "http://agent": workload endpoint socket URI must have a "tcp" or "unix" scheme: give the agent's socket path, such as "/tmp/spire-agent/public/api.sock"`},
		{"not HCL", `cert_dir = "`, "svidhelper: h:1:13: literal not terminated"},
		{"too deep", strings.Repeat("a { ", 9) + strings.Repeat("} ", 9),
			"svidhelper: limits: h:1: nesting deeper than the 8-level limit for an SVID helper configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svidhelper.Parse("h", []byte(tc.src))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestLoadRefusesOversize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "helper.conf")
	if err := os.WriteFile(p, []byte(strings.Repeat("#", int(limits.HelperConfig.MaxBytes)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := svidhelper.Load(p)
	if !errors.Is(err, limits.ErrTooLarge) {
		t.Fatalf("got %v, want a size refusal", err)
	}
}

func TestOverride(t *testing.T) {
	c, err := svidhelper.Parse("h", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	c.DaemonMode = false
	_, err = svidhelper.Override("h", c)
	if want := "svidhelper: h: pid_file_name: set with daemon_mode = false, which writes the files once and signals nothing: remove one of them"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b ", []string{"a", "b"}},
		{`"this is one argument"`, []string{"this is one argument"}},
		{`"one "" quote"`, []string{`one " quote`}},
		{`-c 'echo hello'`, []string{"-c", "'echo", "hello'"}},
		{`""`, []string{""}},
		{`a"b c"d`, []string{"ab cd"}},
	} {
		got, err := svidhelper.SplitArgs(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"4242\n", ""},
		{"0\n", `holds "0", not a process ID`},
		{"-1", `holds "-1", not a process ID`},
		{"12 34", `holds "12 34", not a process ID`},
		{"+12", `holds "+12", not a process ID`},
	} {
		p := filepath.Join(dir, "pid")
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		pid, err := svidhelper.ReadPIDFile(p)
		if tc.want == "" {
			if err != nil || pid != 4242 {
				t.Errorf("%q: %d, %v", tc.content, pid, err)
			}
			continue
		}
		if want := "svidhelper: pid file " + p + " " + tc.want; err == nil || err.Error() != want {
			t.Errorf("%q: got %v, want %s", tc.content, err, want)
		}
	}
}

// FuzzParseConfig feeds the configuration parser hostile bytes: it must return a
// configuration or an error, never panic, and a configuration it returns must be
// consistent.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("svid_file_name = \"a\"\nsvid_key_file_name = \"b\"\nsvid_bundle_file_name = \"c\"\ncmd = \"x\"\ncmd_args = \"\\\"a \"\"b\\\" c\"\n"))
	f.Add([]byte(`cert_dir = "\u0024{x}"`))
	f.Add([]byte(`a = [{b = {c = 1}}]`))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := svidhelper.Parse("fuzz", src)
		if err != nil {
			return
		}
		if c.SVIDFileName == "" || c.SVIDKeyFileName == "" || c.SVIDBundleFileName == "" {
			t.Fatalf("accepted without file names: %+v", c)
		}
		if c.PIDFileName != "" && c.Signal == 0 {
			t.Fatalf("accepted pid_file_name without a signal: %+v", c)
		}
	})
}

// TestRunRefuses: Run names what to do when cert_dir is missing, and which agent it
// waited for when it is stopped before any SVID came.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	c, err := svidhelper.Parse("h", []byte(`cert_dir = "`+dir+`/missing"
agent_address = "`+dir+`/agent.sock"
svid_file_name = "a"
svid_key_file_name = "b"
svid_bundle_file_name = "c"
`))
	if err != nil {
		t.Fatal(err)
	}
	err = svidhelper.Run(context.Background(), c, svidhelper.Options{})
	if want := "svidhelper: cert_dir: stat " + dir + "/missing: no such file or directory: create it (the helper writes into it, it does not create it)"; err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	c.CertDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = svidhelper.Run(ctx, c, svidhelper.Options{})
	if want := "svidhelper: stopped before any SVID came from the Workload API at unix://" + dir + "/agent.sock; last error: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got  %v\nwant %s…", err, want)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files written without an SVID: %v", entries)
	}
}

// TestCLIRefusesBadConfig: `omens svid helper` exits 1 with the configuration's errors.
func TestCLIRefusesBadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "helper.conf")
	if err := os.WriteFile(p, []byte("svid_file_name = \"svid.pem\"\nsvid_key_file_name = \"key.pem\"\nsvid_bundle_file_name = \"bundle.pem\"\nrenew_signal = \"SIGHUP\"\npid_file_name = \"nginx.pid\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := cli.Main([]string{"svid", "helper", "--config", p, "--daemon-mode=false"}, &stdout, &stderr)
	want := "omens: svidhelper: " + p + ": pid_file_name: set with daemon_mode = false, which writes the files once and signals nothing: remove one of them\n"
	if code != 1 || stderr.String() != want {
		t.Fatalf("exit %d, stderr %q; want 1, %q", code, stderr.String(), want)
	}
	code = cli.Main([]string{"svid", "helper"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `required flag(s) "config" not set`) {
		t.Fatalf("without --config: exit %d, %s", code, stderr.String())
	}
}

// FuzzReadPIDFile: a pid file (written by the service, or by whoever can write its
// directory) gives a positive process ID or an error, never a panic, a group (0 or
// negative) or a number other than the one written.
func FuzzReadPIDFile(f *testing.F) {
	for _, s := range []string{"1234\n", "0", "-1", " 42 ", "12a", "99999999999999999999", ""} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "pid")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		pid, err := svidhelper.ReadPIDFile(p)
		if err != nil {
			return
		}
		if pid <= 0 || strconv.Itoa(pid) != strings.TrimSpace(string(b)) {
			t.Fatalf("pid file %q read as %d", b, pid)
		}
	})
}
