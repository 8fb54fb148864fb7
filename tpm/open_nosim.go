//go:build !cgo

package tpm

import (
	"errors"

	"github.com/google/go-tpm/tpm2/transport"
)

func openSimulator() (transport.TPMCloser, error) {
	return nil, errors.New("tpm: the in-process simulator needs a build with cgo (CGO_ENABLED=1) and libssl")
}
