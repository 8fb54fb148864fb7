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
	EvEFIBootServicesApplication uint32 = 0x80000003
	EvEFIAction                  uint32 = 0x80000007
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

// logWriter appends events to a crypto-agile log.
type logWriter struct {
	banks []crypto.Hash
	buf   bytes.Buffer
}

func le(w *bytes.Buffer, v any) { binary.Write(w, binary.LittleEndian, v) }

// newLogWriter starts a log with the Spec ID event (PFP, "Specification ID Version
// Event"): a TCG_PCClientPCREvent in the SHA-1 format, EV_NO_ACTION in PCR 0 with a zero
// digest, whose data is a TCG_EfiSpecIDEventStruct naming the banks of the events that
// follow.
func newLogWriter(banks []crypto.Hash) (*logWriter, error) {
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	le(&spec, uint32(0)) // platformClass: client
	// specVersionMinor 0, specVersionMajor 2, specErrata 2, uintnSize 2 (UINT64).
	spec.Write([]byte{0, 2, 2, 2})
	le(&spec, uint32(len(banks))) // numberOfAlgorithms
	for _, h := range banks {
		id, err := algID(h)
		if err != nil {
			return nil, err
		}
		le(&spec, uint16(id))
		le(&spec, uint16(h.Size()))
	}
	spec.WriteByte(0) // vendorInfoSize
	w := &logWriter{banks: banks}
	le(&w.buf, uint32(0))
	le(&w.buf, EvNoAction)
	w.buf.Write(make([]byte, 20))
	le(&w.buf, uint32(spec.Len()))
	w.buf.Write(spec.Bytes())
	return w, nil
}

// measure appends an event whose digest is the hash of data in every bank: what firmware
// logs for events whose data is what it measured.
func (w *logWriter) measure(pcr int, typ uint32, data []byte) {
	digests := make(map[crypto.Hash][]byte, len(w.banks))
	for _, h := range w.banks {
		d := h.New()
		d.Write(data)
		digests[h] = d.Sum(nil)
	}
	w.event(pcr, typ, digests, data)
}

// event appends a TCG_PCR_EVENT2 (PFP): PCR index, type, a TPML_DIGEST_VALUES with the
// digest of every bank, then the event data.
func (w *logWriter) event(pcr int, typ uint32, digests map[crypto.Hash][]byte, data []byte) {
	le(&w.buf, uint32(pcr))
	le(&w.buf, typ)
	le(&w.buf, uint32(len(w.banks)))
	for _, h := range w.banks {
		id, _ := algID(h)
		le(&w.buf, uint16(id))
		w.buf.Write(digests[h])
	}
	le(&w.buf, uint32(len(data)))
	w.buf.Write(data)
}
