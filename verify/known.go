package verify

// This file remembers what the verifier decoded of the TPMs it accepted: the EK and AK
// public areas (go-tpm's reflection decoder) and the parsed EK certificate (crypto/x509),
// by the SHA-256 of the bytes the TPM sent. A TPM re-attests at every SVID renewal with
// the same bytes, and decoding them again was a third of what a re-attestation cost the
// plugin (README, "Scale"). Only the decoding is remembered: every check (attributes,
// lists, the EK type, the chain and its validity at now, the key match) runs again on the
// remembered structures, which no code modifies once decoded. A TPM is remembered only
// once an attestation of it was accepted, so bytes that never completed credential
// activation cannot push others out.

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/google/go-tpm/tpm2"
)

// maxKnownTPMs bounds the TPMs remembered, as maxVerifiedChains bounds the chains; beyond
// it the oldest are forgotten and decoded again at their next attestation. An entry is
// two decoded public areas and a parsed certificate, about 6 KB.
const maxKnownTPMs = 16384

// knownTPM is what was decoded of one accepted TPM's Hello; cert is nil when it sent no
// certificate or one that did not verify.
type knownTPM struct {
	ekPub, akPub *tpm2.TPMTPublic
	cert         *EKCertificate
}

// known is the verifier's memory, shared by every Verifier and Enroller of the process:
// what it holds depends only on the bytes, never on a policy.
var known = newBoundedMap[[sha256.Size]byte, *knownTPM](maxKnownTPMs)

// knownKey is the SHA-256 of the three byte strings, each preceded by its length.
func knownKey(ekCert, ekPublic, akPublic []byte) [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{ekCert, ekPublic, akPublic} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}
