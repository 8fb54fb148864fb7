package lab

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/statefile"
)

// ScenarioNetworkPartition cuts host spire off from the SPIRE server. Its agent moves into
// a network namespace of its own, joined to the host by a veth pair (the TPM and the
// Workload API are unix sockets, which work across namespaces); the server is reached at
// the host side's address. Then the link is dropped: the agent logs that it cannot reach
// the server and keeps serving valid SVIDs to its workloads; when the link returns it
// re-attests. At the end (and at `omens lab down`) the namespace and the veth pair are
// removed and the agent runs on the host's network again. Network namespaces need root.
var ScenarioNetworkPartition = Scenario{
	Name: "network-partition",
	Help: "spire's agent, in a network namespace, loses its link to\nthe server: it keeps serving SVIDs, re-attests when it returns",
	Run:  playNetworkPartition,
}

// partition is the network namespace a host's agent runs in during the scenario, kept in
// DIR/run/partition.json so that the agent's start (upAgent) and `omens lab down` find it.
type partition struct {
	Host      string `json:"host"`
	Netns     string `json:"netns"`
	HostIf    string `json:"host_if"`  // the veth end in the host's namespace
	AgentIf   string `json:"agent_if"` // the veth end in the agent's
	HostAddr  string `json:"host_addr"`
	AgentAddr string `json:"agent_addr"`
	Prefix    int    `json:"prefix"`
}

func (l *Lab) partitionFile() string { return l.path("run", "partition.json") }

// newPartition names the namespace and the veth pair after the lab directory, so labs in
// other directories do not collide, and chooses a /30 of 10.254.0.0/16 for the link.
func (l *Lab) newPartition(host string) partition {
	abs, err := filepath.Abs(l.Dir)
	if err != nil {
		abs = l.Dir
	}
	sum := sha256.Sum256([]byte(abs))
	id := hex.EncodeToString(sum[:3])
	subnet := fmt.Sprintf("10.254.%d.", sum[3])
	last := int(sum[4] & 0xfc)
	return partition{Host: host, Netns: "omens-" + id + "-" + host, HostIf: "om" + id + "h", AgentIf: "om" + id + "a",
		HostAddr: subnet + strconv.Itoa(last+1), AgentAddr: subnet + strconv.Itoa(last+2), Prefix: 30}
}

// activePartition returns the partition host's agent runs in, if any.
func (l *Lab) activePartition(host string) (*partition, bool) {
	b, err := limits.ReadFile(l.partitionFile(), limits.LabState)
	if err != nil {
		return nil, false
	}
	var p partition
	if json.Unmarshal(b, &p) != nil || p.Host != host || p.Netns == "" {
		return nil, false
	}
	return &p, true
}

// agentServerAddress is where host's agent reaches the SPIRE server: the host side of
// the veth pair while it runs in a partition's namespace, else addr (loopback).
func (l *Lab) agentServerAddress(host, addr string) string {
	if p, ok := l.activePartition(host); ok {
		return p.HostAddr
	}
	return addr
}

// agentArgv runs argv in host's partition namespace, if it has one.
func (l *Lab) agentArgv(host string, argv []string) []string {
	if p, ok := l.activePartition(host); ok {
		return append([]string{"ip", "netns", "exec", p.Netns}, argv...)
	}
	return argv
}

// needRoot refuses the scenario to a user other than root (euid): only root may create
// network namespaces and veth pairs.
func needRoot(euid int) error {
	if euid != 0 {
		return fmt.Errorf("lab: scenario network-partition needs root: it moves spire's agent into a network namespace of its own (ip netns add, a veth pair), which only root may create; run it as root (sudo omens lab scenario network-partition)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("lab: scenario network-partition needs ip(8) (Debian's iproute2): %w", err)
	}
	return nil
}

// ip runs ip(8) with args.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup creates the namespace, the veth pair and their addresses; the state file is
// written first, so that removePartition finds what a failed setup left.
func (l *Lab) setupPartition(p partition) error {
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := os.MkdirAll(filepath.Dir(l.partitionFile()), 0o755); err != nil {
		return err
	}
	if err := statefile.WriteAtomic(l.partitionFile(), b, 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"netns", "add", p.Netns},
		{"link", "add", p.HostIf, "type", "veth", "peer", "name", p.AgentIf},
		{"link", "set", p.AgentIf, "netns", p.Netns},
		{"addr", "add", fmt.Sprintf("%s/%d", p.HostAddr, p.Prefix), "dev", p.HostIf},
		{"link", "set", p.HostIf, "up"},
		{"-n", p.Netns, "addr", "add", fmt.Sprintf("%s/%d", p.AgentAddr, p.Prefix), "dev", p.AgentIf},
		{"-n", p.Netns, "link", "set", p.AgentIf, "up"},
		{"-n", p.Netns, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// removePartition removes what the scenario created (the veth pair, the namespace, the
// state file), whatever state a failure left it in. The agent must have left the
// namespace (be stopped) first.
func (l *Lab) removePartition() error {
	b, err := limits.ReadFile(l.partitionFile(), limits.LabState)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var p partition
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("lab: %s: %w", l.partitionFile(), err)
	}
	var errs []error
	// Deleting one end deletes the pair, wherever the other end is.
	if p.HostIf != "" && exec.Command("ip", "link", "show", p.HostIf).Run() == nil {
		errs = append(errs, ip("link", "del", p.HostIf))
	}
	if p.Netns != "" {
		if _, err := os.Stat(filepath.Join("/run/netns", p.Netns)); err == nil {
			errs = append(errs, ip("netns", "del", p.Netns))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(l.partitionFile())
}

// forward relays TCP connections from listen to target until ctx ends: the host side of
// the veth pair to the SPIRE server, which listens on loopback only.
func forward(ctx context.Context, listen, target string) (func(), error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			track(in, true)
			track(out, true)
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				dst.Close()
				src.Close()
				track(dst, false)
				track(src, false)
			}
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// fetchSVID fetches w's X.509 SVID from its host's Workload API, as w's user (spire-agent
// api fetch x509), and checks it: w's SPIFFE ID, valid now, chaining to the bundle that
// came with it. It returns the SVID.
func (l *Lab) fetchSVID(ctx context.Context, w Workload) (*x509.Certificate, error) {
	cred, err := w.credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "omens-fetch")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // holds the SVID's key
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, mustEngine(engines.SPIREAgent), "api", "fetch", "x509", "-socketPath", l.AgentSocket(w.Host), "-timeout", "10s", "-write", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("spire-agent api fetch x509: %v: %s", err, strings.TrimSpace(string(out)))
	}
	certs := func(name string) ([]*x509.Certificate, error) {
		b, err := limits.ReadFile(filepath.Join(dir, name), limits.SVIDPEM)
		if err != nil {
			return nil, err
		}
		var out []*x509.Certificate
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out = append(out, c)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s holds no certificate", name)
		}
		return out, nil
	}
	chain, err := certs("svid.0.pem")
	if err != nil {
		return nil, err
	}
	bundle, err := certs("bundle.0.pem")
	if err != nil {
		return nil, err
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the SVID does not verify against the trust bundle now: %w", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != w.SPIFFEID {
		return nil, fmt.Errorf("the SVID is for %v, want %s", leaf.URIs, w.SPIFFEID)
	}
	return leaf, nil
}

// playNetworkPartition is ScenarioNetworkPartition.Run.
func playNetworkPartition(ctx context.Context, l *Lab, out io.Writer) (err error) {
	const host = "spire"
	if err := needRoot(os.Geteuid()); err != nil {
		return err
	}
	if !l.onTPM(host) {
		return fmt.Errorf("lab: %s's agent is not on its TPM yet: run `omens lab migrate` first", host)
	}
	if err := l.needWorkloads(); err != nil {
		return err
	}
	ports, err := l.ports()
	if err != nil {
		return err
	}
	agent := process{name: host + "-agent", dir: l.Dir}
	// What an earlier run left, if it was killed.
	if _, ok := l.activePartition(host); ok {
		if err := agent.stop(20 * time.Second); err != nil {
			return err
		}
	}
	if err := l.removePartition(); err != nil {
		return err
	}
	p := l.newPartition(host)
	stopForward := func() {}
	defer func() {
		// Whatever happened: the agent leaves the namespace, which is removed, and runs
		// on the host's network again.
		errs := []error{err, agent.stop(20 * time.Second)}
		stopForward()
		errs = append(errs, l.removePartition())
		if up := l.upAgent(context.WithoutCancel(ctx), ports, host); up != nil {
			errs = append(errs, up)
		} else if err == nil {
			fmt.Fprintf(out, "6. the scenario ends: namespace %s and the veth pair are removed; %s's agent runs on the host's network again\n", p.Netns, host)
		}
		err = errors.Join(errs...)
	}()
	if err := l.setupPartition(p); err != nil {
		return err
	}
	serverAt := net.JoinHostPort(p.HostAddr, strconv.Itoa(ports.SPIRE))
	if stopForward, err = forward(ctx, serverAt, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.SPIRE))); err != nil {
		return err
	}
	if err := agent.stop(20 * time.Second); err != nil {
		return err
	}
	if err := l.upAgent(ctx, ports, host); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. %s's agent runs in network namespace %s (veth %s, %s/%d); its server is %s, the host side of the veth pair (the lab forwards it to the server)\n",
		host, p.Netns, p.AgentIf, p.AgentAddr, p.Prefix, serverAt)

	agentLog := agent.logFile()
	const failed, reattested = "Could not reattest agent", "Successfully reattested node"
	before := countLines(agentLog, failed)
	if err := ip("-n", p.Netns, "link", "set", p.AgentIf, "down"); err != nil {
		return err
	}
	fmt.Fprintf(out, "2. the link is dropped (ip -n %s link set %s down)\n", p.Netns, p.AgentIf)
	line, err := waitLine(ctx, agentLog, failed, before, 3*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "3. at its next re-attestation the agent cannot reach the server, and keeps running:\n   %s\n", logReason(line, "error"))
	svid, err := l.fetchSVID(ctx, openbao)
	if err != nil {
		return fmt.Errorf("lab: cut off from the server, %s's agent no longer serves %s a valid SVID: %w", host, openbao.Name, err)
	}
	fmt.Fprintf(out, "4. it still serves valid SVIDs: fetched from its Workload API as user %s, %s, valid until %s, chains to the bundle\n",
		openbao.User, svid.URIs[0], svid.NotAfter.Local().Format(time.TimeOnly))
	if !l.decommissioned("ca") {
		if _, err := l.stepCACall(ctx); err != nil {
			return fmt.Errorf("lab: with %s cut off, step-ca's stand-in cannot call OpenBao's: %w", host, err)
		}
		fmt.Fprintln(out, "   and step-ca's stand-in calls OpenBao's over mTLS with it")
	}
	before = countLines(agentLog, reattested)
	if err := ip("-n", p.Netns, "link", "set", p.AgentIf, "up"); err != nil {
		return err
	}
	if line, err = waitLine(ctx, agentLog, reattested, before, 3*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(out, "5. the link is back (ip -n %s link set %s up); the agent re-attests:\n   %s %s\n", p.Netns, p.AgentIf, reattested, logField(line, "spiffe_id"))
	return nil
}
