package tpm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpmrules"
)

// ErrNoEKCertificate is returned when the TPM has no certificate for an EK kind.
var ErrNoEKCertificate = errors.New("tpm: no EK certificate in NV")

// ReadEKCertificate returns the raw bytes of the EK certificate NV index of kind, exactly
// as stored: vendors often pad the DER with trailing zeros (verify.ParseEKCertificate
// strips them).
func ReadEKCertificate(t transport.TPM, kind tpmrules.EKKind) ([]byte, error) {
	b, err := ReadNV(t, kind.CertIndex)
	if errors.Is(err, ErrNVIndexAbsent) {
		return nil, fmt.Errorf("%w: %s index 0x%08X is not defined", ErrNoEKCertificate, kind.Name, uint32(kind.CertIndex))
	}
	return b, err
}

// EK is a loaded endorsement key. Close flushes it when it was created as a transient
// object; a persistent EK stays.
type EK struct {
	Kind       tpmrules.EKKind
	Handle     tpm2.TPMHandle
	Name       tpm2.TPM2BName
	Public     tpm2.TPMTPublic
	Persistent bool
}

// PublicKey returns the EK's public key.
func (ek *EK) PublicKey() (crypto.PublicKey, error) { return tpm2.Pub(ek.Public) }

// NamedHandle returns the EK as an authorization-free handle with its name.
func (ek *EK) NamedHandle() tpm2.NamedHandle {
	return tpm2.NamedHandle{Handle: ek.Handle, Name: ek.Name}
}

// Close flushes a transient EK.
func (ek *EK) Close(t transport.TPM) error {
	if ek.Persistent {
		return nil
	}
	return flush(t, ek.Handle)
}

// LoadEK loads the EK of kind: from its persistent handle when one holds a key of the
// same template (TPM2_ReadPublic), else by TPM2_CreatePrimary in the endorsement hierarchy
// from the TCG template. The caller must Close it.
func LoadEK(t transport.TPM, kind tpmrules.EKKind) (*EK, error) {
	if kind.PersistentHandle != 0 {
		if rp, err := (tpm2.ReadPublic{ObjectHandle: kind.PersistentHandle}).Execute(t); err == nil {
			pub, err := rp.OutPublic.Contents()
			if err == nil && sameTemplate(pub, &kind.Template) {
				return &EK{Kind: kind, Handle: kind.PersistentHandle, Name: rp.Name, Public: *pub, Persistent: true}, nil
			}
		}
	}
	r, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(kind.Template),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: CreatePrimary(EK %s): %w", kind.Name, err)
	}
	pub, err := r.OutPublic.Contents()
	if err != nil {
		_ = flush(t, r.ObjectHandle)
		return nil, fmt.Errorf("tpm: CreatePrimary(EK %s): %w", kind.Name, err)
	}
	if lack := tpmrules.EKAttributesLack(pub.ObjectAttributes); len(lack) > 0 {
		_ = flush(t, r.ObjectHandle)
		return nil, fmt.Errorf("tpm: CreatePrimary(EK %s): not an endorsement key: attributes lack %v", kind.Name, lack)
	}
	return &EK{Kind: kind, Handle: r.ObjectHandle, Name: r.Name, Public: *pub}, nil
}

// sameTemplate reports whether a loaded key was made from template: same type, name
// algorithm, attributes, policy and parameters (the unique field is the key itself).
func sameTemplate(pub, template *tpm2.TPMTPublic) bool {
	a, b := *pub, *template
	a.Unique, b.Unique = tpm2.TPMUPublicID{}, tpm2.TPMUPublicID{}
	return bytes.Equal(tpm2.Marshal(a), tpm2.Marshal(b))
}

// EndorsementKey is one EK of a TPM with its certificate, for display and verification.
type EndorsementKey struct {
	Kind        tpmrules.EKKind
	Public      tpm2.TPMTPublic
	PublicKey   crypto.PublicKey
	Persistent  bool
	Certificate []byte // raw NV content; nil when the TPM has no certificate for this kind
}

// EndorsementKeys returns every EK kind for which the TPM holds a certificate, with the
// EK public key loaded from its persistent handle or recreated from its template. A TPM
// without any EK certificate gets its RSA-2048 EK, with a nil Certificate. Nothing is left
// loaded.
func EndorsementKeys(t transport.TPM) ([]EndorsementKey, error) {
	var out []EndorsementKey
	for _, kind := range tpmrules.EKKinds {
		cert, err := ReadEKCertificate(t, kind)
		if errors.Is(err, ErrNoEKCertificate) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ek, err := endorsementKey(t, kind)
		if err != nil {
			return nil, err
		}
		ek.Certificate = cert
		out = append(out, *ek)
	}
	if len(out) == 0 {
		ek, err := endorsementKey(t, tpmrules.EKRSA2048)
		if err != nil {
			return nil, err
		}
		out = append(out, *ek)
	}
	return out, nil
}

func endorsementKey(t transport.TPM, kind tpmrules.EKKind) (*EndorsementKey, error) {
	ek, err := LoadEK(t, kind)
	if err != nil {
		return nil, err
	}
	defer ek.Close(t)
	pk, err := ek.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("tpm: EK %s public key: %w", kind.Name, err)
	}
	return &EndorsementKey{Kind: kind, Public: ek.Public, PublicKey: pk, Persistent: ek.Persistent}, nil
}
