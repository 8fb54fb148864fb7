package verify

// This file verifies a DevID enrollment (protocol EnrollBegin / EnrollFinish) for the RA:
// the EK and AK as in node attestation, then the DevID key: its attributes, TPM2_Certify
// by the AK over the RA's nonce, and a CSR signed by it for the host being enrolled.

import (
	"crypto"
	"crypto/x509"
	"slices"
	"time"

	"omens.dev/omens/protocol"
)

// Enroller checks DevID enrollments for the RA: it holds only what enrollment uses, the
// EK policy, a clock and a source of randomness (no PCR selection: an enrollment quotes
// nothing). Its fields are read-only once in use.
type Enroller struct {
	EK EKPolicy
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
	// Rand is the source of secrets and nonces; nil means crypto/rand.
	Rand interface{ Read([]byte) (int, error) }
}

// Enrollment carries a DevID enrollment from EnrollBegin to EnrollFinish.
type Enrollment struct {
	Host        string
	Identity    *Identity
	DevIDPublic []byte
	DevIDKey    crypto.PublicKey
	proof       *ekProof
	completed   bool
}

// BeginEnrollment checks an EnrollBegin: the EK and AK as for an attestation, and that the
// DevID key has the attributes of a key generated in and fixed to a TPM. It returns the
// challenge's credential and nonce; the caller adds the session name.
func (v *Enroller) BeginEnrollment(m *protocol.EnrollBegin) (*Enrollment, *protocol.EnrollChallenge, error) {
	ek := ekVerifier{policy: &v.EK, clock: v.Now, rnd: v.Rand}
	c, err := ek.begin(m.EKCert, m.EKPublic, m.AKPublic, protocol.TPMProperties{})
	if err != nil {
		return nil, nil, err
	}
	_, key, err := CheckDevIDPublic(m.DevIDPublic)
	if err != nil {
		var ce *CheckError
		if asCheckError(err, &ce) {
			ce.EKHash = c.id.EKHash
		}
		return nil, nil, err
	}
	e := &Enrollment{Host: m.Host, Identity: c.id, DevIDPublic: m.DevIDPublic, DevIDKey: key, proof: c}
	return e, &protocol.EnrollChallenge{CredentialBlob: c.blob, EncryptedSecret: c.encSecret, Nonce: c.nonce}, nil
}

// SavedEnrollment is an Enrollment between begin and finish as another Enroller (a
// replica of the RA) needs it to finish: the EnrollBegin message that was checked, and the
// secret and nonce of the challenge sent. The secret is what only the TPM can recover:
// keep it as private as the session.
type SavedEnrollment struct {
	Begin  []byte // the EnrollBegin message, as received
	Secret []byte
	Nonce  []byte
}

// Save returns what ResumeEnrollment needs; begin is the message BeginEnrollment checked.
func (e *Enrollment) Save(begin []byte) *SavedEnrollment {
	return &SavedEnrollment{Begin: slices.Clone(begin), Secret: slices.Clone(e.proof.secret), Nonce: slices.Clone(e.proof.nonce)}
}

// ResumeEnrollment rebuilds an Enrollment saved by another Enroller: the begin message is
// decoded and checked again under this Enroller's policy (its EK bundle and lists, its
// clock), and the challenge is the saved one.
func (v *Enroller) ResumeEnrollment(s *SavedEnrollment) (*Enrollment, error) {
	m, err := protocol.DecodeEnrollBegin(s.Begin)
	if err != nil {
		return nil, &CheckError{Check: CheckProtocol, Err: err}
	}
	ek := ekVerifier{policy: &v.EK, clock: v.Now, rnd: v.Rand}
	c, err := ek.resume(m.EKCert, m.EKPublic, m.AKPublic, s.Secret, s.Nonce)
	if err != nil {
		return nil, err
	}
	_, key, err := CheckDevIDPublic(m.DevIDPublic)
	if err != nil {
		return nil, err
	}
	return &Enrollment{Host: m.Host, Identity: c.id, DevIDPublic: m.DevIDPublic, DevIDKey: key, proof: c}, nil
}

// Finish checks an EnrollFinish and returns the CSR to sign. An enrollment finishes once.
func (e *Enrollment) Finish(m *protocol.EnrollFinish) (*x509.CertificateRequest, error) {
	if e.completed {
		return nil, reject(CheckProtocol, "enrollment already finished (a replayed request?)")
	}
	e.completed = true
	if err := e.proof.checkActivation(m.Secret); err != nil {
		return nil, err
	}
	if err := verifyCertify(e.proof.akPub, e.proof.akQN, m.Certify, m.CertifySignature, e.proof.nonce, e.DevIDPublic); err != nil {
		return nil, err
	}
	csr, err := CheckCSR(m.CSR, e.DevIDKey)
	if err != nil {
		return nil, err
	}
	if csr.Subject.CommonName != e.Host {
		return nil, reject(CheckHost, "CSR subject CN %q is not the host being enrolled, %q", csr.Subject.CommonName, e.Host)
	}
	for _, n := range csr.DNSNames {
		if n != e.Host {
			return nil, reject(CheckHost, "CSR names DNS %q, only %q is enrolled", n, e.Host)
		}
	}
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return nil, reject(CheckHost, "CSR names IP addresses, e-mail addresses or URIs; a DevID names only its host")
	}
	if !slices.Contains(csr.DNSNames, e.Host) {
		csr.DNSNames = append(csr.DNSNames, e.Host)
	}
	return csr, nil
}
