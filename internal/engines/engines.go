// Package engines finds the real SPIRE and step-ca programs that omens drives: the ones
// `make tools` builds into tools/bin from the versions pinned in tools/go.mod.
package engines

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// The engines.
const (
	SPIREServer = "spire-server"
	SPIREAgent  = "spire-agent"
	StepCA      = "step-ca"
	Step        = "step"
)

// All lists every engine.
var All = []string{SPIREServer, SPIREAgent, StepCA, Step}

// Path returns the executable of engine name, looking in order at $OMENS_TOOLS, the
// tools/bin of the source tree that holds the working directory, tools/bin beside the
// directory of the running omens binary (bin/omens in a checkout), and $PATH.
func Path(name string) (string, error) {
	var tried []string
	try := func(dir string) (string, bool) {
		if dir == "" {
			return "", false
		}
		p := filepath.Join(dir, name)
		tried = append(tried, p)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
		return "", false
	}
	if p, ok := try(os.Getenv("OMENS_TOOLS")); ok {
		return p, nil
	}
	if root, err := SourceRoot(); err == nil {
		if p, ok := try(filepath.Join(root, "tools", "bin")); ok {
			return p, nil
		}
	}
	if exe, err := os.Executable(); err == nil {
		if p, ok := try(filepath.Join(filepath.Dir(filepath.Dir(exe)), "tools", "bin")); ok {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("engines: %s not found (tried %v and $PATH): run `make tools` in the omens source tree, or set OMENS_TOOLS to the directory that holds it", name, tried)
}

// SourceRoot returns the omens source tree that holds the working directory: the nearest
// parent with a go.mod whose tools/go.mod exists.
func SourceRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("engines: not inside the omens source tree")
		}
		dir = parent
	}
}
