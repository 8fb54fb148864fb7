package tpm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpmrules"
)

// AK is an attestation key loaded in the TPM.
type AK struct {
	Handle     tpm2.TPMHandle
	Name       tpm2.TPM2BName
	Public     tpm2.TPMTPublic
	Persistent bool
	// Created is true when this call generated the key (the slow path on a real chip).
	Created bool
}

// AuthHandle returns the AK's handle with its name and (empty) auth, for commands that
// use the AK.
func (ak *AK) AuthHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: ak.Handle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)}
}

// Close flushes a transient AK; a persistent one stays in the TPM.
func (ak *AK) Close(t transport.TPM) error {
	if ak.Persistent {
		return nil
	}
	return flush(t, ak.Handle)
}

// IsAttestationKey reports why pub is not a key omens accepts as an AK, or nil: the AK
// attribute rule of tpmrules, which the verifier applies too.
func IsAttestationKey(pub *tpm2.TPMTPublic) error {
	missing := tpmrules.AKAttributesLack(pub.ObjectAttributes)
	if len(missing) > 0 {
		return fmt.Errorf("tpm: not an attestation key: attributes lack %v", missing)
	}
	return nil
}

// ErrHandleInUse is returned when a persistent handle holds a key that is not an AK.
var ErrHandleInUse = errors.New("tpm: persistent handle holds another key")

// LoadOrCreateAK returns the AK persisted at handle, or creates one as a child of ek
// (TPM2_Create, then TPM2_Load and TPM2_EvictControl to handle) when the handle is empty.
// With handle 0 the AK is created and left transient; the caller must Close it.
func LoadOrCreateAK(t transport.TPM, ek *EK, handle tpm2.TPMHandle) (*AK, error) {
	if handle != 0 {
		rp, err := tpm2.ReadPublic{ObjectHandle: handle}.Execute(t)
		if err == nil {
			pub, err := rp.OutPublic.Contents()
			if err != nil {
				return nil, fmt.Errorf("tpm: ReadPublic(AK 0x%08X): %w", uint32(handle), err)
			}
			if err := IsAttestationKey(pub); err != nil {
				return nil, fmt.Errorf("%w: 0x%08X: %v; choose another AK handle or evict it (tpm2_evictcontrol -c 0x%08X)",
					ErrHandleInUse, uint32(handle), err, uint32(handle))
			}
			qn, err := tpmrules.AKQualifiedName(ek.Public.NameAlg, ek.Name.Buffer, pub.NameAlg, rp.Name.Buffer)
			if err != nil {
				return nil, fmt.Errorf("tpm: qualified name of the AK at 0x%08X: %w", uint32(handle), err)
			}
			if bytes.Equal(qn, rp.QualifiedName.Buffer) {
				return &AK{Handle: handle, Name: rp.Name, Public: *pub, Persistent: true}, nil
			}
			// An AK of another EK of this TPM (the agent's ek_type changed): the verifier
			// wants the AK under the EK it attests with (TPMS_ATTEST.qualifiedSigner), so
			// it is replaced. The AK names nothing; the agent ID is the EK's.
			if _, err := (tpm2.EvictControl{
				Auth:             tpm2.TPMRHOwner,
				ObjectHandle:     tpm2.NamedHandle{Handle: handle, Name: rp.Name},
				PersistentHandle: handle,
			}).Execute(t); err != nil {
				return nil, fmt.Errorf("tpm: EvictControl(AK of another EK at 0x%08X): %w", uint32(handle), err)
			}
		} else if !errors.Is(err, tpm2.TPMRCHandle) {
			return nil, fmt.Errorf("tpm: ReadPublic(AK 0x%08X): %w", uint32(handle), err)
		}
	}
	cr, err := tpm2.Create{
		ParentHandle: ekAuth(ek),
		InPublic:     tpm2.New2B(tpmrules.AKTemplate),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: Create(AK under EK %s): %w", ek.Kind.Name, err)
	}
	lr, err := tpm2.Load{
		ParentHandle: ekAuth(ek),
		InPrivate:    cr.OutPrivate,
		InPublic:     cr.OutPublic,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: Load(AK): %w", err)
	}
	pub, err := cr.OutPublic.Contents()
	if err != nil {
		_ = flush(t, lr.ObjectHandle)
		return nil, fmt.Errorf("tpm: Create(AK): %w", err)
	}
	ak := &AK{Handle: lr.ObjectHandle, Name: lr.Name, Public: *pub, Created: true}
	if handle == 0 {
		return ak, nil
	}
	defer flush(t, lr.ObjectHandle)
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: lr.ObjectHandle, Name: lr.Name},
		PersistentHandle: handle,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: EvictControl(AK to 0x%08X): %w", uint32(handle), err)
	}
	ak.Handle, ak.Persistent = handle, true
	return ak, nil
}

// ekAuth authorizes use of the EK as a parent. The low-range TCG templates have
// userWithAuth clear, so they need a policy session with TPM2_PolicySecret(TPM_RH_ENDORSEMENT)
// (EK Credential Profile, B.3.3); the high-range templates allow the (empty) auth value.
func ekAuth(ek *EK) tpm2.AuthHandle {
	if ek.Public.ObjectAttributes.UserWithAuth {
		return tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: tpm2.PasswordAuth(nil)}
	}
	return tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: EKPolicySession()}
}

// EKPolicySession returns a one-use policy session satisfying the low-range EK policy
// PolicySecret(TPM_RH_ENDORSEMENT); the TPM flushes it after the command it authorizes.
func EKPolicySession() tpm2.Session {
	return tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{
			AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			PolicySession: h,
			NonceTPM:      nonce,
		}.Execute(t)
		return err
	})
}
