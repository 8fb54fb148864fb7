// Package svidhelper gives X.509-SVIDs to services that read their certificate from files
// (nginx, OpenBao, step-ca): `omens svid helper --config FILE` watches the SPIFFE Workload
// API, writes the SVID's certificate chain, its private key and the trust bundle as PEM
// files, and at every rotation signals the service (renew_signal to the pid in
// pid_file_name) or starts, signals or restarts its own child (cmd, cmd_args).
//
// The configuration file has spiffe-helper's keys, with its meanings and defaults
// (daemon_mode true; daemon_mode = false writes the files once and returns), so that a
// configuration moves between the two tools unchanged; spiffe-helper keys this package
// does not implement (JWT-SVIDs, file modes, hints) are refused by name rather than
// ignored. It is outside bytes: capped by limits.HelperConfig before the HCL parser runs.
//
// Each file is replaced atomically (a temporary file in cert_dir, synced, renamed over
// the old one), so a service that reloads reads the old file or the new, never a part;
// the key file is created 0600 and never has another mode, whatever an older file had.
// Every rotation is one log line: SPIFFE ID, serial, expiry and what was signalled.
//
// Render (render.go) writes, for a service of the plan, the helper configuration and the
// OpenBao listener block that reads the files it writes.
package svidhelper

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/internal/statefile"
)

// File modes: the certificate chain and the bundle are public, the key is not.
const (
	certMode = 0o644
	keyMode  = 0o600
)

// stopGrace is how long a cmd child has to exit after SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// Options are what Run needs besides the configuration.
type Options struct {
	// Log receives one line per rotation and one per problem; nil discards.
	Log *slog.Logger
	// Env looks up environment variables (SPIFFE_ENDPOINT_SOCKET); nil means os.Getenv.
	Env func(string) string
	// Stdout and Stderr are cmd's; nil means the helper's own.
	Stdout, Stderr *os.File
}

// Run fetches the X.509 context from the Workload API and writes the files; with
// DaemonMode it keeps doing so at every rotation until ctx ends (then it stops its cmd
// child, if any, and returns nil), otherwise it returns after the first write. Errors
// from the Workload API are logged and retried (an agent answers PermissionDenied until
// an entry names the caller); a file that cannot be written ends Run with an error.
func Run(ctx context.Context, cfg *Config, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Env == nil {
		opts.Env = os.Getenv
	}
	dir := cfg.CertDir
	if dir == "" {
		dir = "."
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("svidhelper: cert_dir: %w: create it (the helper writes into it, it does not create it)", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("svidhelper: cert_dir %s is not a directory: name a directory", dir)
	}
	for _, w := range cfg.Warnings {
		opts.Log.Warn(w)
	}
	h := &helper{cfg: cfg, opts: opts, addr: cfg.Address(opts.Env)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.ctx, h.stop = ctx, cancel
	err := workloadapi.WatchX509Context(ctx, h, workloadapi.WithAddr(h.addr))
	h.stopChild()
	if h.err != nil {
		return h.err
	}
	if !cfg.DaemonMode && h.written {
		return nil
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("svidhelper: workload API %s: %w", h.addr, err)
	}
	if !h.written {
		if h.lastErr != nil {
			return fmt.Errorf("svidhelper: stopped before any SVID came from the Workload API at %s; last error: %v", h.addr, h.lastErr)
		}
		return fmt.Errorf("svidhelper: stopped before any SVID came from the Workload API at %s", h.addr)
	}
	return nil
}

// helper is the X509ContextWatcher of one Run.
type helper struct {
	cfg  *Config
	opts Options
	addr string
	ctx  context.Context
	stop context.CancelFunc

	written bool   // files written at least once
	serial  string // of the leaf last written
	bundle  []byte // the bundle PEM last written
	err     error  // what ended Run
	lastErr error  // the last Workload API error
	child   *child
}

// OnX509ContextUpdate writes the files when the SVID or the bundle changed, then
// signals or starts the service.
func (h *helper) OnX509ContextUpdate(c *workloadapi.X509Context) {
	svid := c.DefaultSVID()
	if svid == nil || len(svid.Certificates) == 0 {
		h.opts.Log.Warn("the Workload API sent no X.509-SVID; waiting for the next update", "agent_address", h.addr)
		return
	}
	bundle, err := c.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		h.opts.Log.Warn("the Workload API sent no bundle for the SVID's trust domain; waiting for the next update", "spiffe_id", svid.ID.String(), "error", err)
		return
	}
	bundlePEM := encodeCerts(bundle.X509Authorities())
	leaf := svid.Certificates[0]
	serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
	if h.written && serial == h.serial && bytes.Equal(bundlePEM, h.bundle) {
		return
	}
	if err := h.write(svid, bundlePEM); err != nil {
		h.err = err
		h.stop()
		return
	}
	first := !h.written
	h.written, h.serial, h.bundle = true, serial, bundlePEM
	attrs := []any{"spiffe_id", svid.ID.String(), "serial", serial,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	if !h.cfg.DaemonMode {
		h.opts.Log.Info("SVID written", attrs...)
		h.stop()
		return
	}
	attrs = append(attrs, h.notify(first)...)
	if first {
		h.opts.Log.Info("SVID written", attrs...)
	} else {
		h.opts.Log.Info("SVID rotated", attrs...)
	}
}

// OnX509ContextWatchError logs a Workload API error; go-spiffe retries with backoff.
func (h *helper) OnX509ContextWatchError(err error) {
	if h.ctx.Err() != nil {
		return
	}
	h.lastErr = err
	h.opts.Log.Warn("no X.509-SVID from the Workload API yet; retrying: check that the agent runs at agent_address and that an entry names this process",
		"agent_address", h.addr, "uid", os.Getuid(), "error", err)
}

// write replaces the three files: the key first, so that a certificate on disk never
// names a key that is not there yet for a service that reads without being signalled.
func (h *helper) write(svid *x509svid.SVID, bundlePEM []byte) error {
	certPath, keyPath, bundlePath := h.cfg.Paths()
	der, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return fmt.Errorf("svidhelper: SVID key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{keyPath, keyPEM, keyMode},
		{certPath, encodeCerts(svid.Certificates), certMode},
		{bundlePath, bundlePEM, certMode},
	} {
		if err := statefile.WriteAtomicPerm(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("svidhelper: write %s: %w: check that cert_dir is writable by uid %d", f.path, err, os.Getuid())
		}
	}
	return nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// notify signals the process of pid_file_name and starts, signals or restarts cmd, and
// returns what it did as log attributes. A failure is logged and retried at the next
// rotation, as spiffe-helper does: the files are in place whatever happens to the
// service.
func (h *helper) notify(first bool) []any {
	var attrs []any
	if h.cfg.PIDFileName != "" {
		pid, err := ReadPIDFile(h.cfg.PIDFileName)
		switch {
		case err != nil && first && errors.Is(err, os.ErrNotExist):
			attrs = append(attrs, "signal", "none (no pid file yet: the service starts with these files)")
		case err != nil:
			h.opts.Log.Warn("not signalled: fix the pid file, or start the service with these files", "pid_file_name", h.cfg.PIDFileName, "error", err)
			attrs = append(attrs, "signal", "failed")
		default:
			if err := syscall.Kill(pid, h.cfg.Signal); err != nil {
				h.opts.Log.Warn("not signalled: is the service running?", "pid_file_name", h.cfg.PIDFileName, "pid", pid, "error", err)
				attrs = append(attrs, "signal", "failed")
			} else {
				attrs = append(attrs, "signal", h.cfg.RenewSignal, "pid", pid)
			}
		}
	}
	if h.cfg.Cmd != "" {
		attrs = append(attrs, "cmd", h.cmd(first))
	}
	return attrs
}

// cmd starts cmd at the first write; later it signals it with renew_signal while it
// runs, restarts it (SIGTERM, then start) without renew_signal, and starts it again
// when it has exited.
func (h *helper) cmd(first bool) string {
	if !first && h.child != nil && h.child.running() {
		if h.cfg.Signal != 0 {
			if err := h.child.p.Process.Signal(h.cfg.Signal); err != nil {
				h.opts.Log.Warn("cmd not signalled", "cmd", h.cfg.Cmd, "pid", h.child.pid(), "error", err)
				return "failed"
			}
			return fmt.Sprintf("%s to pid %d", h.cfg.RenewSignal, h.child.pid())
		}
		old := h.child.pid()
		h.stopChild()
		if err := h.startChild(); err != nil {
			h.opts.Log.Error("cmd not restarted", "cmd", h.cfg.Cmd, "error", err)
			return "failed"
		}
		return fmt.Sprintf("restarted (pid %d, was %d)", h.child.pid(), old)
	}
	verb := "started"
	if !first {
		verb = "started again (it had exited)"
	}
	if err := h.startChild(); err != nil {
		h.opts.Log.Error("cmd not started: check cmd and cmd_args", "cmd", h.cfg.Cmd, "error", err)
		return "failed"
	}
	return fmt.Sprintf("%s (pid %d)", verb, h.child.pid())
}

// child is the cmd process.
type child struct {
	p    *exec.Cmd
	done chan struct{}
}

func (c *child) pid() int { return c.p.Process.Pid }

func (c *child) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (h *helper) startChild() error {
	cmd := exec.Command(h.cfg.Cmd, h.cfg.Args...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if h.opts.Stdout != nil {
		cmd.Stdout = h.opts.Stdout
	}
	if h.opts.Stderr != nil {
		cmd.Stderr = h.opts.Stderr
	}
	// The child ends with the helper (a process group of its own, killed if the helper
	// dies), as a test's engines do.
	proc.Own(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	c := &child{p: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	h.child = c
	return nil
}

// stopChild ends the cmd child: SIGTERM, then SIGKILL after stopGrace.
func (h *helper) stopChild() {
	c := h.child
	if c == nil || !c.running() {
		return
	}
	_ = c.p.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		_ = c.p.Process.Kill()
		<-c.done
	}
}

// ReadPIDFile reads the pid a service wrote to path (nginx's pid directive, OpenBao's
// pid_file): a regular file of at most limits.PIDFile bytes holding one positive
// decimal number and optional white space. 0 and negative numbers, which kill(2) takes
// for process groups, are refused.
func ReadPIDFile(path string) (int, error) {
	b, err := limits.ReadFile(path, limits.PIDFile)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != s {
		if len(s) > 32 {
			s = s[:32] + "…"
		}
		return 0, fmt.Errorf("svidhelper: pid file %s holds %q, not a process ID", path, s)
	}
	return pid, nil
}
