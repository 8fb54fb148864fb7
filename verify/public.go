package verify

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// unmarshalPublic decodes a TPMT_PUBLIC of an RSA or ECC key and insists on its canonical
// encoding: the bytes are exactly one structure (no trailing bytes) and no reserved
// attribute bit is set, so the name computed over the bytes is the TPM's. It walks the
// encoding (TPM 2.0 Part 2, 12.2.4) instead of marshalling the decoded structure again,
// which costs more than everything else the verifier does outside public-key operations.
func unmarshalPublic(b []byte) (*tpm2.TPMTPublic, error) {
	n, err := publicSize(b)
	if errors.Is(err, errKeyType) {
		// Neither RSA nor ECC: the callers refuse it by its type, with their own words.
		return unmarshalCanonical[tpm2.TPMTPublic](b)
	}
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, errNotCanonical
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, err
	}
	return pub, nil
}

var errKeyType = errors.New("key type is neither RSA nor ECC")

// reservedObjectAttributes are the bits of TPMA_OBJECT that TPM 2.0 Part 2, 8.3.2
// reserves: 0, 3, 8, 9, 12 to 15, and 20 to 31.
const reservedObjectAttributes = 0xFFF0F309

// publicSize returns the length of the TPMT_PUBLIC at the start of b.
func publicSize(b []byte) (int, error) {
	r := reader{b: b}
	typ := r.u16()
	r.u16() // nameAlg
	if attrs := r.u32(); attrs&reservedObjectAttributes != 0 && r.err == nil {
		return 0, fmt.Errorf("reserved object attribute bits 0x%08X are set", attrs&reservedObjectAttributes)
	}
	r.sized() // authPolicy
	symmetric := func() {
		if alg := r.u16(); alg != uint16(tpm2.TPMAlgNull) {
			r.u16() // keyBits
			r.u16() // mode
		}
	}
	scheme := func() {
		switch alg := r.u16(); alg {
		case uint16(tpm2.TPMAlgNull):
		case uint16(tpm2.TPMAlgECDAA):
			r.u16() // hashAlg
			r.u16() // count
		default:
			r.u16() // hashAlg
		}
	}
	switch typ {
	case uint16(tpm2.TPMAlgRSA):
		symmetric()
		scheme()
		r.u16() // keyBits
		r.u32() // exponent
		r.sized()
	case uint16(tpm2.TPMAlgECC):
		symmetric()
		scheme()
		r.u16()  // curveID
		scheme() // kdf: the same shape as a scheme with a hash
		r.sized()
		r.sized()
	default:
		return 0, errKeyType
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.off, nil
}

// reader reads big-endian TPM fields and remembers the first short read.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.off < n {
		r.err = errors.New("truncated")
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// sized skips a TPM2B: a 16-bit size and that many bytes.
func (r *reader) sized() { r.take(int(r.u16())) }
