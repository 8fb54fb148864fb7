package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"omens.dev/omens/internal/netport"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"omens.dev/omens/hostconf"
	"omens.dev/omens/registry"
	"omens.dev/omens/tpm"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/stepcaproc"
	"omens.dev/omens/tpmrules"
)

// TrustDomain is the Tower's SPIRE trust domain.
const TrustDomain = "funlab.casa"

// ports are chosen at the first up and kept, so a resumed lab keeps its addresses.
type ports struct {
	StepCA int `json:"step_ca"`
	RA     int `json:"ra"`
	SPIRE  int `json:"spire_server"`
	Demo   int `json:"demo,omitempty"`
}

// caState is what the lab keeps of its step-ca.
type caState struct {
	URL, Address, CAConfig, RootPath, PasswordFile, ProvisionerPasswordFile, Provisioner string
}

func (l *Lab) path(parts ...string) string {
	return filepath.Join(append([]string{l.Dir}, parts...)...)
}

// Plugin returns the path of a binary that ships beside omens (the SPIRE plugins).
func (l *Lab) sibling(name string) string { return filepath.Join(filepath.Dir(l.Omens), name) }

func freePort() (int, error) { return netport.Free() }

func (l *Lab) ports() (*ports, error) {
	p := &ports{}
	file := l.path("ports.json")
	if b, err := os.ReadFile(file); err == nil {
		return p, json.Unmarshal(b, p)
	}
	var err error
	for _, f := range []*int{&p.StepCA, &p.RA, &p.SPIRE} {
		if *f, err = freePort(); err != nil {
			return nil, err
		}
	}
	return p, l.savePorts(p)
}

func (l *Lab) savePorts(p *ports) error {
	b, _ := json.MarshalIndent(p, "", "  ")
	return os.WriteFile(l.path("ports.json"), b, 0o644)
}

// upTower starts, after the TPMs, step-ca, the RA, the SPIRE server and one agent per host
// (on a join token, as the Tower runs today).
func (l *Lab) upTower(ctx context.Context) error {
	for _, name := range []string{engines.SPIREServer, engines.SPIREAgent, engines.StepCA, engines.Step} {
		if _, err := engines.Path(name); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	p, err := l.ports()
	if err != nil {
		return err
	}
	ca, err := l.upStepCA(ctx, p)
	if err != nil {
		return err
	}
	if err := l.writeEKBundle(); err != nil {
		return err
	}
	if err := l.upRA(ctx, p, ca); err != nil {
		return err
	}
	if err := l.upSPIREServer(ctx, p, ca); err != nil {
		return err
	}
	for _, h := range Hosts {
		if err := l.upAgent(ctx, p, h); err != nil {
			return err
		}
	}
	return l.upPrometheus(ctx) // prometheus.go
}

func (l *Lab) upStepCA(ctx context.Context, p *ports) (*caState, error) {
	stateFile := l.path("ca", "lab.json")
	var st caState
	if b, err := os.ReadFile(stateFile); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", stateFile, err)
		}
	} else {
		start := time.Now()
		l.progress("step-ca: initialising a CA with the JWK provisioner tower-of-omens (step ca init)")
		ca, err := stepcaproc.Init(l.path("ca", "step"), stepcaproc.Config{Address: fmt.Sprintf("127.0.0.1:%d", p.StepCA)})
		if err != nil {
			return nil, fmt.Errorf("lab: step-ca: %w", err)
		}
		st = caState{URL: ca.URL, Address: ca.Address, CAConfig: ca.CAConfig, RootPath: ca.RootPath, PasswordFile: ca.PasswordFile,
			ProvisionerPasswordFile: l.path("ca", "provisioner-password"), Provisioner: ca.Provisioner}
		if err := os.WriteFile(st.ProvisionerPasswordFile, []byte(ca.ProvisionerPassword), 0o600); err != nil {
			return nil, err
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		if err := os.WriteFile(stateFile, b, 0o600); err != nil {
			return nil, err
		}
		l.progress("step-ca: initialised in %s", time.Since(start).Round(time.Millisecond))
	}
	bin, _ := engines.Path(engines.StepCA)
	err := l.ensure(ctx, process{name: "step-ca", dir: l.Dir}, stepcaproc.Command(bin, st.CAConfig, st.PasswordFile),
		func() error { return httpsHealthy(st.URL+"/health", st.RootPath) })
	return &st, err
}

// writeEKBundle gathers the manufacturer CAs of the lab's TPMs: what the RA and the SPIRE
// server trust for EK certificates.
func (l *Lab) writeEKBundle() error {
	var all []byte
	for _, h := range Hosts {
		b, err := os.ReadFile(filepath.Join(l.TPMState(h), "manufacturer-ca.pem"))
		if err != nil {
			return fmt.Errorf("lab: %s: %w", h, err)
		}
		all = append(all, b...)
	}
	return os.WriteFile(l.path("ek-ca.pem"), all, 0o644)
}

func (l *Lab) upRA(ctx context.Context, p *ports, ca *caState) error {
	url := fmt.Sprintf("https://127.0.0.1:%d", p.RA)
	metrics, err := l.raMetricsListen()
	if err != nil {
		return err
	}
	return l.ensure(ctx, process{name: "ra", dir: l.Dir}, []string{l.Omens, "ra", "serve", "--metrics-listen", metrics,
		"--listen", fmt.Sprintf("127.0.0.1:%d", p.RA), "--name", "ca.funlab.casa", "--state", l.path("ra"),
		"--ek-ca", l.path("ek-ca.pem"), "--ca-url", ca.URL, "--ca-root", ca.RootPath, "--ca-config", ca.CAConfig,
		"--provisioner", ca.Provisioner, "--provisioner-password-file", ca.ProvisionerPasswordFile},
		func() error { return httpsHealthy(url+"/healthz", ca.RootPath) })
}

// ServerSocket is the SPIRE server API socket.
func (l *Lab) ServerSocket() string { return l.path("spire", "api.sock") }

func (l *Lab) upSPIREServer(ctx context.Context, p *ports, ca *caState) error {
	dir := l.path("spire")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	if err := l.writePolicy(); err != nil {
		return err
	}
	conf, err := l.renderServer(p, ca)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	confPath := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return err
	}
	bin, _ := engines.Path(engines.SPIREServer)
	return l.ensure(ctx, process{name: "spire-server", dir: l.Dir}, []string{bin, "run", "-config", confPath},
		func() error { return exec.Command(bin, "healthcheck", "-socketPath", l.ServerSocket()).Run() })
}

func (l *Lab) upAgent(ctx context.Context, p *ports, host string) error {
	dir := l.path("hosts", host, "agent")
	for _, d := range []string{"data", "private"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := l.prepareRuntime(); err != nil {
		return err
	}
	server, _ := engines.Path(engines.SPIREServer)
	agentBin, _ := engines.Path(engines.SPIREAgent)
	proc := process{name: host + "-agent", dir: l.Dir}
	if _, err := os.Stat(l.path("hosts", host, "decommissioned")); err == nil {
		l.progress("%s: decommissioned (omens lab scenario revoke); its agent stays down", host)
		return nil
	}
	if proc.pid() != 0 {
		l.progress("%s: SPIRE agent already running (pid %d)", host, proc.pid())
		return nil
	}
	bundle := filepath.Join(dir, "bundle.pem")
	b, err := exec.Command(server, "bundle", "show", "-socketPath", l.ServerSocket()).Output()
	if err != nil {
		return fmt.Errorf("lab: spire-server bundle show: %w", err)
	}
	if err := os.WriteFile(bundle, b, 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "agent_svid.der")); err != nil && !l.onTPM(host) {
		// A new agent joins as the Tower's agents do today: with a join token, aliased to
		// the plan's node name.
		out, err := exec.Command(server, "token", "generate", "-socketPath", l.ServerSocket(),
			"-spiffeID", "spiffe://"+TrustDomain+"/agent/"+host, "-output", "json").Output()
		if err != nil {
			return fmt.Errorf("lab: spire-server token generate: %w", err)
		}
		var tok struct {
			Value string `json:"value"`
		}
		if err := json.Unmarshal(out, &tok); err != nil || tok.Value == "" {
			return fmt.Errorf("lab: token generate answered %q", out)
		}
		// The agent reads it from its join_token_file; kept to show, after the migration,
		// that a used token is refused.
		if err := os.WriteFile(filepath.Join(dir, "join-token"), []byte(tok.Value), 0o600); err != nil {
			return err
		}
	}
	ca, err := l.caState()
	if err != nil {
		return err
	}
	opt := renderOptions
	if opt.Telemetry, err = l.agentTelemetry(host); err != nil {
		return err
	}
	agent, err := hostconf.Agent(l.towerInventory(p, ca), host, opt)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	agent.ServerAddress = l.agentServerAddress(host, agent.ServerAddress)
	conf, err := agent.Render()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	confPath := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return err
	}
	return l.ensure(ctx, proc, l.agentArgv(host, []string{agentBin, "run", "-config", confPath}),
		func() error { return exec.Command(agentBin, "healthcheck", "-socketPath", l.AgentSocket(host)).Run() })
}

// ensure starts argv as process p unless it runs, and waits until ready passes.
func (l *Lab) ensure(ctx context.Context, p process, argv []string, ready func() error) error {
	if pid := p.pid(); pid != 0 && ready() == nil {
		l.progress("%s: already running (pid %d)", p.name, pid)
		return nil
	}
	p.stop(5 * time.Second)
	start := time.Now()
	l.progress("%s: starting", p.name)
	r, err := p.start(argv)
	if err != nil {
		return err
	}
	if err := r.WaitReadyContext(ctx, 90*time.Second, 200*time.Millisecond, func(context.Context) error { return ready() }); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.progress("%s: up in %s", p.name, time.Since(start).Round(time.Millisecond))
	return nil
}

func httpsHealthy(url, rootPath string) error {
	b, err := os.ReadFile(rootPath)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return errors.New("no root")
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// towerProcesses are the lab's processes after the TPMs, in the order they stop.
func towerProcesses(dir string) []process {
	var out []process
	for _, h := range Hosts {
		out = append(out, process{name: h + "-agent", dir: dir})
	}
	var demos []process
	for _, w := range Workloads {
		demos = append(demos, w.process(dir))
	}
	demos = append([]process{{name: "prometheus", dir: dir}}, demos...)
	return append(demos, append(out, process{name: "spire-server", dir: dir}, process{name: "ra", dir: dir}, process{name: "step-ca", dir: dir})...)
}

// onTPM reports whether host's agent has moved to TPM attestation (DevID mode).
func (l *Lab) onTPM(host string) bool {
	_, err := os.Stat(l.path("hosts", host, "agent", "on-tpm"))
	return err == nil
}

// DevIDDir is where host keeps its DevID certificate and key blobs.
func (l *Lab) DevIDDir(host string) string { return l.path("hosts", host, "devid") }

// DevIDHandle is where each host persists its DevID key: the plan's handle.
var DevIDHandle = tpmrules.FormatHandle(tpmrules.PlanDevIDHandle)

// The SPIRE plugins that ship beside omens.
const (
	ServerPlugin = hostconf.ServerPlugin
	AgentPlugin  = hostconf.AgentPlugin
)

// renderOptions are the lab's: new entries reach agents within a second.
var renderOptions = hostconf.Options{SyncInterval: time.Second}

// renderServer is the SPIRE server's configuration file, rendered by hostconf from the
// lab's inventory, with its Prometheus endpoint.
func (l *Lab) renderServer(p *ports, ca *caState) ([]byte, error) {
	opt := renderOptions
	var err error
	if opt.Telemetry, err = l.serverTelemetry(); err != nil {
		return nil, err
	}
	srv, err := hostconf.Server(l.towerInventory(p, ca), opt)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return srv.Render()
}

// towerInventory is the lab's Tower as `omens config render` reads an inventory, so that
// the lab's SPIRE configuration comes from the same renderer as a real host's: the
// server on loopback, step-ca and the RA on the lab's ports, every path in the lab
// directory, the plugins beside omens, and each host's phase as the migration moves it
// (join_token, then devid). Its agents re-attest (a fresh quote of their boot state)
// every minute, at half their 2-minute SVIDs, and the server requires the boot event log
// that the policy's boot rules reason over.
func (l *Lab) towerInventory(p *ports, ca *caState) *registry.Inventory {
	spireBin, _ := engines.Path(engines.SPIREServer)
	inv := &registry.Inventory{
		File: "the lab's inventory", TrustDomain: TrustDomain,
		Server: &registry.SPIREServer{Host: "spire", Address: "127.0.0.1", Port: p.SPIRE, BindAddress: "127.0.0.1",
			AgentTTL: 2 * time.Minute, EventLog: "require", ExpiredEKCert: l.expiredEKCert},
		StepCA: &registry.StepCA{Host: "ca", URL: ca.URL, Provisioner: ca.Provisioner},
		RA:     &registry.RA{Host: "ca", URL: fmt.Sprintf("https://127.0.0.1:%d", p.RA)},
		Paths: registry.Paths{
			BinDir: filepath.Dir(l.Omens), PluginDir: filepath.Dir(l.Omens), SPIREBinDir: filepath.Dir(spireBin),
			SPIREServerConf: l.path("spire", "server.conf"), SPIREServerData: l.path("spire", "data"), SPIREServerSocket: l.ServerSocket(),
			EKCA: l.path("ek-ca.pem"), StepCARoot: ca.RootPath, StepCAConfig: ca.CAConfig, ProvisionerPW: ca.ProvisionerPasswordFile,
			PCRPolicy: l.PolicyPath(), RAState: l.path("ra"),
		},
	}
	// Files a real host keeps in /etc and /lib: under the lab directory.
	inv.Paths.UnitDir, inv.Paths.RAEnv, inv.Paths.EKModeHosts = l.path("units"), l.path("ra.env"), l.path("spire", "ek-mode-hosts")
	// The EK hashes, once the migration has written them (omens migrate rollback needs
	// them: a host in EK mode is known by its EK alone).
	hashes := map[string]string{}
	if code, err := registry.LoadInventory(l.InventoryPath()); err == nil {
		for _, h := range code.Hosts {
			hashes[h.Name] = h.EKHash
		}
	}
	for _, h := range Hosts {
		dir := l.path("hosts", h, "agent")
		phase := registry.PhaseJoinToken
		if l.onTPM(h) {
			phase = registry.PhaseDevID
			if l.inEKMode(h) {
				phase = registry.PhaseEK
			}
		}
		inv.Hosts = append(inv.Hosts, registry.Host{Name: h, EKHash: hashes[h], DevIDSubject: h + "." + TrustDomain, Phase: phase,
			DevIDHandle: DevIDHandle, Paths: registry.Paths{
				SPIREAgentConf: filepath.Join(dir, "agent.conf"), SPIREAgentData: filepath.Join(dir, "data"),
				SPIREAgentSocket: l.AgentSocket(h), SPIREAgentAdminSocket: filepath.Join(dir, "private", "admin.sock"),
				TrustBundle: filepath.Join(dir, "bundle.pem"), JoinTokenFile: filepath.Join(dir, "join-token"),
				DevIDDir: l.DevIDDir(h), DevIDEnv: filepath.Join(dir, "devid.env"), TPM: l.TPMSocket(h), EventLogPath: l.EventLogPath(h),
			}})
	}
	return inv
}

// checkSiblings fails, naming the binary and what builds it, unless the binaries that
// ship beside omens (the SPIRE plugins, the demo workload) are there: otherwise SPIRE
// would fail later with a fork/exec error of its own.
func (l *Lab) checkSiblings() error {
	for _, name := range []string{ServerPlugin, AgentPlugin, "omens-demo"} {
		path := l.sibling(name)
		st, err := os.Stat(path)
		if err == nil && (st.IsDir() || st.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			return fmt.Errorf("lab: %s is missing beside %s (%s: %v): build the binaries together with `make build`, or `go build -o bin/ ./cmd/...`",
				name, l.Omens, path, err)
		}
	}
	return nil
}

// PolicyPath is the lab's PCR boot-state policy.
func (l *Lab) PolicyPath() string { return l.path("pcr-policy.hcl") }

// firmwarePCRs are the PCRs the policy's set pins: the firmware. The boot loaders, the
// kernel and Secure Boot (PCRs 4 and 7) are the boot rules', over the replayed log.
var firmwarePCRs = []int{0, 2}

// writePolicy allows, the first time, the firmware the simulated hosts boot (they share
// one) as group "tower", with boot rules over the boot chain their logs record, and lists
// each host in it by its EK hash.
func (l *Lab) writePolicy() error {
	if _, err := os.Stat(l.PolicyPath()); err == nil {
		return nil
	}
	t, err := tpm.Open(l.TPMSocket(Hosts[0]))
	if err != nil {
		return err
	}
	bank, _ := tpmrules.ParseBank(tpmrules.DefaultPCRBank)
	pcrs, err := tpm.ReadPCRs(t, bank, firmwarePCRs)
	t.Close()
	if err != nil {
		return err
	}
	boot, err := l.bootBlock()
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# The lab's boot-state policy: the firmware its simulated hosts boot, and their boot chain.\nunknown_hosts = \"reject\"\n\ngroup \"tower\" {\n")
	b.WriteString(boot)
	b.WriteString("  set \"firmware-1.0\" {\n    pcrs = {\n")
	for _, i := range firmwarePCRs {
		fmt.Fprintf(&b, "      \"%d\" = %q\n", i, hex.EncodeToString(pcrs[i]))
	}
	b.WriteString("    }\n  }\n}\n")
	for _, h := range Hosts {
		hash, err := l.ekHash(h)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\nhost %q {\n  name  = %q\n  group = \"tower\"\n}\n", hash, h)
	}
	return os.WriteFile(l.PolicyPath(), []byte(b.String()), 0o644)
}
