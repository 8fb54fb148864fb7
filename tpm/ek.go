package tpm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// EKKind is one of the EK types of the TCG EK Credential Profile (section 2.2.1.4): the
// template the TPM derives the key from, the NV index that holds its certificate, and the
// persistent handle where platforms conventionally keep it (zero when none is assigned).
type EKKind struct {
	Name             string // "RSA-2048", "ECC-P256", "ECC-P384"
	CertIndex        tpm2.TPMHandle
	PersistentHandle tpm2.TPMHandle
	Template         tpm2.TPMTPublic
}

// The EK kinds omens knows, in order of preference when a TPM holds several.
var (
	EKRSA2048 = EKKind{Name: "RSA-2048", CertIndex: 0x01C00002, PersistentHandle: 0x81010001, Template: tpm2.RSAEKTemplate}
	EKECCP256 = EKKind{Name: "ECC-P256", CertIndex: 0x01C0000A, PersistentHandle: 0x81010002, Template: tpm2.ECCEKTemplate}
	EKECCP384 = EKKind{Name: "ECC-P384", CertIndex: 0x01C00016, PersistentHandle: 0x81010016, Template: eccP384EKTemplate}
	EKKinds   = []EKKind{EKRSA2048, EKECCP256, EKECCP384}
)

// policyBSHA384 is the high-range EK policy digest for SHA-384 (TCG EK Credential Profile
// 2.x, B.6.2 "PolicyB"): PolicyOR over PolicySecret(TPM_RH_ENDORSEMENT) and
// PolicyAuthorizeNV.
var policyBSHA384 = []byte{
	0xB2, 0x6E, 0x7D, 0x28, 0xD1, 0x1A, 0x50, 0xBC, 0x53, 0xD8, 0x82, 0xBC, 0xF5, 0xFD, 0x3A, 0x1A,
	0x07, 0x41, 0x48, 0xBB, 0x35, 0xD3, 0xB4, 0xE4, 0xCB, 0x1C, 0x0A, 0xD9, 0xBD, 0xE4, 0x19, 0xCA,
	0xCB, 0x47, 0xBA, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0F, 0x9F, 0xC0, 0x00, 0xF3, 0xF8, 0x0E, 0x12,
}

// eccP384EKTemplate is template H-3 of the TCG EK Credential Profile (B.4.5): ECC NIST
// P-384, SHA-384 name, AES-256-CFB, userWithAuth and PolicyB, empty unique.
var eccP384EKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA384,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		AdminWithPolicy:     true,
		Restricted:          true,
		Decrypt:             true,
	},
	AuthPolicy: tpm2.TPM2BDigest{Buffer: policyBSHA384},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		CurveID: tpm2.TPMECCNistP384,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// ErrNoEKCertificate is returned when the TPM has no certificate for an EK kind.
var ErrNoEKCertificate = errors.New("tpm: no EK certificate in NV")

// ReadEKCertificate returns the raw bytes of the EK certificate NV index of kind, exactly
// as stored: vendors often pad the DER with trailing zeros (verify.ParseEKCertificate
// strips them).
func ReadEKCertificate(t transport.TPM, kind EKKind) ([]byte, error) {
	b, err := ReadNV(t, kind.CertIndex)
	if errors.Is(err, ErrNVIndexAbsent) {
		return nil, fmt.Errorf("%w: %s index 0x%08X is not defined", ErrNoEKCertificate, kind.Name, uint32(kind.CertIndex))
	}
	return b, err
}

// EK is a loaded endorsement key. Close flushes it when it was created as a transient
// object; a persistent EK stays.
type EK struct {
	Kind       EKKind
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
func LoadEK(t transport.TPM, kind EKKind) (*EK, error) {
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
	Kind        EKKind
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
	for _, kind := range EKKinds {
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
		ek, err := endorsementKey(t, EKRSA2048)
		if err != nil {
			return nil, err
		}
		out = append(out, *ek)
	}
	return out, nil
}

func endorsementKey(t transport.TPM, kind EKKind) (*EndorsementKey, error) {
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
