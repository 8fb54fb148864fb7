package tpm

// This file holds DevID keys: IEEE 802.1AR local device identity (LDevID) keys that the
// TPM generates and never lets out in the clear (TCG "TPM 2.0 Keys for Device Identity and
// Attestation", 7.3.4), made under the storage root key (SRK) of the owner hierarchy in the
// layout SPIRE's built-in tpm_devid agent plugin loads: the same SRK template, and the
// public and private parts as the bytes of TPMT_PUBLIC and of TPM2B_PRIVATE's buffer, with
// no size prefix (tpm_devid reads devid_pub_path and devid_priv_path whole and hands them
// to TPM2_Load as the contents of TPM2B_PUBLIC and TPM2B_PRIVATE).

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpmrules"
)

// SRK is a loaded storage root key. Close flushes it when it was derived as a transient
// object; a persistent SRK stays.
type SRK struct {
	Handle     tpm2.TPMHandle
	Name       tpm2.TPM2BName
	Public     tpm2.TPMTPublic
	Persistent bool
}

// Close flushes a transient SRK.
func (s *SRK) Close(t transport.TPM) error {
	if s.Persistent {
		return nil
	}
	return flush(t, s.Handle)
}

func (s *SRK) authHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: s.Handle, Name: s.Name, Auth: tpm2.PasswordAuth(nil)}
}

func srkTemplate(alg tpm2.TPMAlgID) (tpm2.TPMTPublic, error) {
	if tmpl, ok := tpmrules.SRKTemplate(alg); ok {
		return tmpl, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("tpm: no SRK template for %s (want RSA or ECC)", tpmrules.KeyTypeName(alg))
}

// LoadSRK returns the SRK of type alg (tpm2.TPMAlgRSA or tpm2.TPMAlgECC): the key persisted
// at tpmrules.DefaultSRKHandle when it has the same template (the unique field aside, as it holds
// the key), else DeriveSRK's. The caller must Close it.
//
// A template match does not prove that a persisted SRK is the one the template derives:
// one made with a zero-filled unique field looks the same. CreateDevID checks that before
// it makes a key under a persistent SRK.
func LoadSRK(t transport.TPM, alg tpm2.TPMAlgID) (*SRK, error) {
	tmpl, err := srkTemplate(alg)
	if err != nil {
		return nil, err
	}
	if rp, err := (tpm2.ReadPublic{ObjectHandle: tpmrules.DefaultSRKHandle}).Execute(t); err == nil {
		pub, err := rp.OutPublic.Contents()
		if err == nil && sameTemplate(pub, &tmpl) {
			return &SRK{Handle: tpmrules.DefaultSRKHandle, Name: rp.Name, Public: *pub, Persistent: true}, nil
		}
	}
	return DeriveSRK(t, alg)
}

// DeriveSRK derives the SRK of type alg from the owner hierarchy's seed (TPM2_CreatePrimary
// with tpmrules.SRKTemplateRSA or tpmrules.SRKTemplateECC and an empty owner auth value), as tpm_devid does
// at every attestation. The result is always transient; the caller must Close it.
func DeriveSRK(t transport.TPM, alg tpm2.TPMAlgID) (*SRK, error) {
	tmpl, err := srkTemplate(alg)
	if err != nil {
		return nil, err
	}
	r, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: CreatePrimary(SRK %s): %w", tpmrules.KeyTypeName(alg), err)
	}
	pub, err := r.OutPublic.Contents()
	if err != nil {
		_ = flush(t, r.ObjectHandle)
		return nil, fmt.Errorf("tpm: CreatePrimary(SRK %s): %w", tpmrules.KeyTypeName(alg), err)
	}
	return &SRK{Handle: r.ObjectHandle, Name: r.Name, Public: *pub}, nil
}

// IsDevIDKey reports why pub is not a key omens accepts as a DevID key, or nil: a signing
// key, not restricted (it signs data from outside the TPM) and not a decryption key, that
// was generated in the TPM and cannot leave it.
func IsDevIDKey(pub *tpm2.TPMTPublic) error {
	missing := tpmrules.DevIDAttributesLack(pub.ObjectAttributes)
	if len(missing) > 0 {
		return fmt.Errorf("tpm: not a DevID key: attributes lack %v", missing)
	}
	if pub.Type != tpm2.TPMAlgRSA && pub.Type != tpm2.TPMAlgECC {
		return fmt.Errorf("tpm: not a DevID key: type %s, want RSA or ECC", tpmrules.KeyTypeName(pub.Type))
	}
	return nil
}

// DevIDKey is a DevID key loaded in the TPM.
type DevIDKey struct {
	Public tpm2.TPMTPublic
	// PublicBlob and PrivateBlob are what devid_pub_path and devid_priv_path hold for
	// SPIRE's tpm_devid: the TPMT_PUBLIC, and the TPM2B_PRIVATE's buffer (the private part
	// wrapped by the SRK), both without size prefix. PrivateBlob is nil for a key loaded
	// from a persistent handle.
	PublicBlob, PrivateBlob []byte
	Handle                  tpm2.TPMHandle
	Name                    tpm2.TPM2BName
	Persistent              bool
}

// Close flushes a transient DevID key; a persistent one stays.
func (k *DevIDKey) Close(t transport.TPM) error {
	if k.Persistent {
		return nil
	}
	return flush(t, k.Handle)
}

func (k *DevIDKey) authHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.Handle, Name: k.Name, Auth: tpm2.PasswordAuth(nil)}
}

// PublicKey returns the DevID public key.
func (k *DevIDKey) PublicKey() (crypto.PublicKey, error) { return tpm2.Pub(k.Public) }

// CreateDevID has the TPM generate a DevID key of type alg under srk (TPM2_Create, Part
// 3, 12.1) from tpmrules.DevIDTemplateRSA or tpmrules.DevIDTemplateECC, and loads it (TPM2_Load). The private
// part leaves the TPM only wrapped by the SRK. srk must have the key's type: tpm_devid picks
// the SRK by the DevID key's type. Under a persistent SRK, the SRK is first derived once to
// check that the persistent one is that key, since tpm_devid always derives it. The caller
// must Close the key.
func CreateDevID(t transport.TPM, srk *SRK, alg tpm2.TPMAlgID) (*DevIDKey, error) {
	tmpl, ok := tpmrules.DevIDTemplate(alg)
	if !ok {
		return nil, fmt.Errorf("tpm: no DevID template for %s (want RSA or ECC)", tpmrules.KeyTypeName(alg))
	}
	if srk.Public.Type != alg {
		return nil, fmt.Errorf("tpm: a DevID %s key under an %s SRK would not load in SPIRE's tpm_devid, which derives the SRK of the DevID key's type",
			tpmrules.KeyTypeName(alg), tpmrules.KeyTypeName(srk.Public.Type))
	}
	if srk.Persistent {
		derived, err := DeriveSRK(t, alg)
		if err != nil {
			return nil, err
		}
		same := bytes.Equal(derived.Name.Buffer, srk.Name.Buffer)
		if err := derived.Close(t); err != nil {
			return nil, err
		}
		if !same {
			return nil, fmt.Errorf("tpm: the SRK persisted at 0x%08X (name %x) is not the one the TCG template derives (name %x): "+
				"DevID blobs made under it would not load in SPIRE's tpm_devid; use DeriveSRK", uint32(srk.Handle), srk.Name.Buffer, derived.Name.Buffer)
		}
	}
	cr, err := tpm2.Create{
		ParentHandle: srk.authHandle(),
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: Create(DevID %s): %w", tpmrules.KeyTypeName(alg), err)
	}
	pub, err := cr.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: Create(DevID %s): %w", tpmrules.KeyTypeName(alg), err)
	}
	lr, err := tpm2.Load{
		ParentHandle: srk.authHandle(),
		InPrivate:    cr.OutPrivate,
		InPublic:     cr.OutPublic,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: Load(DevID %s): %w", tpmrules.KeyTypeName(alg), err)
	}
	return &DevIDKey{
		Public:      *pub,
		PublicBlob:  bytes.Clone(cr.OutPublic.Bytes()),
		PrivateBlob: bytes.Clone(cr.OutPrivate.Buffer),
		Handle:      lr.ObjectHandle,
		Name:        lr.Name,
	}, nil
}

// LoadDevID loads a DevID key from the blobs CreateDevID made (or tpm_devid's provisioning
// did) under srk (TPM2_Load, Part 3, 12.2). The caller must Close it.
func LoadDevID(t transport.TPM, srk *SRK, pubBlob, privBlob []byte) (*DevIDKey, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](pubBlob)
	if err != nil {
		if len(pubBlob) >= 2 && int(binary.BigEndian.Uint16(pubBlob))+2 == len(pubBlob) {
			return nil, fmt.Errorf("tpm: DevID public blob: %v (it looks like a TPM2B_PUBLIC with its size prefix, as tpm2_create writes; "+
				"tpm_devid and omens want the TPMT_PUBLIC without it)", err)
		}
		return nil, fmt.Errorf("tpm: DevID public blob: %w", err)
	}
	if err := IsDevIDKey(pub); err != nil {
		return nil, err
	}
	if pub.Type != srk.Public.Type {
		return nil, fmt.Errorf("tpm: a DevID %s key does not load under an %s SRK", tpmrules.KeyTypeName(pub.Type), tpmrules.KeyTypeName(srk.Public.Type))
	}
	lr, err := tpm2.Load{
		ParentHandle: srk.authHandle(),
		InPrivate:    tpm2.TPM2BPrivate{Buffer: privBlob},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](pubBlob),
	}.Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCIntegrity) {
			return nil, fmt.Errorf("tpm: Load(DevID under SRK 0x%08X): %w (the blobs were made under another SRK, or in another TPM)", uint32(srk.Handle), err)
		}
		return nil, fmt.Errorf("tpm: Load(DevID under SRK 0x%08X): %w", uint32(srk.Handle), err)
	}
	return &DevIDKey{
		Public:      *pub,
		PublicBlob:  bytes.Clone(pubBlob),
		PrivateBlob: bytes.Clone(privBlob),
		Handle:      lr.ObjectHandle,
		Name:        lr.Name,
	}, nil
}

func checkPersistentHandle(h tpm2.TPMHandle) error {
	if !tpmrules.IsPersistent(h) {
		return fmt.Errorf("tpm: 0x%08X is not a persistent handle (want %s)", uint32(h), tpmrules.PersistentRange)
	}
	return nil
}

// LoadPersistentDevID returns the DevID key persisted at h (TPM2_ReadPublic), refusing a
// key that is not DevID-shaped (IsDevIDKey).
func LoadPersistentDevID(t transport.TPM, h tpm2.TPMHandle) (*DevIDKey, error) {
	if err := checkPersistentHandle(h); err != nil {
		return nil, err
	}
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: ReadPublic(DevID 0x%08X): %w", uint32(h), err)
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: ReadPublic(DevID 0x%08X): %w", uint32(h), err)
	}
	if err := IsDevIDKey(pub); err != nil {
		return nil, fmt.Errorf("tpm: 0x%08X does not hold a DevID key: %w", uint32(h), err)
	}
	return &DevIDKey{Public: *pub, PublicBlob: bytes.Clone(rp.OutPublic.Bytes()), Handle: h, Name: rp.Name, Persistent: true}, nil
}

// PersistDevID makes a loaded DevID key persistent at h (TPM2_EvictControl, Part 3, 28.5,
// with the owner hierarchy), then flushes its transient copy: k then names the persistent
// key. A DevID key already at h is evicted first, so renewal replaces it; any other key
// there is left alone and ErrHandleInUse returned.
func PersistDevID(t transport.TPM, k *DevIDKey, h tpm2.TPMHandle) error {
	if err := checkPersistentHandle(h); err != nil {
		return err
	}
	if k.Persistent {
		if k.Handle == h {
			return nil
		}
		return fmt.Errorf("tpm: the DevID key is already persistent at 0x%08X", uint32(k.Handle))
	}
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	switch {
	case err == nil:
		pub, err := rp.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("tpm: ReadPublic(0x%08X): %w", uint32(h), err)
		}
		if err := IsDevIDKey(pub); err != nil {
			return fmt.Errorf("%w: 0x%08X: %v; choose another DevID handle or evict it (tpm2_evictcontrol -c 0x%08X)",
				ErrHandleInUse, uint32(h), err, uint32(h))
		}
		if _, err := (tpm2.EvictControl{
			Auth:             tpm2.TPMRHOwner,
			ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: rp.Name},
			PersistentHandle: h,
		}).Execute(t); err != nil {
			return fmt.Errorf("tpm: EvictControl(evict DevID 0x%08X): %w", uint32(h), err)
		}
	case !errors.Is(err, tpm2.TPMRCHandle):
		return fmt.Errorf("tpm: ReadPublic(0x%08X): %w", uint32(h), err)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: k.Handle, Name: k.Name},
		PersistentHandle: h,
	}).Execute(t); err != nil {
		return fmt.Errorf("tpm: EvictControl(DevID to 0x%08X): %w", uint32(h), err)
	}
	if err := flush(t, k.Handle); err != nil {
		return err
	}
	k.Handle, k.Persistent = h, true
	return nil
}

// Certify has the AK certify the DevID key with nonce as qualifying data (TPM2_Certify,
// Part 3, 18.2): a statement, signed by the AK, that the key of this name is loaded in the
// same TPM. It returns the TPMS_ATTEST the TPM signed and the TPMT_SIGNATURE, both as the
// TPM marshalled them.
func Certify(t transport.TPM, key *DevIDKey, ak *AK, nonce []byte) (attest, sig []byte, err error) {
	r, err := tpm2.Certify{
		ObjectHandle:   key.authHandle(),
		SignHandle:     ak.AuthHandle(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(t)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: Certify(DevID 0x%08X by AK 0x%08X): %w", uint32(key.Handle), uint32(ak.Handle), err)
	}
	return r.CertifyInfo.Bytes(), tpm2.Marshal(r.Signature), nil
}

// Signer returns a crypto.Signer whose Sign has the TPM sign a SHA-256 digest with the
// DevID key (TPM2_Sign, Part 3, 20.2) in the key's scheme: PKCS #1 v1.5 for RSA, ECDSA
// (ASN.1 DER) for ECC, what x509.CreateCertificateRequest and crypto/tls expect. The key
// must stay loaded while the signer is used.
func (k *DevIDKey) Signer(t transport.TPM) (crypto.Signer, error) {
	pub, err := tpm2.Pub(k.Public)
	if err != nil {
		return nil, fmt.Errorf("tpm: DevID public key: %w", err)
	}
	// tpm_devid and the TLS and CSR signers use the key's own scheme: RSASSA or ECDSA.
	scheme, hash, err := tpmrules.SigningScheme(&k.Public)
	if err != nil || (scheme != tpm2.TPMAlgRSASSA && scheme != tpm2.TPMAlgECDSA) {
		hash = 0
	}
	if hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("tpm: DevID scheme 0x%04X with hash 0x%04X: the signer needs RSASSA or ECDSA with SHA-256", uint16(scheme), uint16(hash))
	}
	return &devIDSigner{t: t, k: k, pub: pub}, nil
}

type devIDSigner struct {
	t   transport.TPM
	k   *DevIDKey
	pub crypto.PublicKey
}

func (s *devIDSigner) Public() crypto.PublicKey { return s.pub }

func (s *devIDSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return nil, errors.New("tpm: the DevID key signs PKCS #1 v1.5, not PSS")
	}
	if h := opts.HashFunc(); h != crypto.SHA256 {
		return nil, fmt.Errorf("tpm: the DevID key signs SHA-256 digests, not %v", h)
	}
	if len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("tpm: digest is %d bytes, want 32 (SHA-256)", len(digest))
	}
	r, err := tpm2.Sign{
		KeyHandle: s.k.authHandle(),
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme:  tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		// An unrestricted key signs any digest: a NULL ticket (Part 3, 20.2.1).
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: Sign(DevID 0x%08X): %w", uint32(s.k.Handle), err)
	}
	switch r.Signature.SigAlg {
	case tpm2.TPMAlgRSASSA:
		sig, err := r.Signature.Signature.RSASSA()
		if err != nil {
			return nil, fmt.Errorf("tpm: Sign(DevID): %w", err)
		}
		return sig.Sig.Buffer, nil
	case tpm2.TPMAlgECDSA:
		sig, err := r.Signature.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("tpm: Sign(DevID): %w", err)
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer),
		})
	}
	return nil, fmt.Errorf("tpm: Sign(DevID): signature algorithm 0x%04X", uint16(r.Signature.SigAlg))
}
