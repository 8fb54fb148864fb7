package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrNVIndexAbsent is returned when an NV index is not defined in the TPM.
var ErrNVIndexAbsent = errors.New("tpm: NV index not defined")

// maxNVChunk bounds one TPM2_NV_Read. TPM_PT_NV_BUFFER_MAX is at least 512 on PC Client
// TPMs and 1024 on most; when the TPM does not report it we use 512.
const maxNVChunk = 1024

// ReadNV reads the whole data area of an NV index (TPM 2.0 Part 3, 31.13 TPM2_NV_Read),
// in chunks no larger than the TPM's TPM_PT_NV_BUFFER_MAX. It authorizes with the index
// itself (empty auth) when the index allows TPMA_NV_AUTHREAD, else with the owner
// hierarchy (empty auth), as TCG EK certificate indices permit.
func ReadNV(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, fmt.Errorf("%w: 0x%08X", ErrNVIndexAbsent, uint32(index))
		}
		return nil, fmt.Errorf("tpm: NV_ReadPublic 0x%08X: %w", uint32(index), err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: NV_ReadPublic 0x%08X: %w", uint32(index), err)
	}
	auth := tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)}
	if !pub.Attributes.AuthRead && pub.Attributes.OwnerRead {
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	}
	chunk := nvBufferMax(t)
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		r, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: NV_Read 0x%08X at offset %d: %w", uint32(index), off, err)
		}
		if len(r.Data.Buffer) != n {
			return nil, fmt.Errorf("tpm: NV_Read 0x%08X at offset %d: asked %d bytes, TPM returned %d", uint32(index), off, n, len(r.Data.Buffer))
		}
		out = append(out, r.Data.Buffer...)
	}
	return out, nil
}

func nvBufferMax(t transport.TPM) int {
	v, err := property(t, tpm2.TPMPTNVBufferMax)
	switch {
	case err != nil || v == 0:
		return 512
	case v > maxNVChunk:
		return maxNVChunk
	default:
		return int(v)
	}
}
