package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// The demo workloads: a stand-in for OpenBao on host spire, serving mTLS to step-ca only,
// and a stand-in for step-ca on host ca calling it; each gets its SVID from its host's
// agent and authorizes the other by SPIFFE ID.
const (
	openbaoID = "spiffe://" + TrustDomain + "/openbao"
	stepCAID  = "spiffe://" + TrustDomain + "/step-ca"
)

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

// Demo starts the OpenBao stand-in (unless it runs) and returns what the step-ca stand-in
// got from it, and what a process without a registration entry (on host auth) got.
func (l *Lab) Demo(ctx context.Context) (call, refused string, err error) {
	port, err := l.demoPort()
	if err != nil {
		return "", "", err
	}
	demo := l.sibling("omens-demo")
	url := fmt.Sprintf("https://127.0.0.1:%d/hello", port)
	err = l.ensure(ctx, process{name: "openbao-demo", dir: l.Dir},
		[]string{demo, "serve", "--socket", l.AgentSocket("spire"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--allow", stepCAID},
		func() error {
			out, err := exec.Command(demo, "call", "--socket", l.AgentSocket("ca"), "--url", url, "--expect", openbaoID, "--timeout", "5s").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
			}
			call = strings.TrimSpace(string(out))
			return nil
		})
	if err != nil {
		return "", "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, rerr := exec.CommandContext(cctx, demo, "call", "--socket", l.AgentSocket("auth"), "--url", url, "--expect", openbaoID, "--timeout", "3s").CombinedOutput()
	if rerr == nil {
		return call, "", fmt.Errorf("lab: a process without a registration entry got an SVID: %s", out)
	}
	return call, strings.TrimSpace(string(out)), nil
}
