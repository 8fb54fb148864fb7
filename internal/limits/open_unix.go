//go:build unix

package limits

import (
	"os"
	"syscall"
)

// openNoBlock opens path for reading without blocking on a FIFO that has no writer, so
// that ReadFile can refuse it after fstat.
func openNoBlock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
