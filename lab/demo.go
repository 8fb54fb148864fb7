package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"omens.dev/omens/demo"
)

// The demo workloads: a stand-in for OpenBao on host spire, serving mTLS to step-ca only,
// and a stand-in for step-ca on host ca calling it every few seconds; each gets its SVID
// from its host's agent and authorizes the other by SPIFFE ID.
const (
	openbaoID = "spiffe://" + TrustDomain + "/openbao"
	stepCAID  = "spiffe://" + TrustDomain + "/step-ca"
)

// Workload is one of the Tower's workloads as the lab runs it.
type Workload struct {
	Name     string // also the name of its lab process, with "-demo"
	Host     string
	User     string // the plan's unix user, selector unix:user:USER
	SPIFFEID string
}

// The plan's two workloads.
var (
	openbao = Workload{Name: "openbao", Host: "spire", User: "openbao", SPIFFEID: openbaoID}
	stepCA  = Workload{Name: "step-ca", Host: "ca", User: "step", SPIFFEID: stepCAID}
	// Workloads are the plan's workloads, in the order the lab starts them.
	Workloads = []Workload{openbao, stepCA}
)

func (w Workload) process(dir string) process { return process{name: w.Name + "-demo", dir: dir} }

// callInterval is how often step-ca's stand-in calls OpenBao's.
const callInterval = 10 * time.Second

// asUsers reports whether the workloads run as the plan's users (the lab runs as root and
// creates them); otherwise they run as the lab's own user, registered by uid.
func asUsers() bool { return os.Geteuid() == 0 }

// RuntimeDir holds what the workloads must reach: the agents' Workload API sockets, their
// SVID files and (as root) a copy of omens-demo. As root the workloads run as users of
// their own, which may not enter the lab directory (under /root by default), so it is
// /run/omens/lab-ID, ID from the lab directory's path; otherwise DIR/public.
func (l *Lab) RuntimeDir() string {
	if !asUsers() {
		return l.path("public")
	}
	abs, err := filepath.Abs(l.Dir)
	if err != nil {
		abs = l.Dir
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join("/run/omens", "lab-"+hex.EncodeToString(sum[:4]))
}

// AgentSocket is host's Workload API socket.
func (l *Lab) AgentSocket(host string) string {
	return filepath.Join(l.RuntimeDir(), host, "api.sock")
}

// SVIDFile is where workload w writes the SVID it holds (omens-demo --svid-file).
func (l *Lab) SVIDFile(w Workload) string {
	return filepath.Join(l.RuntimeDir(), "workloads", w.Name, "svid.json")
}

// selector is what w is registered by: unix:user:USER as the plan says when the lab runs
// as root, else the lab user's uid.
func (w Workload) selector() string {
	if asUsers() {
		return "unix:user:" + w.User
	}
	return fmt.Sprintf("unix:uid:%d", os.Getuid())
}

// ensureUsers creates, as root, the system users the plan's unix:user selectors name.
func (l *Lab) ensureUsers() error {
	if !asUsers() {
		l.progress("not root: the demo workloads run as uid %d and are registered by unix:uid:%d (as root the lab creates the plan's users openbao and step for unix:user selectors)", os.Getuid(), os.Getuid())
		return nil
	}
	for _, w := range Workloads {
		if _, err := user.Lookup(w.User); err == nil {
			continue
		}
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", "--comment", "omens lab workload "+w.Name, w.User).CombinedOutput()
		if err != nil {
			return fmt.Errorf("lab: useradd %s: %v: %s", w.User, err, strings.TrimSpace(string(out)))
		}
		l.progress("created system user %s for the selector unix:user:%s", w.User, w.User)
	}
	return nil
}

// credential is the user w runs as: nil (the lab's own) unless the lab runs as root.
func (w Workload) credential() (*syscall.Credential, error) {
	if !asUsers() {
		return nil, nil
	}
	u, err := user.Lookup(w.User)
	if err != nil {
		return nil, fmt.Errorf("lab: %w (omens lab up creates it)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// demoBinary is the omens-demo the workloads run: beside omens, or as root a copy in the
// runtime directory that the workloads' users may execute.
func (l *Lab) demoBinary() (string, error) {
	src := l.sibling("omens-demo")
	if !asUsers() {
		return src, nil
	}
	dst := filepath.Join(l.RuntimeDir(), "bin", "omens-demo")
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("lab: %w (make build puts it beside omens)", err)
	}
	if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, b) {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp, dst)
}

// prepareRuntime makes the runtime directory: one world-readable directory per host for
// its Workload API socket, and one per workload, owned by its user, for its SVID file.
func (l *Lab) prepareRuntime() error {
	if err := os.MkdirAll(l.RuntimeDir(), 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.Chmod(l.RuntimeDir(), 0o755); err != nil {
		return err
	}
	for _, h := range Hosts {
		if err := os.MkdirAll(filepath.Dir(l.AgentSocket(h)), 0o755); err != nil {
			return err
		}
	}
	for _, w := range Workloads {
		dir := filepath.Dir(l.SVIDFile(w))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		cred, err := w.credential()
		if err != nil {
			return err
		}
		if cred != nil {
			if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// WorkloadStatus is a workload in the status table.
type WorkloadStatus struct {
	Name     string `json:"name"`
	SPIFFEID string `json:"spiffe_id"`
	// Holding is true when the workload's process runs and holds a valid X.509-SVID.
	Holding    bool      `json:"holding_svid"`
	SVIDExpiry time.Time `json:"svid_expires_at,omitzero"`
}

// workloads reads what host's workloads hold, from the SVID files they write.
func (l *Lab) workloads(host string, now time.Time) []WorkloadStatus {
	var out []WorkloadStatus
	for _, w := range Workloads {
		if w.Host != host {
			continue
		}
		ws := WorkloadStatus{Name: w.Name}
		if w.process(l.Dir).pid() == 0 {
			continue // not running
		}
		if s, err := demo.ReadSVIDFile(l.SVIDFile(w)); err == nil {
			ws.SPIFFEID, ws.SVIDExpiry, ws.Holding = s.SPIFFEID, s.NotAfter, s.Valid(now)
		}
		out = append(out, ws)
	}
	return out
}

func (l *Lab) demoPort() (int, error) {
	p, err := l.ports()
	if err != nil {
		return 0, err
	}
	if p.Demo == 0 {
		if p.Demo, err = freePort(); err != nil {
			return 0, err
		}
		if err := l.savePorts(p); err != nil {
			return 0, err
		}
	}
	return p.Demo, nil
}

func (l *Lab) openbaoURL() (string, error) {
	port, err := l.demoPort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("https://127.0.0.1:%d/hello", port), nil
}

func (l *Lab) decommissioned(host string) bool {
	_, err := os.Stat(l.path("hosts", host, "decommissioned"))
	return err == nil
}

// startWorkloads starts the workloads that do not run, each as its user, and waits until
// each holds its SVID.
func (l *Lab) startWorkloads(ctx context.Context) error {
	if err := l.prepareRuntime(); err != nil {
		return err
	}
	bin, err := l.demoBinary()
	if err != nil {
		return err
	}
	port, err := l.demoPort()
	if err != nil {
		return err
	}
	url, _ := l.openbaoURL()
	for _, w := range Workloads {
		if l.decommissioned(w.Host) {
			continue
		}
		cred, err := w.credential()
		if err != nil {
			return err
		}
		p := w.process(l.Dir)
		p.cred = cred
		argv := []string{bin, "call", "--socket", l.AgentSocket(w.Host), "--url", url, "--expect", openbaoID,
			"--every", callInterval.String(), "--svid-file", l.SVIDFile(w)}
		if w == openbao {
			argv = []string{bin, "serve", "--socket", l.AgentSocket(w.Host), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
				"--allow", stepCAID, "--svid-file", l.SVIDFile(w)}
		}
		if p.pid() == 0 {
			os.Remove(l.SVIDFile(w)) // from an earlier run
		}
		err = l.ensure(ctx, p, argv, func() error {
			s, err := demo.ReadSVIDFile(l.SVIDFile(w))
			if err != nil {
				return err
			}
			if !s.Valid(time.Now()) {
				return fmt.Errorf("%s holds an SVID that is not valid now", w.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// stepCACall makes one call from step-ca's host, as step-ca's user, to OpenBao's stand-in.
func (l *Lab) stepCACall(ctx context.Context) (string, error) {
	cred, err := stepCA.credential()
	if err != nil {
		return "", err
	}
	out, err := l.callOpenBao(ctx, l.AgentSocket(stepCA.Host), cred, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return out, nil
}

// callOpenBao runs `omens-demo call` once against OpenBao's stand-in, through the Workload
// API at socket, as cred's user (nil: the lab's own), waiting at most wait for an SVID. It
// returns the command's output, and its error when it failed.
func (l *Lab) callOpenBao(ctx context.Context, socket string, cred *syscall.Credential, wait time.Duration) (string, error) {
	bin, err := l.demoBinary()
	if err != nil {
		return "", err
	}
	url, err := l.openbaoURL()
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, wait+25*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "call", "--socket", socket, "--url", url, "--expect", openbaoID, "--timeout", wait.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Demo starts the workloads (unless they run) and returns what one call from step-ca's
// stand-in to OpenBao's got, and what a process without a registration entry (on host
// auth, as the lab's own user) got.
func (l *Lab) Demo(ctx context.Context) (call, refused string, err error) {
	if err := l.startWorkloads(ctx); err != nil {
		return "", "", err
	}
	if l.decommissioned("ca") {
		call = "host ca is decommissioned (omens lab scenario revoke): step-ca's stand-in no longer runs"
	} else if call, err = l.stepCACall(ctx); err != nil {
		return "", "", err
	}
	refused, err = l.callOpenBao(ctx, l.AgentSocket("auth"), nil, 3*time.Second)
	if err == nil {
		return call, "", fmt.Errorf("lab: a process without a registration entry got an SVID: %s", refused)
	}
	return call, refused, nil
}
