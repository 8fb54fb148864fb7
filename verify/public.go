package verify

import (
	"bytes"
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
//
// Public areas made from one template (every EK of a vendor's RSA template, every AK of
// the agent's) differ only in unique, the key; go-tpm's reflection decoder is the largest
// cost of a TPM's first attestation. So the decoded fields before unique are remembered
// by their exact bytes (templates), and a public area whose bytes before unique are a
// remembered template's takes a copy of those fields and only its own unique, decoded
// here: a TPM2B_PUBLIC_KEY_RSA, or a TPMS_ECC_POINT's two TPM2B_ECC_PARAMETERs.
func unmarshalPublic(b []byte) (*tpm2.TPMTPublic, error) {
	n, uniqueAt, err := publicSize(b)
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
	if t, ok := templates.get(string(b[:uniqueAt])); ok {
		pub := *t
		pub.Unique = decodeUnique(pub.Type, b[uniqueAt:])
		return &pub, nil
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, err
	}
	t := *pub
	t.Unique = tpm2.TPMUPublicID{}
	templates.put(string(b[:uniqueAt]), &t)
	return pub, nil
}

// decodeUnique decodes the unique field of an RSA or ECC public area, whose encoding the
// walker (publicSize) has checked: one TPM2B for RSA, two for ECC.
func decodeUnique(typ tpm2.TPMIAlgPublic, b []byte) tpm2.TPMUPublicID {
	r := reader{b: b}
	if typ == tpm2.TPMAlgRSA {
		return tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: r.sizedBytes()})
	}
	x := r.sizedBytes()
	return tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: r.sizedBytes()}})
}

// maxTemplates bounds the templates remembered; a fleet has a few (one per EK type and
// vendor, one AK template), and beyond the bound the oldest is forgotten.
const maxTemplates = 64

// templates are decoded public areas, their unique field empty, by the exact bytes of
// their fields before unique. They are never modified: a public area decoded from one is a
// copy with its own unique, sharing the template's read-only fields.
var templates = newBoundedMap[string, *tpm2.TPMTPublic](maxTemplates)

var errKeyType = errors.New("key type is neither RSA nor ECC")

// reservedObjectAttributes are the bits of TPMA_OBJECT that TPM 2.0 Part 2, 8.3.2
// reserves: 0, 3, 8, 9, 12 to 15, and 20 to 31.
const reservedObjectAttributes = 0xFFF0F309

// publicSize returns the length of the TPMT_PUBLIC at the start of b, and the offset of
// its unique field.
func publicSize(b []byte) (n, uniqueAt int, err error) {
	r := reader{b: b}
	typ := r.u16()
	r.u16() // nameAlg
	if attrs := r.u32(); attrs&reservedObjectAttributes != 0 && r.err == nil {
		return 0, 0, fmt.Errorf("reserved object attribute bits 0x%08X are set", attrs&reservedObjectAttributes)
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
		uniqueAt = r.off
		r.sized()
	case uint16(tpm2.TPMAlgECC):
		symmetric()
		scheme()
		r.u16()  // curveID
		scheme() // kdf: the same shape as a scheme with a hash
		uniqueAt = r.off
		r.sized()
		r.sized()
	default:
		return 0, 0, errKeyType
	}
	if r.err != nil {
		return 0, 0, r.err
	}
	return r.off, uniqueAt, nil
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
		r.err = fmt.Errorf("truncated: a field at byte %d needs %d bytes, %d are left", r.off, n, len(r.b)-r.off)
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

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// sized skips a TPM2B: a 16-bit size and that many bytes.
func (r *reader) sized() { r.take(int(r.u16())) }

// sizedBytes reads a TPM2B's bytes, a copy.
func (r *reader) sizedBytes() []byte { return bytes.Clone(r.take(int(r.u16()))) }
