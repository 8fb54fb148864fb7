package tpmrules

import "github.com/google/go-tpm/tpm2"

// AKTemplate is the attestation key omens creates: ECC NIST P-256, ECDSA with SHA-256, a
// restricted signing key (it signs only TPM-generated structures, so a quote cannot be
// forged with it) that never leaves the TPM (fixedTPM, fixedParent, sensitiveDataOrigin).
var AKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// SRK templates: a restricted decryption key of the owner hierarchy with AES-128-CFB for
// its children, userWithAuth and noDA, an empty authPolicy and an empty unique field, the
// SRK of the TCG TPM v2.0 Provisioning Guidance. SPIRE's tpm_devid calls them the "H-1"
// and "H-2" templates, after the EK Credential Profile's high range, whose empty unique
// they share.
// The unique field takes part in deriving a primary key: go-tpm's tpm2.RSASRKTemplate and
// tpm2.ECCSRKTemplate fill it with zeros and so derive another SRK, under which blobs made
// here would not load, nor those made by tpm_devid's provisioning.
var (
	SRKTemplateRSA = tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: srkAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: srkSymmetric,
			KeyBits:   2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	}
	SRKTemplateECC = tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: srkAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: srkSymmetric,
			CurveID:   tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
)

var srkAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	NoDA:                true,
	Restricted:          true,
	Decrypt:             true,
}

var srkSymmetric = tpm2.TPMTSymDefObject{
	Algorithm: tpm2.TPMAlgAES,
	KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
	Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
}

// SRKTemplate returns the SRK template of key type alg (tpm2.TPMAlgRSA or
// tpm2.TPMAlgECC); ok is false for another type.
func SRKTemplate(alg tpm2.TPMAlgID) (tmpl tpm2.TPMTPublic, ok bool) {
	switch alg {
	case tpm2.TPMAlgRSA:
		return SRKTemplateRSA, true
	case tpm2.TPMAlgECC:
		return SRKTemplateECC, true
	}
	return tpm2.TPMTPublic{}, false
}

// DevID templates: an unrestricted signing key (it signs CSRs, TLS handshakes and
// tpm_devid's challenge, none of them TPM-generated) that the TPM generated
// (sensitiveDataOrigin) and that cannot be duplicated (fixedTPM, fixedParent), with an
// empty auth value. noDA is set: with an empty auth value dictionary-attack protection
// guards nothing, and wrong auth values sent to the key would otherwise count towards the
// lockout of the whole TPM. The scheme is fixed with SHA-256, as tpm_devid signs with the
// key's own scheme and its server checks RSASSA (PKCS #1 v1.5) or ECDSA over SHA-256.
var (
	DevIDTemplateRSA = tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: devIDAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	}
	DevIDTemplateECC = tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: devIDAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
)

var devIDAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	NoDA:                true,
	SignEncrypt:         true,
}

// DevIDTemplate returns the DevID template of key type alg (tpm2.TPMAlgRSA or
// tpm2.TPMAlgECC); ok is false for another type.
func DevIDTemplate(alg tpm2.TPMAlgID) (tmpl tpm2.TPMTPublic, ok bool) {
	switch alg {
	case tpm2.TPMAlgRSA:
		return DevIDTemplateRSA, true
	case tpm2.TPMAlgECC:
		return DevIDTemplateECC, true
	}
	return tpm2.TPMTPublic{}, false
}
