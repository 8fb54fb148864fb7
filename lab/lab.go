package lab

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"omens.dev/omens/enroll"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/registry"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// Hosts are the Tower's hosts, each with a simulated TPM of its own.
var Hosts = []string{"spire", "auth", "ca"}

// BootPCRs are the PCRs the status shows: firmware, option ROMs, boot loader, Secure Boot
// (the plan's LUKS/Clevis binding).
var BootPCRs = tpmrules.DefaultPCRs()

// Lab is one lab state directory.
type Lab struct {
	Dir string
	// Omens is the omens executable that runs the lab's simulated TPMs.
	Omens string
	// Progress receives one line per step that can take more than a moment.
	Progress io.Writer

	// expiredEKCert is the server's expired_ek_cert while a scenario changes it
	// (scenario_ek_expired.go); empty renders none, the plugin's "reject".
	expiredEKCert string
}

// DefaultDir is the lab directory used when none is given: omens/lab under the user's
// cache directory.
func DefaultDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "omens", "lab")
}

func (l *Lab) progress(format string, args ...any) {
	if l.Progress != nil {
		fmt.Fprintf(l.Progress, "lab: "+format+"\n", args...)
	}
}

func (l *Lab) tpmProcess(host string) process { return process{name: host + "-tpm", dir: l.Dir} }

// TPMSocket is the socket of host's simulated TPM.
func (l *Lab) TPMSocket(host string) string { return filepath.Join(l.Dir, "hosts", host, "tpm.sock") }

// TPMState is the state directory of host's simulated TPM (seed, manufacturer CA, EK
// certificates, boot profile).
func (l *Lab) TPMState(host string) string { return filepath.Join(l.Dir, "hosts", host, "tpm") }

// Up starts what is not running yet and waits until every part answers.
func (l *Lab) Up(ctx context.Context) error {
	if err := l.checkSiblings(); err != nil {
		return err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := l.ensureUsers(); err != nil {
		return err
	}
	for _, h := range Hosts {
		if err := l.upTPM(ctx, h); err != nil {
			return err
		}
	}
	return l.upTower(ctx)
}

// upTPM starts host's simulated TPM unless it runs. Its NV lives in its state directory,
// so a TPM started again keeps its EK and its persistent keys.
func (l *Lab) upTPM(ctx context.Context, h string) error {
	p := l.tpmProcess(h)
	if pid := p.pid(); pid != 0 && l.tpmAnswers(h) {
		l.progress("%s: simulated TPM already running (pid %d)", h, pid)
		return nil
	}
	p.stop(2 * time.Second) // a stale process that does not answer
	start := time.Now()
	l.progress("%s: starting simulated TPM", h)
	argv := []string{l.Omens, "tpm", "simulate", "--state", l.TPMState(h), "--socket", l.TPMSocket(h)}
	// The host boots like a machine with Secure Boot: its firmware plays a synthetic boot
	// log, kept in its state directory from the first start on.
	log, err := l.firstBootLog(h)
	if err != nil {
		return err
	}
	if log != "" {
		argv = append(argv, "--boot-log", log)
	}
	r, err := p.start(argv)
	if err != nil {
		return err
	}
	err = r.WaitReadyContext(ctx, 30*time.Second, 50*time.Millisecond, func(context.Context) error {
		if !l.tpmAnswers(h) {
			return fmt.Errorf("no answer on %s", l.TPMSocket(h))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab: %s: simulated TPM: %w", h, err)
	}
	l.progress("%s: simulated TPM up in %s", h, time.Since(start).Round(time.Millisecond))
	return nil
}

func (l *Lab) tpmAnswers(host string) bool {
	t, err := tpm.Open(l.TPMSocket(host))
	if err != nil {
		return false
	}
	defer t.Close()
	_, err = tpm.ReadInfo(t)
	return err == nil
}

// upProcess is the `omens lab up` that holds the terminal, so that `omens lab down` from
// another terminal ends it too.
func (l *Lab) upProcess() process { return process{name: "up", dir: l.Dir} }

// HoldForeground records the calling process as the lab's foreground `up`, which `down`
// signals alone (not its shell's process group).
func (l *Lab) HoldForeground() error { return proc.WritePIDFile(l.upProcess().pidFile()) }

// Down stops every process of the lab and removes their sockets. The state stays, so a
// later Up brings back the same hosts with the same EKs.
func (l *Lab) Down() error {
	var errs []error
	if up := l.upProcess(); up.pid() != os.Getpid() {
		// The foreground `up` stops the parts itself when signalled; the loop below makes
		// sure of it.
		up.stop(10 * time.Second)
	} else {
		os.Remove(up.pidFile())
	}
	for _, p := range towerProcesses(l.Dir) {
		if err := p.stop(20 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// The network namespace of scenario network-partition, if a failure left it.
	if err := l.removePartition(); err != nil {
		errs = append(errs, err)
	}
	os.RemoveAll(l.RuntimeDir()) // Workload API sockets, SVID files
	for _, h := range Hosts {
		os.RemoveAll(l.path("hosts", h, "agent", "private"))
	}
	os.Remove(l.ServerSocket())
	for _, h := range Hosts {
		if err := l.tpmProcess(h).stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
		os.Remove(l.TPMSocket(h))
		os.Remove(l.TPMSocket(h) + ".omens")
	}
	return errors.Join(errs...)
}

// HostStatus is one row of the lab's status table.
type HostStatus struct {
	Host string `json:"host"`
	// Attestation is how the host's SPIRE agent attested: join_token, tpm-ek, tpm-devid;
	// empty when it has not.
	Attestation string            `json:"attestation,omitempty"`
	AgentID     string            `json:"agent_id,omitempty"`
	TPM         string            `json:"tpm"` // "up (pid N)" or "down"
	EKHash      string            `json:"ek_hash,omitempty"`
	EKCert      string            `json:"ek_certificate,omitempty"` // verification result against the host's manufacturer CA
	BootState   map[string]string `json:"boot_state,omitempty"`     // sha256 PCR index to value
	// DevIDExpiry is when the host's DevID certificate expires; zero before enrollment.
	DevIDExpiry time.Time `json:"devid_expires_at,omitzero"`
	// DevIDRevoked is true once the host was decommissioned (omens lab scenario revoke).
	DevIDRevoked bool `json:"devid_revoked,omitempty"`
	// Workloads are the demo workloads running on the host and the SVIDs they hold.
	Workloads []WorkloadStatus `json:"workloads,omitempty"`
	Error     string           `json:"error,omitempty"`
}

// Status reads every host's TPM: EK hash, EK certificate verified against the host's
// manufacturer CA, and the boot PCRs. An inventory that cannot be read shows in every
// host's Error.
func (l *Lab) Status() []HostStatus {
	agents, invErr := l.agents()
	now := time.Now()
	var out []HostStatus
	for _, h := range Hosts {
		st := HostStatus{Host: h, TPM: "down", Workloads: l.workloads(h, now)}
		if a, ok := agents[h]; ok {
			st.Attestation, st.AgentID = string(a.Method), a.ID
		}
		if d, err := enroll.Load(l.DevIDDir(h)); err == nil {
			st.DevIDExpiry, st.DevIDRevoked = d.Leaf.NotAfter, l.decommissioned(h)
		}
		if pid := l.tpmProcess(h).pid(); pid != 0 {
			st.TPM = fmt.Sprintf("up (pid %d)", pid)
			if err := l.readHost(h, &st); err != nil {
				st.Error = err.Error()
			}
		}
		if invErr != nil {
			st.Error = strings.TrimPrefix(st.Error+"; "+invErr.Error(), "; ")
		}
		out = append(out, st)
	}
	return out
}

// agents maps host to its live SPIRE agent, from the server API; empty when the server is
// down. The error is that of an inventory that cannot be read.
func (l *Lab) agents() (map[string]registry.Agent, error) {
	out := map[string]registry.Agent{}
	if _, err := os.Stat(l.ServerSocket()); err != nil {
		return out, nil
	}
	inv, err := l.inventory()
	if err != nil {
		return out, err
	}
	c, err := registry.Dial(l.ServerSocket())
	if err != nil {
		return out, nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.Agents(ctx, inv)
	if err != nil {
		return out, nil
	}
	for _, a := range list {
		if a.Host == "" || !a.Live(time.Now()) {
			continue
		}
		// A host whose agent moved to its TPM may still have a live join-token agent until
		// the migration bans it: show the TPM one.
		if cur, ok := out[a.Host]; ok && cur.Method.TPM() && !a.Method.TPM() {
			continue
		}
		out[a.Host] = a
	}
	return out, nil
}

// inventory is the lab's registration as code (InventoryPath), nil before the migration
// writes it. Any other failure to read it is an error: a malformed inventory is not
// "before the migration".
func (l *Lab) inventory() (*registry.Inventory, error) {
	inv, err := registry.LoadInventory(l.InventoryPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return inv, nil
}

func (l *Lab) readHost(host string, st *HostStatus) error {
	t, err := tpm.Open(l.TPMSocket(host))
	if err != nil {
		return err
	}
	defer t.Close()
	eks, err := tpm.EndorsementKeys(t)
	if err != nil {
		return err
	}
	ek := eks[0]
	if st.EKHash, err = verify.EKHash(ek.PublicKey); err != nil {
		return err
	}
	st.EKCert = "missing"
	if ek.Certificate != nil {
		st.EKCert = l.verifyEK(host, ek)
	}
	bank, _ := tpmrules.ParseBank(tpmrules.DefaultPCRBank)
	pcrs, err := tpm.ReadPCRs(t, bank, BootPCRs)
	if err != nil {
		return err
	}
	st.BootState = map[string]string{}
	for _, p := range BootPCRs {
		st.BootState[fmt.Sprint(p)] = hex.EncodeToString(pcrs[p])
	}
	return nil
}

func (l *Lab) verifyEK(host string, ek tpm.EndorsementKey) string {
	bundle, _, err := verify.LoadBundle(filepath.Join(l.TPMState(host), "manufacturer-ca.pem"))
	if err != nil {
		return err.Error()
	}
	check, err := verify.VerifyEKCert(ek.Certificate, ek.PublicKey, bundle, time.Now())
	if err != nil {
		return err.Error()
	}
	c := check.Cert
	return "verified (" + c.KeyType + ", " + c.TPM.ManufacturerName + " " + c.TPM.Model + ")"
}
