package prover

// DevID enrollment, the TPM half (protocol EnrollBegin / EnrollFinish; the RA checks them
// with verify's BeginEnrollment and Enrollment.Finish): the same EK as attestation, the
// same persisted AK, and a new DevID key under the SRK that the AK certifies over the RA's
// nonce and that signs the CSR. Talking to the RA and writing the files is package
// enroll's.

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// Enrollment is one DevID enrollment in progress on the TPM. Close it when done.
type Enrollment struct {
	p      *Prover
	t      transport.TPMCloser
	kind   tpmrules.EKKind
	ekPub  tpm2.TPMTPublic
	host   string
	ak     *tpm.AK
	key    *tpm.DevIDKey
	closed bool
}

// BeginEnrollment opens the TPM, loads (or the first time creates and persists) the AK
// under the EK that attestation uses, creates a DevID key of algorithm alg (tpm2.TPMAlgECC
// for P-256 or tpm2.TPMAlgRSA for RSA-2048) under the SRK, and returns the EnrollBegin to
// send for host.
func (p *Prover) BeginEnrollment(host string, alg tpm2.TPMAlgID) (*Enrollment, *protocol.EnrollBegin, error) {
	if alg != tpm2.TPMAlgECC && alg != tpm2.TPMAlgRSA {
		return nil, nil, fmt.Errorf("prover: DevID key algorithm 0x%04X: want ECC or RSA", uint16(alg))
	}
	t, err := p.cfg.Open(p.cfg.TPMPath)
	if err != nil {
		return nil, nil, err
	}
	e := &Enrollment{p: p, t: t, host: host}
	begin, err := e.begin(alg)
	if err != nil {
		e.Close()
		return nil, nil, err
	}
	return e, begin, nil
}

// begin loads what each step needs and flushes it before the next: the reference TPM has
// three transient object slots, and TPM2_Create needs one spare.
func (e *Enrollment) begin(alg tpm2.TPMAlgID) (*protocol.EnrollBegin, error) {
	var ekCert []byte
	var err error
	if e.kind, ekCert, err = chooseEK(e.t, e.p.cfg.EKType); err != nil {
		return nil, err
	}
	ek, err := tpm.LoadEK(e.t, e.kind)
	if err != nil {
		return nil, err
	}
	e.ekPub = ek.Public
	e.ak, err = tpm.LoadOrCreateAK(e.t, ek, e.p.cfg.AKHandle)
	if cerr := ek.Close(e.t); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	srk, err := tpm.LoadSRK(e.t, alg)
	if err != nil {
		return nil, err
	}
	e.key, err = tpm.CreateDevID(e.t, srk, alg)
	if cerr := srk.Close(e.t); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return &protocol.EnrollBegin{Host: e.host, EKCert: ekCert, EKPublic: tpm2.Marshal(e.ekPub),
		AKPublic: tpm2.Marshal(e.ak.Public), DevIDPublic: tpm2.Marshal(e.key.Public)}, nil
}

// Answer activates the challenge's credential with the EK, has the AK certify the DevID
// key over the challenge's nonce, has the DevID key sign a CSR for the host, and returns
// the EnrollFinish to send.
func (e *Enrollment) Answer(ch *protocol.EnrollChallenge) (*protocol.EnrollFinish, error) {
	ek, err := tpm.LoadEK(e.t, e.kind)
	if err != nil {
		return nil, err
	}
	secret, err := tpm.ActivateCredential(e.t, e.ak, ek, ch.CredentialBlob, ch.EncryptedSecret)
	if cerr := ek.Close(e.t); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	attest, sig, err := tpm.Certify(e.t, e.key, e.ak, ch.Nonce)
	if err != nil {
		return nil, err
	}
	signer, err := e.key.Signer(e.t)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: e.host},
		DNSNames: []string{e.host},
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("prover: CSR signed in the TPM: %w", err)
	}
	return &protocol.EnrollFinish{Session: ch.Session, Secret: secret, Certify: attest, CertifySignature: sig, CSR: csr}, nil
}

// EKPublicKey is the public key of the EK the enrollment presents (verify.EKHash names the
// TPM by it).
func (e *Enrollment) EKPublicKey() (crypto.PublicKey, error) {
	k, err := tpm2.Pub(e.ekPub)
	if err != nil {
		return nil, fmt.Errorf("prover: EK public key: %w", err)
	}
	return k, nil
}

// Key is the DevID key created by BeginEnrollment: its blobs are what devid_pub_path and
// devid_priv_path hold.
func (e *Enrollment) Key() *tpm.DevIDKey { return e.key }

// Persist makes the DevID key persistent at h (tpm.PersistDevID: a DevID key already
// there, the one being renewed, is replaced).
func (e *Enrollment) Persist(h tpm2.TPMHandle) error { return tpm.PersistDevID(e.t, e.key, h) }

// Close flushes what the enrollment loaded (a transient DevID key, a transient AK) and
// closes the TPM.
func (e *Enrollment) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	if e.key != nil {
		errs = append(errs, e.key.Close(e.t))
	}
	if e.ak != nil {
		errs = append(errs, e.ak.Close(e.t))
	}
	errs = append(errs, e.t.Close())
	return errors.Join(errs...)
}
