package tpm

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// Simulator is the path that Open understands as "the in-process reference simulator"
// (Microsoft's TPM 2.0 reference implementation from go-tpm-tools). Its state lives in
// memory and is lost when the process exits; only one may be open per process.
const Simulator = "simulator"

// DefaultDevices are the device paths Open tries, in order, when no path is given: the
// kernel resource manager first (it flushes a client's transient objects), then the raw
// device.
var DefaultDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// ErrNoTPM is returned by Open when no path was given and no default device exists.
var ErrNoTPM = errors.New("tpm: no TPM found")

// Resolve returns the path Open opens for path: path itself, or for an empty path the
// first of DefaultDevices that exists (ErrNoTPM when none does).
func Resolve(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	for _, p := range DefaultDevices {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (tried %s): give --tpm PATH (a TPM device or a unix socket), "+
		"or start a simulated TPM with `omens tpm simulate --state DIR --socket PATH`",
		ErrNoTPM, strings.Join(DefaultDevices, ", "))
}

// Open opens the TPM at path: a character device, a unix socket that speaks raw TPM 2.0
// commands (one command per connection is fine), or Simulator. An empty path tries
// DefaultDevices.
func Open(path string) (transport.TPMCloser, error) {
	path, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	if path == Simulator {
		return openSimulator()
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tpm: open %s: %w (is the TPM present, or the simulator running?)", path, err)
	}
	switch {
	case fi.Mode()&os.ModeSocket != 0:
		t, err := linuxudstpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tpm: open socket %s: %w", path, err)
		}
		return t, nil
	case fi.Mode()&os.ModeCharDevice != 0:
		t, err := linuxtpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tpm: open device %s: %w (permission? try as root or add your user to the tss group)", path, err)
		}
		return t, nil
	default:
		return nil, fmt.Errorf("tpm: %s is neither a TPM device nor a unix socket (mode %s)", path, fi.Mode())
	}
}
