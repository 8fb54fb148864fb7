package testtpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpm"
)

// Evict removes the object persisted at h (TPM2_EvictControl with the owner hierarchy,
// Part 3, 28.5), whatever it is: tests use it to leave a TPM as they found it.
func Evict(t transport.TPM, h tpm2.TPMHandle) error {
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	if err != nil {
		return fmt.Errorf("testtpm: ReadPublic(0x%08X): %w", uint32(h), err)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: rp.Name},
		PersistentHandle: h,
	}).Execute(t); err != nil {
		return fmt.Errorf("testtpm: EvictControl(evict 0x%08X): %w", uint32(h), err)
	}
	return nil
}

// EvictDevID is Evict for a DevID key: it refuses a key at h that is not DevID-shaped
// (tpm.LoadPersistentDevID's error).
func EvictDevID(t transport.TPM, h tpm2.TPMHandle) error {
	if _, err := tpm.LoadPersistentDevID(t, h); err != nil {
		return err
	}
	return Evict(t, h)
}
