package tpmrules

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The EK types of the TCG EK Credential Profile (2.2.1.5), by the names the agent's
// ek_type, the server's ek_type and EKKind.Name use.
const (
	EKTypeRSA2048 = "RSA-2048"
	EKTypeECCP256 = "ECC-P256"
	EKTypeECCP384 = "ECC-P384"
)

// EKKind is one of the EK types of the TCG EK Credential Profile (section 2.2.1.4): the
// template the TPM derives the key from, the NV index that holds its certificate, and the
// persistent handle where platforms conventionally keep it (zero when none is assigned).
type EKKind struct {
	Name             string // EKTypeRSA2048, EKTypeECCP256, EKTypeECCP384
	CertIndex        tpm2.TPMHandle
	PersistentHandle tpm2.TPMHandle
	Template         tpm2.TPMTPublic
}

// The EK kinds omens knows, in order of preference when a TPM holds several.
var (
	EKRSA2048 = EKKind{Name: EKTypeRSA2048, CertIndex: 0x01C00002, PersistentHandle: 0x81010001, Template: tpm2.RSAEKTemplate}
	EKECCP256 = EKKind{Name: EKTypeECCP256, CertIndex: 0x01C0000A, PersistentHandle: 0x81010002, Template: tpm2.ECCEKTemplate}
	EKECCP384 = EKKind{Name: EKTypeECCP384, CertIndex: 0x01C00016, PersistentHandle: 0x81010016, Template: eccP384EKTemplate}
	EKKinds   = []EKKind{EKRSA2048, EKECCP256, EKECCP384}
)

// EKKindNamed returns the EK kind of the type name (EKTypeRSA2048, ...).
func EKKindNamed(name string) (EKKind, bool) {
	for _, k := range EKKinds {
		if k.Name == name {
			return k, true
		}
	}
	return EKKind{}, false
}

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

// EKType names the type of an EK public area: one of the EKType constants, or a
// description of another key.
func EKType(pub *tpm2.TPMTPublic) string {
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		if p, err := pub.Parameters.RSADetail(); err == nil {
			if p.KeyBits == 2048 {
				return EKTypeRSA2048
			}
			return fmt.Sprintf("RSA-%d", p.KeyBits)
		}
	case tpm2.TPMAlgECC:
		if p, err := pub.Parameters.ECCDetail(); err == nil {
			switch p.CurveID {
			case tpm2.TPMECCNistP256:
				return EKTypeECCP256
			case tpm2.TPMECCNistP384:
				return EKTypeECCP384
			}
			return fmt.Sprintf("ECC curve 0x%04X", uint16(p.CurveID))
		}
	}
	return fmt.Sprintf("key type 0x%04X", uint16(pub.Type))
}
