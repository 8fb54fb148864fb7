//go:build cgo

package tpmsim

// The reference simulator keeps its NV memory (persistent objects, NV indices, the
// hierarchy seeds and the rest of its persistent state) in a C array of the go-tpm-tools
// platform layer, s_NV, which lives as long as the process. A real TPM's NV survives power
// loss, so a simulated host keeps that array in its state directory (file nv): it is written
// after every command that changed it and loaded at the next start, the way swtpm keeps its
// state file. A host whose process was killed then comes back as after a power cut: same
// EK, same persistent keys (AK, DevID) and NV indices, PCRs reset.

/*
#include <stdbool.h>
#include <string.h>

// From go-tpm-tools' simulator/ms-tpm-20-ref/Samples/Google: NVMem.c and Run.c.
extern unsigned char s_NV[];
extern void _plat__Reset(bool forceManufacture);

static void omens_nv_get(void *dst, size_t n) { memcpy(dst, s_NV, n); }
static void omens_nv_put(const void *src, size_t n) { memcpy(s_NV, src, n); }
static void omens_power_cycle(void) { _plat__Reset(false); }
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// nvSize is NV_MEMORY_SIZE of the reference simulator's TpmProfile.h as go-tpm-tools
// builds it. A saved NV image of another size is refused rather than loaded.
const nvSize = 16384

// nvImage copies the simulator's NV memory.
func nvImage() []byte {
	b := make([]byte, nvSize)
	C.omens_nv_get(unsafe.Pointer(&b[0]), C.size_t(nvSize))
	return b
}

// loadNVImage reads a saved NV image; ok is false when there is none.
func loadNVImage(path string) (img []byte, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("tpmsim: %w", err)
	}
	if len(b) != nvSize {
		return nil, false, fmt.Errorf("tpmsim: %s holds %d bytes, want an NV image of %d bytes; move it away to start this host afresh (new storage keys, same EK)", path, len(b), nvSize)
	}
	return b, true, nil
}

// powerOnWithNV replaces the simulator's NV memory with img and power-cycles it without
// an orderly shutdown, as after a power cut. The caller sends TPM2_Startup.
func powerOnWithNV(img []byte) {
	C.omens_nv_put(unsafe.Pointer(&img[0]), C.size_t(nvSize))
	C.omens_power_cycle()
}

// saveNV writes the NV image to the state directory when it changed since the last save.
// The caller holds s.mu.
func (s *Sim) saveNV() error {
	img := nvImage()
	if bytes.Equal(img, s.savedNV) {
		return nil
	}
	if err := writeFileAtomic(s.nvPath(), img, 0o600); err != nil {
		return err
	}
	s.savedNV = img
	return nil
}
