package verify

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzCheckAttestFields: whatever TPMS_ATTEST checkAttestFields accepts has every
// variable-size field within its bound: a qualifiedSigner that is a SHA-256 name,
// extraData no longer than the nonce, a quote's PCR digest of 32 bytes, a Certify's names
// SHA-256 names.
func FuzzCheckAttestFields(f *testing.F) {
	name := append([]byte{0x00, 0x0B}, bytes.Repeat([]byte{0x11}, 32)...)
	quote := tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: name}, ExtraData: tpm2.TPM2BData{Buffer: make([]byte, 32)},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0x95, 0, 0}}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
		}),
	}
	certify := quote
	certify.Type = tpm2.TPMSTAttestCertify
	certify.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{Name: tpm2.TPM2BName{Buffer: name}, QualifiedName: tpm2.TPM2BName{Buffer: name}})
	f.Add(tpm2.Marshal(quote), true)
	f.Add(tpm2.Marshal(certify), false)
	f.Fuzz(func(t *testing.T, b []byte, isQuote bool) {
		a, err := unmarshalCanonical[tpm2.TPMSAttest](b)
		if err != nil {
			return
		}
		typ := tpm2.TPMSTAttestCertify
		if isQuote {
			typ = tpm2.TPMSTAttestQuote
		}
		bounds := attestBounds{signerAlg: tpm2.TPMAlgSHA256, typ: typ, nonce: 32, digest: 32, certifiedAlg: tpm2.TPMAlgSHA256}
		if checkAttestFields(a, bounds) != nil {
			return
		}
		sha256Name := func(n []byte) bool { return len(n) == 34 && binary.BigEndian.Uint16(n) == uint16(tpm2.TPMAlgSHA256) }
		if !sha256Name(a.QualifiedSigner.Buffer) || len(a.ExtraData.Buffer) > 32 {
			t.Fatalf("accepted qualifiedSigner %x, extraData %x", a.QualifiedSigner.Buffer, a.ExtraData.Buffer)
		}
		if a.Type == typ && isQuote {
			if q, err := a.Attested.Quote(); err != nil || len(q.PCRDigest.Buffer) != 32 {
				t.Fatalf("accepted a quote whose PCR digest is %v (%v)", q, err)
			}
		}
		if a.Type == typ && !isQuote {
			if c, err := a.Attested.Certify(); err != nil || !sha256Name(c.Name.Buffer) || !sha256Name(c.QualifiedName.Buffer) {
				t.Fatalf("accepted a Certify of names %v (%v)", c, err)
			}
		}
	})
}

// FuzzUnmarshalWalked checks the decoders against go-tpm: unmarshalAttest and
// unmarshalSignature accept exactly what go-tpm decodes and re-encodes to itself, and
// decode it to what encodes as go-tpm's decoding does, to the input.
func FuzzUnmarshalWalked(f *testing.F) {
	name := append([]byte{0x00, 0x0B}, bytes.Repeat([]byte{0x11}, 32)...)
	quote := tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: name}, ExtraData: tpm2.TPM2BData{Buffer: make([]byte, 32)},
		ClockInfo: tpm2.TPMSClockInfo{Clock: 7, Safe: true},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0x95, 0, 0}}, {Hash: tpm2.TPMAlgSHA1, PCRSelect: []byte{1}}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
		}),
	}
	certify := quote
	certify.Type = tpm2.TPMSTAttestCertify
	certify.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{Name: tpm2.TPM2BName{Buffer: name}, QualifiedName: tpm2.TPM2BName{Buffer: name}})
	ecdsa := tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
		Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)}, SignatureS: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)}})}
	rsassa := tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
		Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}})}
	for _, b := range [][]byte{tpm2.Marshal(quote), tpm2.Marshal(certify), tpm2.Marshal(ecdsa), tpm2.Marshal(rsassa)} {
		f.Add(b)
		f.Add(append(b, 0))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, werr := unmarshalAttest(b)
		ca, cerr := unmarshalCanonical[tpm2.TPMSAttest](b)
		if (werr == nil) != (cerr == nil) {
			t.Fatalf("TPMS_ATTEST %x: walked %v, re-encoded %v", b, werr, cerr)
		}
		if werr == nil && (!bytes.Equal(tpm2.Marshal(*a), b) || !bytes.Equal(tpm2.Marshal(*ca), b) || a.Magic != ca.Magic || a.ClockInfo != ca.ClockInfo) {
			t.Fatalf("TPMS_ATTEST %x: decoded unlike go-tpm", b)
		}
		s, werr := unmarshalSignature(b)
		cs, cerr := unmarshalCanonical[tpm2.TPMTSignature](b)
		if (werr == nil) != (cerr == nil) {
			t.Fatalf("TPMT_SIGNATURE %x: walked %v, re-encoded %v", b, werr, cerr)
		}
		if werr == nil && (!bytes.Equal(tpm2.Marshal(*s), b) || !bytes.Equal(tpm2.Marshal(*cs), b)) {
			t.Fatalf("TPMT_SIGNATURE %x: decoded unlike go-tpm", b)
		}
	})
}
