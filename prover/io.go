package prover

import (
	"errors"
	"io"
)

// ioReadFull reads until b is full or the reader ends, and returns how much it read.
func ioReadFull(r io.Reader, b []byte) (int, error) {
	n, err := io.ReadFull(r, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return n, nil
	}
	return n, err
}
