package e2e_test

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"omens.dev/omens/internal/engines"
	"omens.dev/omens/internal/test/enginetest"
	"omens.dev/omens/spireconf"
	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// binaries are omens and its SPIRE plugins, built once per test run.
type binaries struct{ omens, server, agent string }

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func build(t *testing.T) binaries {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "omens-e2e-bin")
		if buildErr != nil {
			return
		}
		built = binaries{
			omens:  filepath.Join(buildDir, "omens"),
			server: filepath.Join(buildDir, "omens-attestor-server"),
			agent:  filepath.Join(buildDir, "omens-attestor-agent"),
		}
		for pkg, out := range map[string]string{
			"omens.dev/omens/cmd/omens":                 built.omens,
			"omens.dev/omens/cmd/omens-attestor-server": built.server,
			"omens.dev/omens/cmd/omens-attestor-agent":  built.agent,
		} {
			if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// requireEngines skips without SPIRE (fails when CI=true).
func requireEngines(t *testing.T) {
	t.Helper()
	enginetest.Require(t, engines.SPIREServer, engines.SPIREAgent)
}

// simHost is a simulated TPM in its own `omens tpm simulate` process (the reference
// simulator is one per process).
type simHost struct {
	name, dir, socket string
	cmd               *exec.Cmd
}

// startSimHost starts the simulated TPM of host name; flags go to `omens tpm simulate`
// (such as --ecc).
func startSimHost(t *testing.T, name string, flags ...string) *simHost {
	t.Helper()
	return startSimHostSeed(t, name, "", flags...)
}

// startSimHostSeed is startSimHost with the simulator's seed fixed (16 hex digits, the
// state directory's seed file); "" draws one at random.
func startSimHostSeed(t *testing.T, name, seed string, flags ...string) *simHost {
	t.Helper()
	bin := build(t)
	dir, err := os.MkdirTemp("", "omens-"+name)
	if err != nil {
		t.Fatal(err)
	}
	if seed != "" {
		if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "state", "seed"), []byte(seed+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &simHost{name: name, dir: dir, socket: filepath.Join(dir, "tpm.sock")}
	h.cmd = exec.Command(bin.omens, append([]string{"tpm", "simulate", "--state", filepath.Join(dir, "state"), "--socket", h.socket}, flags...)...)
	log, _ := os.Create(filepath.Join(dir, "sim.log"))
	h.cmd.Stdout, h.cmd.Stderr = log, log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.cmd.Process.Signal(os.Interrupt)
		h.cmd.Wait()
		log.Close()
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if tt, err := tpm.Open(h.socket); err == nil {
			_, err = tpm.ReadInfo(tt)
			tt.Close()
			if err == nil {
				return h
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sim.log"))
	t.Fatalf("simulated TPM %s did not start:\n%s", name, b)
	return nil
}

func (h *simHost) bundle() string { return filepath.Join(h.dir, "state", "manufacturer-ca.pem") }

func (h *simHost) ekHash(t *testing.T) string {
	t.Helper()
	tt, err := tpm.Open(h.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	eks, err := tpm.EndorsementKeys(tt)
	if err != nil {
		t.Fatal(err)
	}
	s, err := verify.EKHash(eks[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pcrs reads the sha256 values of PCRs 0, 2, 4 and 7, hex.
func (h *simHost) pcrs(t *testing.T) map[int]string {
	t.Helper()
	tt, err := tpm.Open(h.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	bank, _ := tpm.ParseBank("sha256")
	v, err := tpm.ReadPCRs(tt, bank, []int{0, 2, 4, 7})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for k, d := range v {
		out[k] = hex.EncodeToString(d)
	}
	return out
}

// omens runs the omens CLI and returns its output.
func omens(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(build(t).omens, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("omens %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tpmServerAttestors are the server's NodeAttestor "tpm": the plan's keys, plus
// plugin_cmd, the boot-state policy and extra settings.
func tpmServerAttestors(t *testing.T, caPath, policyPath string, extra ...spireconf.Setting) []spireconf.Plugin {
	data := []spireconf.Setting{
		{Key: "devid_mode", Value: "ek_cert"},
		{Key: "ca_path", Value: caPath},
		{Key: "allow_insecure", Value: false},
		{Key: "pcr_bank", Value: "sha256"},
		{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
	}
	if policyPath != "" {
		data = append(data, spireconf.Setting{Key: "pcr_policy_path", Value: policyPath})
	}
	return []spireconf.Plugin{{Type: "NodeAttestor", Name: "tpm", Cmd: build(t).server, Data: append(data, extra...)}}
}

// tpmAgentAttestor is the agent's NodeAttestor "tpm", as in the plan plus plugin_cmd and
// extra settings.
func tpmAgentAttestor(t *testing.T, tpmPath string, extra ...spireconf.Setting) *spireconf.Plugin {
	return &spireconf.Plugin{Type: "NodeAttestor", Name: "tpm", Cmd: build(t).agent, Data: append([]spireconf.Setting{
		{Key: "tpm_path", Value: tpmPath},
		{Key: "pcr_bank", Value: "sha256"},
		{Key: "pcr_selection", Value: []int{0, 2, 4, 7}},
	}, extra...)}
}
