package tpmrules

import (
	"encoding/binary"

	"github.com/google/go-tpm/tpm2"
)

// QualifiedName is the qualified name of an object of name algorithm alg and name name
// whose parent has the qualified name parent: alg, then H_alg(parent || name) (TPM 2.0
// Part 1, 16 "Names"). The qualified name of a hierarchy is its handle.
func QualifiedName(alg tpm2.TPMIAlgHash, parent, name []byte) ([]byte, error) {
	h, err := alg.Hash()
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(parent)
	d.Write(name)
	return d.Sum(binary.BigEndian.AppendUint16(nil, uint16(alg))), nil
}

// AKQualifiedName is the qualified name of an AK (name akName, algorithm akAlg) created as
// a child of the EK, a primary key of the endorsement hierarchy (name ekName, algorithm
// ekAlg): what a TPM puts in TPMS_ATTEST.qualifiedSigner when that AK signs, and what
// TPM2_ReadPublic returns for it. The prover keeps its AK under the EK it attests with, and
// the verifier requires it.
func AKQualifiedName(ekAlg tpm2.TPMIAlgHash, ekName []byte, akAlg tpm2.TPMIAlgHash, akName []byte) ([]byte, error) {
	ekQN, err := QualifiedName(ekAlg, binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHEndorsement)), ekName)
	if err != nil {
		return nil, err
	}
	return QualifiedName(akAlg, ekQN, akName)
}
