//go:build cgo

package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
)

func openSimulator() (transport.TPMCloser, error) {
	t, err := simulator.OpenSimulator()
	if err != nil {
		return nil, fmt.Errorf("tpm: start in-process simulator: %w", err)
	}
	return t, nil
}
