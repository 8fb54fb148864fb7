// Package softtpm is a software TPM for load generation, never used by the agent: it
// holds an EK and an AK as software keys, and answers omens' attestation challenge as a
// TPM would, so that `omens bench attest` can drive a thousand distinct TPM identities
// through a real SPIRE server without a simulator process each.
//
// What a TPM does inside, it does in software, exactly per the TPM 2.0 specification:
// TPM2_ActivateCredential (Part 1, 24 "Credential Protection"; Part 3, 12.5: the seed's
// RSA-OAEP decryption with label "IDENTITY", KDFa, the integrity HMAC, the CFB
// decryption) and TPM2_Quote (Part 3, 18.4: a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE
// signed by the AK). Its keys are software keys, so nothing it proves is rooted in
// hardware: it exists to load a verifier, and a test (softtpm_test.go) shows that the
// verifier accepts its evidence as it does the reference simulator's and that its
// credential activation answers what the simulator answers for the same challenge.
//
// The agent plugin and the prover must never import it (cmd/deps_test.go checks).
package softtpm

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
)

// The TPM properties a software TPM reports, in its Hello and in its EK certificate's
// subjectAltName: vendor "SOFT", so that no log mistakes it for a chip.
const (
	Manufacturer   = "SOFT"
	ManufacturerID = "id:534F4654"
	Model          = "omens-bench-softtpm"
	// FirmwareVersion is TPMS_ATTEST.firmwareVersion, 1.0.0.0.
	FirmwareVersion uint64 = 1 << 48
)

// identityLabel is the label of the seed's RSA-OAEP encryption in MakeCredential, with
// its terminating zero (Part 1, 24.4; B.10.4).
const identityLabel = "IDENTITY\x00"

// TPM is one software TPM: an RSA-2048 EK (the EK template of the TCG EK Credential
// Profile, tpmrules.EKRSA2048), its certificate from a manufacturer CA, an AK of
// tpmrules.AKTemplate as a child of the EK, and sha256 PCRs. Its methods may be called
// from several goroutines.
type TPM struct {
	EK       *rsa.PrivateKey
	EKPublic tpm2.TPMTPublic
	// EKCert is the EK certificate (DER), issued by the manufacturer CA.
	EKCert []byte
	AK     *ecdsa.PrivateKey
	// AKPublic is the AK's public area; AKName its name, AKQualifiedName its qualified
	// name as a child of the EK (what a TPM signs as qualifiedSigner).
	AKPublic        tpm2.TPMTPublic
	AKName          []byte
	AKQualifiedName []byte
	// PCRs holds the sha256 bank's values of tpmrules.DefaultPCRs().
	PCRs map[int][]byte

	mu    sync.Mutex
	clock uint64
}

// New makes a software TPM with fresh keys and an EK certificate from ca.
func New(ca *mfgca.CA) (*TPM, error) {
	ek, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("softtpm: EK: %w", err)
	}
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("softtpm: AK: %w", err)
	}
	return FromKeys(ca, ek, ak)
}

// FromKeys makes a software TPM from given keys: an RSA-2048 EK with exponent 65537 and a
// P-256 AK.
func FromKeys(ca *mfgca.CA, ek *rsa.PrivateKey, ak *ecdsa.PrivateKey) (*TPM, error) {
	if ek.N.BitLen() != 2048 || ek.E != 65537 {
		return nil, fmt.Errorf("softtpm: EK is RSA-%d with exponent %d, want RSA-2048 with 65537", ek.N.BitLen(), ek.E)
	}
	if ak.Curve != elliptic.P256() {
		return nil, fmt.Errorf("softtpm: AK is on %s, want P-256", ak.Curve.Params().Name)
	}
	t := &TPM{EK: ek, AK: ak, EKPublic: EKPublicArea(&ek.PublicKey), AKPublic: akPublicArea(&ak.PublicKey)}
	var err error
	if t.EKCert, err = ca.IssueEK(&ek.PublicKey, mfgca.EKTemplate{Manufacturer: ManufacturerID, Model: Model, Version: "id:00010000"}); err != nil {
		return nil, fmt.Errorf("softtpm: %w", err)
	}
	akName, err := tpm2.ObjectName(&t.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("softtpm: AK name: %w", err)
	}
	ekName, err := tpm2.ObjectName(&t.EKPublic)
	if err != nil {
		return nil, fmt.Errorf("softtpm: EK name: %w", err)
	}
	t.AKName = akName.Buffer
	if t.AKQualifiedName, err = tpmrules.AKQualifiedName(t.EKPublic.NameAlg, ekName.Buffer, t.AKPublic.NameAlg, t.AKName); err != nil {
		return nil, fmt.Errorf("softtpm: %w", err)
	}
	t.PCRs = BootPCRs()
	return t, nil
}

// BootPCRs are the sha256 values of tpmrules.DefaultPCRs() every software TPM holds: one
// boot, each PCR extended once from zero with a digest of its own.
func BootPCRs() map[int][]byte {
	pcrs := make(map[int][]byte)
	for _, i := range tpmrules.DefaultPCRs() {
		m := sha256.Sum256([]byte(fmt.Sprintf("softtpm boot measurement %d", i)))
		v := sha256.Sum256(append(make([]byte, 32), m[:]...))
		pcrs[i] = v[:]
	}
	return pcrs
}

// EKPublicArea is the public area of an EK of tpmrules.EKRSA2048's template with key pub.
func EKPublicArea(pub *rsa.PublicKey) tpm2.TPMTPublic {
	a := tpmrules.EKRSA2048.Template
	a.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: pub.N.FillBytes(make([]byte, 256))})
	return a
}

func akPublicArea(pub *ecdsa.PublicKey) tpm2.TPMTPublic {
	a := tpmrules.AKTemplate
	a.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: pub.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: pub.Y.FillBytes(make([]byte, 32))},
	})
	return a
}

// Hello is the agent's first message (protocol.Hello, EK mode) for this TPM.
func (t *TPM) Hello() ([]byte, error) {
	return protocol.Encode(&protocol.Hello{
		Mode:     protocol.ModeEKCert,
		EKCert:   t.EKCert,
		EKPublic: tpm2.Marshal(t.EKPublic),
		AKPublic: tpm2.Marshal(t.AKPublic),
		PCRBank:  tpmrules.DefaultPCRBank,
		PCRs:     tpmrules.DefaultPCRs(),
		TPM:      protocol.TPMProperties{Manufacturer: Manufacturer, Model: Model, Firmware: protocol.FirmwareVersion(FirmwareVersion)},
	})
}

// Evidence answers a challenge (protocol.Challenge bytes): the activated credential, a
// quote of the PCRs over the challenge's nonce and the PCR values.
func (t *TPM) Evidence(challenge []byte) ([]byte, error) {
	ch, err := protocol.DecodeChallenge(challenge)
	if err != nil {
		return nil, fmt.Errorf("softtpm: %w", err)
	}
	ev := &protocol.Evidence{}
	if ev.Secret, err = ActivateCredential(t.EK, &t.EKPublic, t.AKName, ch.CredentialBlob, ch.EncryptedSecret); err != nil {
		return nil, err
	}
	pcrs := tpmrules.DefaultPCRs()
	if ev.Quote, ev.Signature, err = t.Quote(pcrs, ch.Nonce); err != nil {
		return nil, err
	}
	for _, i := range pcrs {
		ev.PCRValues = append(ev.PCRValues, t.PCRs[i])
	}
	return protocol.Encode(ev)
}

// ErrIntegrity is TPM_RC_INTEGRITY: the credential blob's HMAC does not match (it was not
// made for this EK and this object name, or it was changed).
var ErrIntegrity = errors.New("softtpm: ActivateCredential: integrity check failed (TPM_RC_INTEGRITY)")

// ActivateCredential recovers the credential that MakeCredential sealed to the EK (key
// ek, public area ekPub) for the object named objectName, as TPM2_ActivateCredential does
// (Part 3, 12.5; Part 1, 24.4 to 24.6):
//
//   - seed = RSA-OAEP decryption of encryptedSecret with the EK, label "IDENTITY" (the
//     OAEP hash is the EK's name algorithm, as the EK's scheme is TPM_ALG_NULL);
//   - HMACkey = KDFa(nameAlg, seed, "INTEGRITY", none, none, digest size), and
//     credentialBlob's integrityHMAC must be HMAC(HMACkey, encIdentity || objectName);
//   - symKey = KDFa(nameAlg, seed, "STORAGE", objectName, none, the EK's symmetric key
//     size), and encIdentity decrypts with the EK's symmetric algorithm in CFB mode with a
//     zero IV to a TPM2B_DIGEST, the credential.
func ActivateCredential(ek *rsa.PrivateKey, ekPub *tpm2.TPMTPublic, objectName, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	h, err := ekPub.NameAlg.Hash()
	if err != nil {
		return nil, fmt.Errorf("softtpm: EK name algorithm: %w", err)
	}
	rsaParms, err := ekPub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("softtpm: EK is not an RSA key: %w", err)
	}
	// The OAEP hash is the scheme's when the key names one, else the name algorithm
	// (Part 1, B.10.3); an EK names none.
	oaepHash := h
	if rsaParms.Scheme.Scheme == tpm2.TPMAlgOAEP {
		oaep, err := rsaParms.Scheme.Details.OAEP()
		if err != nil {
			return nil, fmt.Errorf("softtpm: EK scheme: %w", err)
		}
		if oaepHash, err = oaep.HashAlg.Hash(); err != nil {
			return nil, fmt.Errorf("softtpm: EK OAEP hash: %w", err)
		}
	}
	sym := rsaParms.Symmetric
	aesBits, err := sym.KeyBits.AES()
	if sym.Algorithm != tpm2.TPMAlgAES || err != nil {
		return nil, fmt.Errorf("softtpm: EK symmetric algorithm 0x%04X, want AES", uint16(sym.Algorithm))
	}
	if mode, err := sym.Mode.AES(); err != nil || *mode != tpm2.TPMAlgCFB {
		return nil, errors.New("softtpm: EK symmetric mode is not CFB")
	}
	seed, err := rsa.DecryptOAEP(oaepHash.New(), nil, ek, encryptedSecret, []byte(identityLabel))
	if err != nil {
		return nil, fmt.Errorf("softtpm: ActivateCredential: seed: %w (TPM_RC_VALUE)", err)
	}
	// TPMS_ID_OBJECT: integrityHMAC (TPM2B_DIGEST), then encIdentity to the end.
	if len(credentialBlob) < 2 {
		return nil, errors.New("softtpm: ActivateCredential: credential blob is too short (TPM_RC_SIZE)")
	}
	n := int(binary.BigEndian.Uint16(credentialBlob))
	if n != h.Size() || len(credentialBlob) < 2+n {
		return nil, fmt.Errorf("softtpm: ActivateCredential: integrityHMAC is %d bytes, want %d (TPM_RC_SIZE)", n, h.Size())
	}
	integrity, encIdentity := credentialBlob[2:2+n], credentialBlob[2+n:]
	mac := hmac.New(h.New, tpm2.KDFa(h, seed, "INTEGRITY", nil, nil, h.Size()*8))
	mac.Write(encIdentity)
	mac.Write(objectName)
	if subtle.ConstantTimeCompare(mac.Sum(nil), integrity) != 1 {
		return nil, ErrIntegrity
	}
	block, err := aes.NewCipher(tpm2.KDFa(h, seed, "STORAGE", objectName, nil, int(*aesBits)))
	if err != nil {
		return nil, fmt.Errorf("softtpm: ActivateCredential: %w", err)
	}
	plain := make([]byte, len(encIdentity))
	cipher.NewCFBDecrypter(block, make([]byte, block.BlockSize())).XORKeyStream(plain, encIdentity)
	if len(plain) < 2 || int(binary.BigEndian.Uint16(plain)) != len(plain)-2 || len(plain)-2 > h.Size() {
		return nil, errors.New("softtpm: ActivateCredential: the credential is not a TPM2B_DIGEST (TPM_RC_SIZE)")
	}
	return plain[2:], nil
}

// Quote is TPM2_Quote (Part 3, 18.4) of the sha256 PCRs pcrs by the AK with qualifying
// data nonce: a TPMS_ATTEST (TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, the AK's qualified
// name, the nonce, the clock, the firmware version, the selection and the digest of the
// selected values) and its TPMT_SIGNATURE (ECDSA, SHA-256).
func (t *TPM) Quote(pcrs []int, nonce []byte) (attest, signature []byte, err error) {
	bank, _ := tpmrules.ParseBank(tpmrules.DefaultPCRBank)
	d := sha256.New()
	for _, i := range pcrs {
		v, ok := t.PCRs[i]
		if !ok {
			return nil, nil, fmt.Errorf("softtpm: Quote: PCR %d is not kept", i)
		}
		d.Write(v)
	}
	t.mu.Lock()
	t.clock += 1000
	clock := t.clock
	t.mu.Unlock()
	a := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: t.AKQualifiedName},
		ExtraData:       tpm2.TPM2BData{Buffer: nonce},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: clock, ResetCount: 1, RestartCount: 0, Safe: true},
		FirmwareVersion: FirmwareVersion,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpmrules.PCRSelection(bank, pcrs),
			PCRDigest: tpm2.TPM2BDigest{Buffer: d.Sum(nil)},
		}),
	}
	attest = tpm2.Marshal(a)
	digest := sha256.Sum256(attest)
	r, s, err := ecdsa.Sign(rand.Reader, t.AK, digest[:])
	if err != nil {
		return nil, nil, fmt.Errorf("softtpm: Quote: %w", err)
	}
	sig := tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: pad32(r)},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: pad32(s)},
		}),
	}
	return attest, tpm2.Marshal(sig), nil
}

func pad32(v *big.Int) []byte { return v.FillBytes(make([]byte, 32)) }

// EKPublicKey returns the EK's public key, from which the verifier names the TPM.
func (t *TPM) EKPublicKey() crypto.PublicKey { return &t.EK.PublicKey }
