package verify

// This file holds the rules that apply to every TPM structure and signature the verifier
// checks (quotes and Certify alike): canonical decoding and names (Part 1, 16 "Names"),
// hash strength, the bounds of the TPMS_ATTEST fields (TPM 2.0 Part 2, 10.12.12), the
// qualified name of the AK, which a TPM puts in TPMS_ATTEST.qualifiedSigner, and the AK's
// signature over a TPMS_ATTEST. The public areas of keys are decoded in public.go.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// strongHashes are the hashes accepted in signatures and names: SHA-256 or stronger.
var strongHashes = map[tpm2.TPMIAlgHash]bool{tpm2.TPMAlgSHA256: true, tpm2.TPMAlgSHA384: true, tpm2.TPMAlgSHA512: true}

// hashName names a TPM hash algorithm in messages: "SHA-1 (0x0004)".
func hashName(alg tpm2.TPMIAlgHash) string {
	names := map[tpm2.TPMIAlgHash]string{
		tpm2.TPMAlgSHA1: "SHA-1", tpm2.TPMAlgSHA256: "SHA-256", tpm2.TPMAlgSHA384: "SHA-384",
		tpm2.TPMAlgSHA512: "SHA-512", tpm2.TPMAlgNull: "TPM_ALG_NULL",
	}
	if n, ok := names[alg]; ok {
		return fmt.Sprintf("%s (0x%04X)", n, uint16(alg))
	}
	return fmt.Sprintf("0x%04X", uint16(alg))
}

// checkHash refuses a hash that is weaker than SHA-256 (weak_hash: SHA-1, whose
// chosen-prefix collisions are practical) and, under the check otherwise, one that is not
// SHA-256, SHA-384 or SHA-512. what names the field, e.g. "AK RSASSA scheme hash".
func checkHash(what string, alg tpm2.TPMIAlgHash, otherwise string) error {
	switch {
	case strongHashes[alg]:
		return nil
	case alg == tpm2.TPMAlgSHA1:
		return reject(CheckWeakHash, "%s is %s, want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions", what, hashName(alg))
	default:
		return reject(otherwise, "%s is %s, want SHA-256, SHA-384 or SHA-512", what, hashName(alg))
	}
}

// maxDigest is sizeof(TPMU_HA), the largest digest a TPM structure holds (SHA-512), and
// maxName sizeof(TPMU_NAME): a hash algorithm and such a digest (Part 2, 10.3.1, 10.5.3).
const (
	maxDigest = 64
	maxName   = 2 + maxDigest
)

// checkNameField checks a TPM2B_NAME of a TPMS_ATTEST that names an object whose name
// algorithm is alg: a 2-byte algorithm identifier, alg, then a digest of alg's size.
func checkNameField(what string, name []byte, alg tpm2.TPMIAlgHash) error {
	if len(name) > maxName {
		return fmt.Errorf("%s is %d bytes, more than a TPM2B_NAME holds (%d)", what, len(name), maxName)
	}
	h, err := alg.Hash()
	if err != nil {
		return fmt.Errorf("%s: name algorithm %s: %v", what, hashName(alg), err)
	}
	if len(name) < 2 || tpm2.TPMIAlgHash(binary.BigEndian.Uint16(name)) != alg {
		got := "nothing"
		if len(name) >= 2 {
			got = hashName(tpm2.TPMIAlgHash(binary.BigEndian.Uint16(name)))
		}
		return fmt.Errorf("%s starts with %s, want the name algorithm %s", what, got, hashName(alg))
	}
	if len(name) != 2+h.Size() {
		return fmt.Errorf("%s is %d bytes, want %d (a %s name)", what, len(name), 2+h.Size(), hashName(alg))
	}
	return nil
}

// attestBounds are what a TPMS_ATTEST's fields may hold.
type attestBounds struct {
	// signerAlg is the AK's name algorithm.
	signerAlg tpm2.TPMIAlgHash
	// typ is the structure expected (TPM_ST_ATTEST_QUOTE or _CERTIFY): the fields of its
	// attested information are checked only when the structure is of that type.
	typ tpm2.TPMISTAttest
	// nonce is the qualifying data the verifier drew: extraData holds at most as many
	// bytes.
	nonce int
	// digest is the size of the AK's signing hash: a quote's PCR digest has that size
	// (Part 3, 18.4.1).
	digest int
	// certifiedAlg is the name algorithm of the key a Certify is about.
	certifiedAlg tpm2.TPMIAlgHash
}

// checkAttestFields checks every variable-size field of a TPMS_ATTEST (Part 2, 10.12.12)
// against what the spec lets a TPM put there, before the structure is hashed or believed:
// qualifiedSigner is a TPM2B_NAME of the AK's name algorithm (checkSigner then compares
// it with the AK's qualified name, once the structure is known to be the TPM's), extraData
// is no longer than the verifier's nonce; in a quote the PCR digest has the size of the
// signing hash; in a Certify, name and qualifiedName are names of the certified key's name
// algorithm. clockInfo and firmwareVersion have a fixed size (unmarshalCanonical refuses a
// TPMI_YES_NO other than 0 or 1 in clockInfo.safe). A structure of another type than
// b.typ is left to the caller's type check.
func checkAttestFields(a *tpm2.TPMSAttest, b attestBounds) error {
	if err := checkNameField("qualifiedSigner", a.QualifiedSigner.Buffer, b.signerAlg); err != nil {
		return err
	}
	if n := len(a.ExtraData.Buffer); n > b.nonce {
		return fmt.Errorf("extraData is %d bytes, longer than the %d-byte nonce", n, b.nonce)
	}
	if a.Type != b.typ {
		return nil
	}
	switch a.Type {
	case tpm2.TPMSTAttestQuote:
		q, err := a.Attested.Quote()
		if err != nil {
			return fmt.Errorf("quote info: %v", err)
		}
		if n := len(q.PCRDigest.Buffer); n != b.digest {
			return fmt.Errorf("PCR digest is %d bytes, want %d (the size of the AK's signing hash, Part 3, 18.4.1)", n, b.digest)
		}
	case tpm2.TPMSTAttestCertify:
		c, err := a.Attested.Certify()
		if err != nil {
			return fmt.Errorf("Certify info: %v", err)
		}
		if err := checkNameField("certified name", c.Name.Buffer, b.certifiedAlg); err != nil {
			return err
		}
		if err := checkNameField("certified qualifiedName", c.QualifiedName.Buffer, b.certifiedAlg); err != nil {
			return err
		}
	}
	return nil
}

// checkSigner compares the qualifiedSigner of a TPMS_ATTEST the TPM made with qn, the
// qualified name of the AK as a child of the EK (nil: not known, not compared). A TPM puts
// there the qualified name of the key that signs (Part 2, 10.12.12; Part 3, 18.4.1), so
// another value is another key, or the AK under another parent.
func checkSigner(a *tpm2.TPMSAttest, qn []byte) error {
	if qn != nil && string(a.QualifiedSigner.Buffer) != string(qn) {
		return fmt.Errorf("qualifiedSigner %x is not %x, the qualified name of this AK as a child of this EK (TPM 2.0 Part 1, 16; create the AK under the EK)",
			a.QualifiedSigner.Buffer, qn)
	}
	return nil
}

// schemeName names a signature scheme in messages.
func schemeName(alg tpm2.TPMIAlgSigScheme) string {
	switch alg {
	case tpm2.TPMAlgRSASSA:
		return "RSASSA"
	case tpm2.TPMAlgRSAPSS:
		return "RSAPSS"
	case tpm2.TPMAlgECDSA:
		return "ECDSA"
	}
	return fmt.Sprintf("0x%04X", uint16(alg))
}

// signatureHash is the hash a TPMT_SIGNATURE says it signed with, for the RSA and ECDSA
// schemes.
func signatureHash(sig *tpm2.TPMTSignature) (tpm2.TPMIAlgHash, error) {
	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA:
		r, err := sig.Signature.RSASSA()
		if err != nil {
			return 0, err
		}
		return r.Hash, nil
	case tpm2.TPMAlgRSAPSS:
		r, err := sig.Signature.RSAPSS()
		if err != nil {
			return 0, err
		}
		return r.Hash, nil
	case tpm2.TPMAlgECDSA:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, err
		}
		return e.Hash, nil
	}
	return 0, fmt.Errorf("signature algorithm %s", schemeName(sig.SigAlg))
}

// unmarshalCanonical decodes a TPM structure and insists on its canonical encoding (no
// trailing bytes, no alternative encodings), recovering from any panic of the marshaller.
func unmarshalCanonical[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (*T, error) {
	return unmarshalWalked[T, P](b, nil)
}

var errNotCanonical = errors.New("not in canonical TPM encoding (trailing or extra bytes)")

// errOtherShape is what a walker returns for a structure it does not walk: the caller
// marshals the decoded structure again instead.
var errOtherShape = errors.New("not a structure this walker knows")

// unmarshalWalked is unmarshalCanonical with a walker: size returns the length of the
// canonical encoding at the start of b (errNotCanonical when a field holds a value that
// go-tpm would encode otherwise, errOtherShape for a structure it does not walk), which
// spares marshalling the structure again, the most expensive part of decoding it.
func unmarshalWalked[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte, size func([]byte) (int, error)) (out *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("cannot re-encode: %v", r)
		}
	}()
	v, err := tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, err
	}
	if size != nil {
		n, err := size(b)
		switch {
		case err == nil && n == len(b):
			return v, nil
		case !errors.Is(err, errOtherShape):
			return nil, errNotCanonical
		}
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, errNotCanonical
	}
	return v, nil
}

// unmarshalAttest decodes a TPMS_ATTEST in canonical encoding: a quote or a Certify as
// decodeAttest reads it, another type by go-tpm.
func unmarshalAttest(b []byte) (*tpm2.TPMSAttest, error) {
	a, err := decodeAttest(b)
	if errors.Is(err, errOtherShape) {
		return unmarshalCanonical[tpm2.TPMSAttest](b)
	}
	return a, err
}

// unmarshalSignature decodes a TPMT_SIGNATURE in canonical encoding: of the RSASSA, RSAPSS
// or ECDSA scheme as decodeSignature reads it, another by go-tpm.
func unmarshalSignature(b []byte) (*tpm2.TPMTSignature, error) {
	sig, err := decodeSignature(b)
	if errors.Is(err, errOtherShape) {
		return unmarshalCanonical[tpm2.TPMTSignature](b)
	}
	return sig, err
}

// decodeAttest reads a TPMS_ATTEST of a quote or a Certify (TPM 2.0 Part 2, 10.12.12)
// field by field, as attestSize walks it, into the structure go-tpm's reflection decoder
// would build, at a fraction of its cost (a quote is decoded at every attestation):
// FuzzUnmarshalWalked holds the two to the same answers. The magic is kept as sent, for
// the caller to check. errOtherShape for another type.
func decodeAttest(b []byte) (*tpm2.TPMSAttest, error) {
	r := reader{b: b}
	a := &tpm2.TPMSAttest{Magic: tpm2.TPMGenerated(r.u32()), Type: tpm2.TPMISTAttest(r.u16())}
	if r.err == nil && a.Type != tpm2.TPMSTAttestQuote && a.Type != tpm2.TPMSTAttestCertify {
		return nil, errOtherShape
	}
	a.QualifiedSigner.Buffer = r.sizedBytes()
	a.ExtraData.Buffer = r.sizedBytes()
	a.ClockInfo.Clock = r.u64()
	a.ClockInfo.ResetCount = r.u32()
	a.ClockInfo.RestartCount = r.u32()
	safe := r.u8()
	a.ClockInfo.Safe = safe == 1
	a.FirmwareVersion = r.u64()
	if a.Type == tpm2.TPMSTAttestQuote {
		q := &tpm2.TPMSQuoteInfo{}
		for n := r.u32(); n > 0 && r.err == nil; n-- { // TPML_PCR_SELECTION
			sel := tpm2.TPMSPCRSelection{Hash: tpm2.TPMIAlgHash(r.u16())}
			sel.PCRSelect = bytes.Clone(r.take(int(r.u8())))
			q.PCRSelect.PCRSelections = append(q.PCRSelect.PCRSelections, sel)
		}
		q.PCRDigest.Buffer = r.sizedBytes()
		a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, q)
	} else {
		c := &tpm2.TPMSCertifyInfo{}
		c.Name.Buffer = r.sizedBytes()
		c.QualifiedName.Buffer = r.sizedBytes()
		a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, c)
	}
	switch {
	case r.err != nil:
		return nil, r.err
	case safe > 1, r.off != len(b):
		// A TPMI_YES_NO is 0 or 1; nothing follows the structure.
		return nil, errNotCanonical
	}
	return a, nil
}

// decodeSignature reads a TPMT_SIGNATURE of the RSASSA, RSAPSS or ECDSA scheme (TPM 2.0
// Part 2, 11.3.4), as signatureSize walks it, into the structure go-tpm would build;
// errOtherShape for another scheme.
func decodeSignature(b []byte) (*tpm2.TPMTSignature, error) {
	r := reader{b: b}
	sig := &tpm2.TPMTSignature{SigAlg: tpm2.TPMIAlgSigScheme(r.u16())}
	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		s := &tpm2.TPMSSignatureRSA{Hash: tpm2.TPMIAlgHash(r.u16())}
		s.Sig.Buffer = r.sizedBytes()
		sig.Signature = tpm2.NewTPMUSignature(sig.SigAlg, s)
	case tpm2.TPMAlgECDSA:
		s := &tpm2.TPMSSignatureECC{Hash: tpm2.TPMIAlgHash(r.u16())}
		s.SignatureR.Buffer = r.sizedBytes()
		s.SignatureS.Buffer = r.sizedBytes()
		sig.Signature = tpm2.NewTPMUSignature(sig.SigAlg, s)
	default:
		if r.err == nil {
			return nil, errOtherShape
		}
	}
	switch {
	case r.err != nil:
		return nil, r.err
	case r.off != len(b):
		return nil, errNotCanonical
	}
	return sig, nil
}

// attestSize walks a TPMS_ATTEST of a quote or a Certify (TPM 2.0 Part 2, 10.12.12).
func attestSize(b []byte) (int, error) {
	r := reader{b: b}
	r.u32() // magic
	typ := r.u16()
	r.sized() // qualifiedSigner
	r.sized() // extraData
	r.take(8) // clockInfo.clock
	r.u32()   // clockInfo.resetCount
	r.u32()   // clockInfo.restartCount
	if safe := r.take(1); safe != nil && safe[0] > 1 {
		return 0, errNotCanonical // a TPMI_YES_NO is 0 or 1
	}
	r.take(8) // firmwareVersion
	switch tpm2.TPMISTAttest(typ) {
	case tpm2.TPMSTAttestQuote:
		for n := r.u32(); n > 0 && r.err == nil; n-- { // TPML_PCR_SELECTION
			r.u16()             // hash
			r.take(int(r.u8())) // sizeofSelect, pcrSelect
		}
		r.sized() // pcrDigest
	case tpm2.TPMSTAttestCertify:
		r.sized() // name
		r.sized() // qualifiedName
	default:
		return 0, errOtherShape
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.off, nil
}

// signatureSize walks a TPMT_SIGNATURE of the RSASSA, RSAPSS or ECDSA scheme (TPM 2.0
// Part 2, 11.3.4).
func signatureSize(b []byte) (int, error) {
	r := reader{b: b}
	switch tpm2.TPMIAlgSigScheme(r.u16()) {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		r.u16()   // hash
		r.sized() // sig
	case tpm2.TPMAlgECDSA:
		r.u16()   // hash
		r.sized() // signatureR
		r.sized() // signatureS
	default:
		return 0, errOtherShape
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.off, nil
}

// canonicalName is the name of an object whose public area pub is in canonical encoding
// (unmarshalCanonical): its name algorithm and the digest of pub (Part 1, 16 "Names"),
// what tpm2.ObjectName computes without marshalling the area again.
func canonicalName(nameAlg tpm2.TPMIAlgHash, pub []byte) (*tpm2.TPM2BName, error) {
	h, err := nameAlg.Hash()
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(pub)
	name := binary.BigEndian.AppendUint16(make([]byte, 0, 2+h.Size()), uint16(nameAlg))
	return &tpm2.TPM2BName{Buffer: d.Sum(name)}, nil
}

// verifySignature checks sig over msg (a "quote" or other TPMS_ATTEST, as what says) with
// the AK, in the AK's own scheme.
// A signature that says it used a hash weaker than SHA-256 is refused as weak_hash before
// anything else, whatever the AK's scheme.
func verifySignature(key crypto.PublicKey, ak *tpm2.TPMTPublic, msg []byte, sig *tpm2.TPMTSignature, what string) error {
	if alg, err := signatureHash(sig); err == nil {
		if err := checkHash(what+" signature hash", alg, ""); err != nil && FailedCheck(err) == CheckWeakHash {
			return err
		}
	}
	h, err := signingHash(ak)
	if err != nil {
		return err
	}
	hh := h.New()
	hh.Write(msg)
	digest := hh.Sum(nil)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if sig.SigAlg != tpm2.TPMAlgECDSA {
			return fmt.Errorf("signature algorithm 0x%04X, the AK signs with ECDSA", uint16(sig.SigAlg))
		}
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return err
		}
		if e.Hash != tpm2.TPMIAlgHash(algOf(h)) {
			return fmt.Errorf("signature hash 0x%04X is not the AK's", uint16(e.Hash))
		}
		r, s := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest, r, s) {
			return fmt.Errorf("bad %s signature: not made by this AK", what)
		}
		return nil
	case *rsa.PublicKey:
		var r *tpm2.TPMSSignatureRSA
		switch sig.SigAlg {
		case tpm2.TPMAlgRSASSA:
			r, err = sig.Signature.RSASSA()
		case tpm2.TPMAlgRSAPSS:
			r, err = sig.Signature.RSAPSS()
		default:
			return fmt.Errorf("signature algorithm 0x%04X, the AK signs with RSA", uint16(sig.SigAlg))
		}
		if err != nil {
			return err
		}
		if r.Hash != tpm2.TPMIAlgHash(algOf(h)) {
			return fmt.Errorf("signature hash 0x%04X is not the AK's", uint16(r.Hash))
		}
		if sig.SigAlg == tpm2.TPMAlgRSAPSS {
			err = rsa.VerifyPSS(k, h, digest, r.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(k, h, digest, r.Sig.Buffer)
		}
		if err != nil {
			return fmt.Errorf("bad %s signature: not made by this AK", what)
		}
		return nil
	}
	return fmt.Errorf("AK key type %T", key)
}

func algOf(h crypto.Hash) tpm2.TPMAlgID {
	switch h {
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512
	}
	return tpm2.TPMAlgNull
}
