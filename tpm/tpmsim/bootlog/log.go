package bootlog

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Event types (PFP, "Event Types").
const (
	EvPostCode                   uint32 = 0x00000001
	EvNoAction                   uint32 = 0x00000003
	EvSeparator                  uint32 = 0x00000004
	EvSCRTMVersion               uint32 = 0x00000008
	EvIPL                        uint32 = 0x0000000D
	EvEFIVariableDriverConfig    uint32 = 0x80000001
	EvEFIVariableBoot            uint32 = 0x80000002
	EvEFIBootServicesApplication uint32 = 0x80000003
	EvEFIAction                  uint32 = 0x80000007
	EvEFIPlatformFirmwareBlob    uint32 = 0x80000008
	EvEFIVariableAuthority       uint32 = 0x800000E0
)

// algID is the TPM_ALG_ID of a bank's hash (TPM 2.0 Part 2, 6.3).
func algID(h crypto.Hash) (tpm2.TPMAlgID, error) {
	switch h {
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1, nil
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, nil
	}
	return 0, fmt.Errorf("bootlog: bank %v is not sha1, sha256, sha384 or sha512", h)
}

func le(w *bytes.Buffer, v any) { binary.Write(w, binary.LittleEndian, v) }

// Event is one event of a log. Digests holds the digest extended into each bank; a bank
// with none gets the hash of Data, as firmware logs for events whose data is what it
// measured (separators, variables, actions).
type Event struct {
	PCR     int
	Type    uint32
	Data    []byte
	Digests map[crypto.Hash][]byte
}

// Digest returns the digest e extends into bank h.
func (e Event) Digest(h crypto.Hash) []byte {
	if d, ok := e.Digests[h]; ok {
		return d
	}
	d := h.New()
	d.Write(e.Data)
	return d.Sum(nil)
}

// Encode returns the crypto-agile log of events with digests in banks. It starts with
// the Spec ID event (PFP, "Specification ID Version Event"): a TCG_PCClientPCREvent in
// the SHA-1 format, EV_NO_ACTION in PCR 0 with a zero digest, whose data is a
// TCG_EfiSpecIDEventStruct naming the banks. Each event follows as a TCG_PCR_EVENT2: PCR
// index, type, a TPML_DIGEST_VALUES with its digest in every bank, then its data.
func Encode(banks []crypto.Hash, events []Event) ([]byte, error) {
	ids := make([]tpm2.TPMAlgID, len(banks))
	for i, h := range banks {
		id, err := algID(h)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	le(&spec, uint32(0)) // platformClass: client
	// specVersionMinor 0, specVersionMajor 2, specErrata 2, uintnSize 2 (UINT64).
	spec.Write([]byte{0, 2, 2, 2})
	le(&spec, uint32(len(banks))) // numberOfAlgorithms
	for i, h := range banks {
		le(&spec, uint16(ids[i]))
		le(&spec, uint16(h.Size()))
	}
	spec.WriteByte(0) // vendorInfoSize
	var b bytes.Buffer
	le(&b, uint32(0))
	le(&b, EvNoAction)
	b.Write(make([]byte, 20))
	le(&b, uint32(spec.Len()))
	b.Write(spec.Bytes())
	for _, e := range events {
		le(&b, uint32(e.PCR))
		le(&b, e.Type)
		le(&b, uint32(len(banks)))
		for i, h := range banks {
			le(&b, uint16(ids[i]))
			b.Write(e.Digest(h))
		}
		le(&b, uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes(), nil
}
