package tpm_test

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// hostileTPM answers every command with bytes from the fuzzer: the response header is kept
// well-formed often enough (success code, plausible size) for the parsers behind it to run.
type hostileTPM struct {
	data  []byte
	calls int
}

func (h *hostileTPM) Send(cmd []byte) ([]byte, error) {
	h.calls++
	if len(h.data) < 2 {
		return nil, errTooManyCalls
	}
	n := int(binary.BigEndian.Uint16(h.data[:2])) % 1024
	h.data = h.data[2:]
	n = min(n, len(h.data))
	body := h.data[:n]
	h.data = h.data[n:]
	rsp := make([]byte, 10, 10+len(body))
	binary.BigEndian.PutUint16(rsp[0:], uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(rsp[2:], uint32(10+len(body)))
	return append(rsp, body...), nil
}

type fuzzErr string

func (e fuzzErr) Error() string { return string(e) }

const errTooManyCalls = fuzzErr("hostile TPM: no more responses")

// FuzzTPMResponses feeds arbitrary TPM responses to every reader of TPM output: none may
// panic or loop forever, whatever the TPM (or a man in the middle on its socket) says.
func FuzzTPMResponses(f *testing.F) {
	f.Add([]byte{0, 4, 0, 0, 0, 0})
	f.Add(append([]byte{0, 30}, make([]byte, 30)...))
	f.Add(append([]byte{0x01, 0x00}, make([]byte, 256)...))
	// A GetCapability(TPM_PROPERTIES) answer with moreData set and one property.
	f.Add([]byte{0, 17, 1, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 1, 0x05, 'M', 'S', 'F', 'T'})
	f.Fuzz(func(t *testing.T, data []byte) {
		all, _ := tpm.ParsePCRSelection("all")
		for _, run := range []func(h *hostileTPM){
			func(h *hostileTPM) { tpm.ReadInfo(h) },
			func(h *hostileTPM) { tpm.ReadPCRs(h, tpmrules.Banks[1], all) },
			func(h *hostileTPM) { tpm.ReadNV(h, tpmrules.EKRSA2048.CertIndex) },
			func(h *hostileTPM) { tpm.EndorsementKeys(h) },
			func(h *hostileTPM) { tpm.TransientHandles(h) },
			func(h *hostileTPM) { tpm.AllocatedPCRs(h) },
			func(h *hostileTPM) { tpm.ReadPersistent(h, tpmrules.DefaultAKHandle) },
			func(h *hostileTPM) {
				if ek, err := tpm.LoadEK(h, tpmrules.EKRSA2048); err == nil {
					tpm.LoadOrCreateAK(h, ek, tpmrules.DefaultAKHandle)
				}
			},
		} {
			h := &hostileTPM{data: data}
			run(h)
			// Every reader is bounded: the largest NV index takes 128 reads of 512 bytes.
			if h.calls > 200 {
				t.Fatalf("%d TPM commands for one operation: a loop does not end on hostile answers", h.calls)
			}
		}
	})
}
