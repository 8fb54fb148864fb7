// Package stepcaproc lays out and runs a real step-ca: the lab's CA, and the one the
// tests start through internal/test/stepcatest.
//
// Init lays out a new CA with `step ca init` (non-interactive, standalone, badger
// database) in a directory used as its STEPPATH, then shapes its ca.json the way omens
// expects the user's step-ca to be: a JWK provisioner "tower-of-omens" whose TLS
// certificates last 90 days by default and whose X.509 template is omens' DevID template
// (stepca.DevIDTemplate, installed with `step ca provisioner update --x509-template` as an
// operator does), and CRL generation on, regenerated at each revocation. Run starts `step-ca --password-file` on that directory and waits until GET
// /health answers over TLS that trusts the new root.
//
// The engines (tools/bin/step and tools/bin/step-ca) are found with internal/engines.
// internal/test/stepcatest wraps Init and Run for tests.
package stepcaproc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"omens.dev/omens/internal/netport"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/proc"
	"omens.dev/omens/ra/stepca"
)

// Defaults of Config.
const (
	DefaultName        = "Tower of Omens CA"
	DefaultProvisioner = "tower-of-omens"
)

// DefaultDNSNames are the names of a CA whose Config names none.
var DefaultDNSNames = []string{"127.0.0.1", "localhost"}

// CertDuration is the default and the longest lifetime of the TLS certificates that the
// provisioner signs: 90 days, the DevID lifetime of the plan.
const CertDuration = 2160 * time.Hour

// CRL settings written into ca.json. step-ca regenerates the CRL at each revocation
// (generateOnRevoke) and every RenewPeriod; each CRL is valid for CRLCacheDuration.
const (
	CRLCacheDuration = 24 * time.Hour
	CRLRenewPeriod   = 16 * time.Hour
)

// How long to wait for step-ca to answer /health, and to stop after SIGTERM.
const (
	ReadyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	initTimeout  = 2 * time.Minute
)

// Config shapes the CA that Init creates. Empty fields take the defaults.
type Config struct {
	// Name is the CA's name, in the subjects of its root and intermediate
	// (DefaultName).
	Name string
	// DNSNames are the names and IP addresses in the CA's TLS certificate; step-ca also
	// accepts tokens whose audience names any of them (DefaultDNSNames).
	DNSNames []string
	// Address is where step-ca listens (127.0.0.1 and a free port).
	Address string
	// Provisioner is the name of the JWK provisioner (DefaultProvisioner).
	Provisioner string
	// NoTemplate leaves the provisioner without omens' X.509 template
	// (stepca.DevIDTemplate), on step-ca's default: only for tests that show what the
	// template changes.
	NoTemplate bool
}

// CA is a step-ca with its own directory (its STEPPATH).
type CA struct {
	Dir                 string // STEPPATH: config/, certs/, secrets/, db/, the password and the log
	Address             string // host:port step-ca listens on
	URL                 string // https://host:port, host being 127.0.0.1 when it is one of the DNS names
	CAConfig            string // config/ca.json
	RootPath            string // certs/root_ca.crt
	IntermediatePath    string // certs/intermediate_ca.crt
	Root                *x509.Certificate
	RootPool            *x509.CertPool
	Fingerprint         string // SHA-256 of the root certificate (DER), hex, as `step` shows it
	Provisioner         string // name of the JWK provisioner
	ProvisionerPassword string // decrypts the provisioner's encryptedKey in ca.json; kept nowhere on disk
	PasswordFile        string // the intermediate key's password, read by step-ca at each start
	LogPath             string // step-ca's standard output and error, appended at each start

	bin  string        // step-ca
	proc *proc.Process // the step-ca last started, nil before the first start
}

// Init creates a new CA in dir (created if missing, and which must not hold a CA yet)
// with `step ca init`, and configures its ca.json. It does not start step-ca: see Run.
func Init(dir string, cfg Config) (*CA, error) {
	step, err := engines.Path(engines.Step)
	if err != nil {
		return nil, err
	}
	stepCA, err := engines.Path(engines.StepCA)
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if len(cfg.DNSNames) == 0 {
		cfg.DNSNames = DefaultDNSNames
	}
	if cfg.Provisioner == "" {
		cfg.Provisioner = DefaultProvisioner
	}
	if cfg.Address == "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg.Address = net.JoinHostPort("127.0.0.1", port)
	}
	_, port, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("stepcaproc: address %q: %w", cfg.Address, err)
	}
	host := cfg.DNSNames[0]
	for _, n := range cfg.DNSNames {
		if n == "127.0.0.1" {
			host = n
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	c := &CA{
		Dir:              dir,
		Address:          cfg.Address,
		URL:              "https://" + net.JoinHostPort(host, port),
		CAConfig:         filepath.Join(dir, "config", "ca.json"),
		RootPath:         filepath.Join(dir, "certs", "root_ca.crt"),
		IntermediatePath: filepath.Join(dir, "certs", "intermediate_ca.crt"),
		Provisioner:      cfg.Provisioner,
		PasswordFile:     filepath.Join(dir, "password"),
		LogPath:          filepath.Join(dir, "step-ca.log"),
		bin:              stepCA,
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(c.CAConfig); err == nil {
		return nil, fmt.Errorf("stepcaproc: %s already holds a CA", dir)
	}
	caPassword, err := randomPassword()
	if err != nil {
		return nil, err
	}
	if c.ProvisionerPassword, err = randomPassword(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.PasswordFile, []byte(caPassword), 0o600); err != nil {
		return nil, err
	}
	provPasswordFile := filepath.Join(dir, "provisioner-password")
	if err := os.WriteFile(provPasswordFile, []byte(c.ProvisionerPassword), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(provPasswordFile)

	args := []string{"ca", "init",
		"--deployment-type", "standalone",
		"--name", cfg.Name,
		"--address", cfg.Address,
		"--provisioner", cfg.Provisioner,
		"--password-file", c.PasswordFile,
		"--provisioner-password-file", provPasswordFile,
	}
	for _, n := range cfg.DNSNames {
		args = append(args, "--dns", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, step, args...)
	cmd.Env = append(os.Environ(), "STEPPATH="+dir)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("stepcaproc: step %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if !cfg.NoTemplate {
		// As an operator installs it (stepca.DevIDTemplate's doc).
		tpl := filepath.Join(dir, "devid.tpl")
		if err := os.WriteFile(tpl, []byte(stepca.DevIDTemplate), 0o600); err != nil {
			return nil, err
		}
		args := stepca.TemplateCommand(cfg.Provisioner, tpl, c.CAConfig)
		cmd := exec.CommandContext(ctx, step, args...)
		cmd.Env = append(os.Environ(), "STEPPATH="+dir)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("stepcaproc: step %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := configure(c.CAConfig, cfg.Provisioner, c.URL); err != nil {
		return nil, err
	}
	if err := c.loadRoot(); err != nil {
		return nil, err
	}
	return c, nil
}

// configure edits the ca.json that `step ca init` wrote: the provisioner's TLS
// certificate durations (claims) and the crl block. Settings it does not know are kept.
func configure(path, provisioner, url string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var conf map[string]any
	if err := json.Unmarshal(b, &conf); err != nil {
		return fmt.Errorf("stepcaproc: %s: %w", path, err)
	}
	authority, _ := conf["authority"].(map[string]any)
	provs, _ := authority["provisioners"].([]any)
	found := false
	for _, p := range provs {
		p, _ := p.(map[string]any)
		if p["name"] != provisioner || p["type"] != "JWK" {
			continue
		}
		claims, _ := p["claims"].(map[string]any)
		if claims == nil {
			claims = map[string]any{}
		}
		claims["defaultTLSCertDuration"] = CertDuration.String()
		claims["maxTLSCertDuration"] = CertDuration.String()
		p["claims"] = claims
		found = true
	}
	if !found {
		return fmt.Errorf("stepcaproc: %s has no JWK provisioner %q", path, provisioner)
	}
	conf["crl"] = map[string]any{
		"enabled":          true,
		"generateOnRevoke": true,
		"cacheDuration":    CRLCacheDuration.String(),
		"renewPeriod":      CRLRenewPeriod.String(),
		"idpURL":           url + "/1.0/crl",
	}
	out, err := json.MarshalIndent(conf, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o600)
}

func (c *CA) loadRoot() error {
	b, err := os.ReadFile(c.RootPath)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("stepcaproc: %s holds no PEM certificate", c.RootPath)
	}
	if c.Root, err = x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("stepcaproc: %s: %w", c.RootPath, err)
	}
	c.RootPool = x509.NewCertPool()
	c.RootPool.AddCert(c.Root)
	sum := sha256.Sum256(c.Root.Raw)
	c.Fingerprint = hex.EncodeToString(sum[:])
	return nil
}

// Command is the command line that runs step-ca (the executable bin) on the ca.json at
// caConfig, the intermediate key's password read from passwordFile: what Run starts, and
// what the lab starts detached.
func Command(bin, caConfig, passwordFile string) []string {
	return []string{bin, "--password-file", passwordFile, caConfig}
}

// Run starts step-ca on the CA's directory, appending its output to LogPath, and waits
// until it answers GET /health. stop sends SIGTERM and waits for step-ca to end (killing
// it after a while). A CA that was stopped starts again with the same address, keys and
// database.
func (c *CA) Run() (stop func() error, err error) {
	if c.Running() {
		return nil, errors.New("stepcaproc: step-ca already running")
	}
	argv := Command(c.bin, c.CAConfig, c.PasswordFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "STEPPATH="+c.Dir)
	p, err := proc.Start("step-ca", cmd, c.LogPath)
	if err != nil {
		return nil, fmt.Errorf("stepcaproc: %w", err)
	}
	c.proc = p
	stop = c.Stop
	if err := p.WaitReady(ReadyTimeout, 100*time.Millisecond, c.Healthy); err != nil {
		_ = stop()
		return nil, fmt.Errorf("stepcaproc: %w", err)
	}
	return stop, nil
}

// Stop stops the step-ca that Run started last (SIGTERM, then SIGKILL after a grace
// period) and waits for it; it returns nil when none was started or it has exited.
func (c *CA) Stop() error {
	if c.proc == nil {
		return nil
	}
	if err := c.proc.Stop(stopTimeout); err != nil {
		return fmt.Errorf("stepcaproc: %w", err)
	}
	return nil
}

// Healthy asks step-ca's GET /health once.
func (c *CA) Healthy(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: c.RootPool, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var health struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &health) != nil || health.Status != "ok" {
		return fmt.Errorf("stepcaproc: GET /health: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// Running reports whether step-ca, as Run started it, is running.
func (c *CA) Running() bool {
	if c.proc == nil {
		return false
	}
	done, _ := c.proc.Exited()
	return !done
}

// Log returns step-ca's log so far.
func (c *CA) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now, as a string.
func freePort() (string, error) {
	port, err := netport.Free()
	return strconv.Itoa(port), err
}

func randomPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
