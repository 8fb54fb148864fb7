package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// flush unloads a transient object or session (TPM2_FlushContext).
func flush(t transport.TPM, h tpm2.TPMHandle) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
		return fmt.Errorf("tpm: FlushContext 0x%08X: %w", uint32(h), err)
	}
	return nil
}

// Handles lists the handles of one type (TPM_HT_TRANSIENT, TPM_HT_PERSISTENT, ...) that
// the TPM holds (TPM2_GetCapability(TPM_CAP_HANDLES)). It stops at the first handle of
// another type, so for sessions ask for TPM_HT_HMAC_SESSION and TPM_HT_POLICY_SESSION
// apart.
func Handles(t transport.TPM, kind tpm2.TPMHT) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := uint32(kind) << 24
	for {
		r, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 64,
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: GetCapability(HANDLES 0x%08X): %w", next, err)
		}
		hs, err := r.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("tpm: GetCapability(HANDLES 0x%08X): %w", next, err)
		}
		progressed := false
		for _, h := range hs.Handle {
			if uint32(h)>>24 != uint32(kind) {
				return out, nil
			}
			if uint32(h) < next {
				continue // a TPM lists handles in ascending order; ignore any that go back
			}
			out = append(out, h)
			next, progressed = uint32(h)+1, true
		}
		if !r.MoreData || !progressed {
			return out, nil
		}
	}
}

// TransientHandles lists loaded transient objects. Over a socket TPM without a resource
// manager, anything left here after an operation is a leak.
func TransientHandles(t transport.TPM) ([]tpm2.TPMHandle, error) {
	return Handles(t, tpm2.TPMHTTransient)
}

// Persisted is what TPM2_ReadPublic (Part 3, 12.4) says of a persistent handle.
type Persisted struct {
	Public        *tpm2.TPMTPublic
	Name          []byte
	QualifiedName []byte
}

// ReadPersistent reads the public area of the object persisted at h; nil, and no error,
// when h holds nothing.
func ReadPersistent(t transport.TPM, h tpm2.TPMHandle) (*Persisted, error) {
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: ReadPublic(0x%08X): %w", uint32(h), err)
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: ReadPublic(0x%08X): %w", uint32(h), err)
	}
	return &Persisted{Public: pub, Name: rp.Name.Buffer, QualifiedName: rp.QualifiedName.Buffer}, nil
}
