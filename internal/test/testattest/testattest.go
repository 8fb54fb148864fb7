// Package testattest is a prover for tests and benchmarks of attestation in EK and DevID
// mode (the protocol package): it plays the agent on a TPM, normally the in-process
// simulator, with an EK certificate issued by a manufacturer CA made for the test (and in
// DevID mode a DevID key in the TPM with a certificate of a DevID CA made for the test),
// and it can be told to send each kind of bad message a verifier must refuse.
//
// Every message it sends is made by the TPM where the protocol says so (ActivateCredential,
// Quote, PCR_Read, Certify); a fault is applied to those real messages, the way an attacker
// who holds a genuine TPM would, never by building a message from nothing.
//
// The in-process simulator is one per process: a test that uses a Prover must not run in
// parallel with another that opens the simulator.
package testattest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// DefaultPCRs and DefaultBank are the selection the prover quotes unless told otherwise:
// the one the design and the Tower's plan use.
var DefaultPCRs = tpmrules.DefaultPCRs()

const DefaultBank = tpmrules.DefaultPCRBank

// Config says how New provisions the prover.
type Config struct {
	// EKKind is the EK the prover attests with; the zero value means tpmrules.EKRSA2048.
	EKKind tpmrules.EKKind
	// CA issues the EK certificate; nil means a new ephemeral CA named "omens test
	// manufacturer".
	CA *mfgca.CA
	// Cert is the template of the EK certificate (validity, serial, TPM attributes).
	Cert mfgca.EKTemplate
	// Bank and PCRs are the selection the prover quotes; empty means DefaultBank and
	// DefaultPCRs.
	Bank string
	PCRs []int
	// DevID, when tpm2.TPMAlgECC or tpm2.TPMAlgRSA, makes a DevID-mode prover: New creates
	// a DevID key of that type under the SRK, persists it at DevIDHandle
	// (DefaultDevIDHandle when zero), and has DevIDCA (a new one when nil) certify it with
	// DevIDCert.
	DevID       tpm2.TPMAlgID
	DevIDHandle tpm2.TPMHandle
	DevIDCA     *DevIDCA
	DevIDCert   DevIDTemplate
}

// Prover is the agent side of one TPM. Its fields may be read (and EKCert replaced) by
// tests; Close flushes what New loaded.
type Prover struct {
	TPM transport.TPM
	CA  *mfgca.CA
	EK  *tpm.EK
	// EKCert is the DER certificate Hello sends; it is not written to NV, as the agent
	// only forwards what it read.
	EKCert []byte
	AK     *tpm.AK
	Bank   tpm.Bank
	PCRs   []int
	// Props are the TPM properties Hello reports.
	Props protocol.TPMProperties
	// DevID is the persisted DevID key, DevIDCert its chain (DER, the certificate first)
	// from DevIDCA; nil in EK mode.
	DevID     *tpm.DevIDKey
	DevIDCA   *DevIDCA
	DevIDCert [][]byte
}

// New provisions a prover on t: it loads the EK of cfg.EKKind, has the CA issue a
// certificate for its public key, and creates a transient AK under the EK with
// tpmrules.AKTemplate.
func New(t transport.TPM, cfg Config) (*Prover, error) {
	if cfg.EKKind.Name == "" {
		cfg.EKKind = tpmrules.EKRSA2048
	}
	if cfg.Bank == "" {
		cfg.Bank = DefaultBank
	}
	if len(cfg.PCRs) == 0 {
		cfg.PCRs = DefaultPCRs
	}
	bank, err := tpm.ParseBank(cfg.Bank)
	if err != nil {
		return nil, err
	}
	ca := cfg.CA
	if ca == nil {
		if ca, err = mfgca.NewEphemeral("omens test manufacturer"); err != nil {
			return nil, err
		}
	}
	info, err := tpm.ReadInfo(t)
	if err != nil {
		return nil, err
	}
	p := &Prover{
		TPM: t, CA: ca, Bank: bank, PCRs: slices.Clone(cfg.PCRs),
		Props: protocol.TPMProperties{Manufacturer: info.Manufacturer, Model: info.VendorString, Firmware: info.FirmwareVersion},
	}
	if cfg.DevID != 0 {
		if err := p.newDevID(cfg); err != nil {
			p.Close()
			return nil, err
		}
	}
	ek, err := tpm.LoadEK(t, cfg.EKKind)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.EK = ek
	pub, err := ek.PublicKey()
	if err == nil {
		p.EKCert, err = ca.IssueEK(pub, cfg.Cert)
	}
	if err == nil {
		p.AK, err = tpm.LoadOrCreateAK(t, ek, 0)
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("testattest: %w", err)
	}
	return p, nil
}

func (p *Prover) newDevID(cfg Config) error {
	h := cfg.DevIDHandle
	if h == 0 {
		h = DefaultDevIDHandle
	}
	p.DevIDCA = cfg.DevIDCA
	if p.DevIDCA == nil {
		var err error
		if p.DevIDCA, err = NewDevIDCA("omens test DevID"); err != nil {
			return err
		}
	}
	key, err := provisionDevID(p.TPM, cfg.DevID, h)
	if err != nil {
		return fmt.Errorf("testattest: %w", err)
	}
	p.DevID = key
	pub, err := key.PublicKey()
	if err != nil {
		return err
	}
	p.DevIDCert, err = p.DevIDCA.Issue(pub, cfg.DevIDCert)
	return err
}

// DevIDPublicKey returns the DevID key's public key.
func (p *Prover) DevIDPublicKey() crypto.PublicKey {
	k, err := p.DevID.PublicKey()
	if err != nil {
		panic(err)
	}
	return k
}

// Close flushes the AK and the EK, and evicts the DevID key.
func (p *Prover) Close() error {
	var errs []error
	if p.DevID != nil {
		errs = append(errs, testtpm.EvictDevID(p.TPM, p.DevID.Handle))
		p.DevID = nil
	}
	if p.AK != nil {
		errs = append(errs, p.AK.Close(p.TPM))
		p.AK = nil
	}
	if p.EK != nil {
		errs = append(errs, p.EK.Close(p.TPM))
		p.EK = nil
	}
	return errors.Join(errs...)
}

// Bundle returns the CA bundle that trusts the prover's CA.
func (p *Prover) Bundle() *verify.Bundle { return CABundle(p.CA) }

// CABundle returns a bundle with the root and the intermediate of ca.
func CABundle(ca *mfgca.CA) *verify.Bundle {
	return verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate()})
}

// EKPublicKey returns the EK's public key.
func (p *Prover) EKPublicKey() crypto.PublicKey {
	k, err := p.EK.PublicKey()
	if err != nil {
		panic(err) // tpm.LoadEK returned a key that tpm2.Pub cannot read
	}
	return k
}

// EKHash returns verify.EKHash of the EK, the identity a verifier gives this TPM.
func (p *Prover) EKHash() string {
	h, err := verify.EKHash(p.EKPublicKey())
	if err != nil {
		panic(err)
	}
	return h
}

// HelloOptions changes what Hello sends. The zero value sends an honest Hello.
type HelloOptions struct {
	// EKCert replaces the prover's certificate; NoEKCert sends none.
	EKCert   []byte
	NoEKCert bool
	// EKPublic and AKPublic replace the marshalled TPMT_PUBLIC areas.
	EKPublic []byte
	AKPublic []byte
	// AK announces another key of this TPM (its public area) as the AK.
	AK *tpm.AK
	// PCRBank and PCRs replace the selection announced (not the one quoted).
	PCRBank string
	PCRs    []int
	// Mode replaces the prover's mode (protocol.ModeDevID when it has a DevID key,
	// else protocol.ModeEKCert); Version, when not zero, protocol.Version.
	Mode    string
	Version int
	// DevIDCert and DevIDPublic replace the DevID chain and public area, in any mode.
	DevIDCert   [][]byte
	DevIDPublic []byte
}

// Hello returns the agent's first message.
func (p *Prover) Hello(o HelloOptions) ([]byte, error) {
	ak := p.AK
	if o.AK != nil {
		ak = o.AK
	}
	h := &protocol.Hello{
		Mode:     protocol.ModeEKCert,
		EKCert:   p.EKCert,
		EKPublic: tpm2.Marshal(p.EK.Public),
		AKPublic: tpm2.Marshal(ak.Public),
		PCRBank:  p.Bank.Name,
		PCRs:     p.PCRs,
		TPM:      p.Props,
	}
	if o.EKCert != nil {
		h.EKCert = o.EKCert
	}
	if o.NoEKCert {
		h.EKCert = nil
	}
	if o.EKPublic != nil {
		h.EKPublic = o.EKPublic
	}
	if o.AKPublic != nil {
		h.AKPublic = o.AKPublic
	}
	if o.PCRBank != "" {
		h.PCRBank = o.PCRBank
	}
	if o.PCRs != nil {
		h.PCRs = o.PCRs
	}
	if p.DevID != nil {
		h.Mode = protocol.ModeDevID
	}
	if o.Mode != "" {
		h.Mode = o.Mode
	}
	if p.DevID != nil && h.Mode == protocol.ModeDevID {
		h.DevIDCert, h.DevIDPublic = p.DevIDCert, p.DevID.PublicBlob
	}
	if o.DevIDCert != nil {
		h.DevIDCert = o.DevIDCert
	}
	if o.DevIDPublic != nil {
		h.DevIDPublic = o.DevIDPublic
	}
	b, err := protocol.Encode(h)
	if err != nil || o.Version == 0 {
		return b, err
	}
	h.Version = o.Version
	return json.Marshal(h)
}

// EvidenceOptions changes what Evidence sends. The zero value sends honest evidence.
type EvidenceOptions struct {
	// AK activates the credential and quotes instead of the prover's AK.
	AK *tpm.AK
	// WrongSecret skips TPM2_ActivateCredential and sends a random secret: what an agent
	// whose TPM cannot activate the credential (the AK it announced lives elsewhere) is
	// left to do.
	WrongSecret bool
	// Nonce is quoted as qualifying data instead of the challenge's.
	Nonce []byte
	// QuotePCRs is the selection quoted (and its values sent) instead of the prover's.
	QuotePCRs []int
	// Replay is earlier evidence whose quote, signature and PCR values are sent again.
	Replay []byte
	// FlipSignature changes the last byte of the signature (the ECDSA s or the RSA
	// signature); FlipQuote changes the last byte of the quoted TPMS_ATTEST.
	FlipSignature bool
	FlipQuote     bool
	// ChangePCRValue changes one bit of the first PCR value sent.
	ChangePCRValue bool
	// NotTPMGenerated sends a quote whose magic is not TPM_GENERATED_VALUE, signed by
	// the AK through TPM2_Hash and TPM2_Sign: a restricted key signs such data, since the
	// TPM did not generate it. Such a "quote" states whatever its author wants.
	NotTPMGenerated bool
	// In DevID mode the AK certifies the DevID key over the challenge's nonce, unless
	// NoCertify. CertifyNonce replaces the nonce, CertifyKey the key certified (a key of
	// this TPM: the AK itself, say).
	NoCertify    bool
	CertifyNonce []byte
	CertifyKey   *tpm.DevIDKey
	// Mutate changes the message last.
	Mutate func(*protocol.Evidence)
}

// Evidence answers a challenge.
func (p *Prover) Evidence(ch *protocol.Challenge, o EvidenceOptions) ([]byte, error) {
	ak := p.AK
	if o.AK != nil {
		ak = o.AK
	}
	ev := &protocol.Evidence{}
	var err error
	if o.WrongSecret {
		ev.Secret = make([]byte, 32)
		rand.Read(ev.Secret)
	} else if ev.Secret, err = p.Activate(ch, ak); err != nil {
		return nil, err
	}
	nonce, pcrs := ch.Nonce, p.PCRs
	if o.Nonce != nil {
		nonce = o.Nonce
	}
	if o.QuotePCRs != nil {
		pcrs = o.QuotePCRs
	}
	if ev.Quote, ev.Signature, err = tpm.Quote(p.TPM, ak, p.Bank, pcrs, nonce); err != nil {
		return nil, err
	}
	if o.NotTPMGenerated {
		if ev.Quote, ev.Signature, err = p.signAsQuote(ak, ev.Quote); err != nil {
			return nil, err
		}
	}
	values, err := tpm.ReadPCRs(p.TPM, p.Bank, pcrs)
	if err != nil {
		return nil, err
	}
	for _, i := range pcrs {
		ev.PCRValues = append(ev.PCRValues, values[i])
	}
	if p.DevID != nil && !o.NoCertify {
		key, nonce := p.DevID, ch.Nonce
		if o.CertifyKey != nil {
			key = o.CertifyKey
		}
		if o.CertifyNonce != nil {
			nonce = o.CertifyNonce
		}
		if ev.DevIDCertify, ev.DevIDCertifySignature, err = tpm.Certify(p.TPM, key, ak, nonce); err != nil {
			return nil, err
		}
	}
	if o.Replay != nil {
		old, err := protocol.DecodeEvidence(o.Replay)
		if err != nil {
			return nil, fmt.Errorf("testattest: evidence to replay: %w", err)
		}
		ev.Quote, ev.Signature, ev.PCRValues = old.Quote, old.Signature, old.PCRValues
	}
	if o.FlipSignature {
		ev.Signature[len(ev.Signature)-1] ^= 0x01
	}
	if o.FlipQuote {
		ev.Quote[len(ev.Quote)-1] ^= 0x01
	}
	if o.ChangePCRValue {
		ev.PCRValues[0] = slices.Clone(ev.PCRValues[0])
		ev.PCRValues[0][0] ^= 0x01
	}
	if o.Mutate != nil {
		o.Mutate(ev)
	}
	return protocol.Encode(ev)
}

// Activate runs TPM2_ActivateCredential on a challenge with ak (the prover's AK when nil)
// and the EK.
func (p *Prover) Activate(ch *protocol.Challenge, ak *tpm.AK) ([]byte, error) {
	if ak == nil {
		ak = p.AK
	}
	return tpm.ActivateCredential(p.TPM, ak, p.EK, ch.CredentialBlob, ch.EncryptedSecret)
}

// notGenerated replaces TPM_GENERATED_VALUE (0xFF544347) in a forged quote.
const notGenerated tpm2.TPMGenerated = 0x00544347

// signAsQuote takes a real quote, replaces its magic, and has ak sign the result the way
// the TPM signs external data with a restricted key: TPM2_Hash gives a ticket saying the
// data does not start with TPM_GENERATED_VALUE, and TPM2_Sign accepts the digest with it
// (TPM 2.0 Part 1, 11.4.7).
func (p *Prover) signAsQuote(ak *tpm.AK, quote []byte) ([]byte, []byte, error) {
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](quote)
	if err != nil {
		return nil, nil, fmt.Errorf("testattest: quote: %w", err)
	}
	a.Magic = notGenerated
	data := tpm2.Marshal(a)
	h, err := tpm2.Hash{
		Data:      tpm2.TPM2BMaxBuffer{Buffer: data},
		HashAlg:   tpm2.TPMAlgSHA256,
		Hierarchy: tpm2.TPMRHEndorsement,
	}.Execute(p.TPM)
	if err != nil {
		return nil, nil, fmt.Errorf("testattest: TPM2_Hash: %w", err)
	}
	s, err := tpm2.Sign{
		KeyHandle:  ak.AuthHandle(),
		Digest:     h.OutHash,
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: h.Validation,
	}.Execute(p.TPM)
	if err != nil {
		return nil, nil, fmt.Errorf("testattest: TPM2_Sign: %w", err)
	}
	return data, tpm2.Marshal(s.Signature), nil
}

// CreateKey creates a transient key of template under the EK, to announce as an AK that
// is not one (an unrestricted signing key, another scheme). The caller must Close it.
func (p *Prover) CreateKey(template tpm2.TPMTPublic) (*tpm.AK, error) {
	cr, err := tpm2.Create{ParentHandle: p.ekAuth(), InPublic: tpm2.New2B(template)}.Execute(p.TPM)
	if err != nil {
		return nil, fmt.Errorf("testattest: Create: %w", err)
	}
	lr, err := tpm2.Load{ParentHandle: p.ekAuth(), InPrivate: cr.OutPrivate, InPublic: cr.OutPublic}.Execute(p.TPM)
	if err != nil {
		return nil, fmt.Errorf("testattest: Load: %w", err)
	}
	pub, err := cr.OutPublic.Contents()
	if err != nil {
		_, _ = tpm2.FlushContext{FlushHandle: lr.ObjectHandle}.Execute(p.TPM)
		return nil, fmt.Errorf("testattest: Create: %w", err)
	}
	return &tpm.AK{Handle: lr.ObjectHandle, Name: lr.Name, Public: *pub}, nil
}

// LoadSoftwareAK makes an ECDSA P-256 key in Go and loads it into the TPM with
// TPM2_LoadExternal: a key its owner knows, which the TPM signs quotes with all the
// same. The TPM insists that such a key is neither fixedTPM, fixedParent nor restricted
// (Part 3, 12.3), which is what gives it away. The caller must Close it.
func (p *Prover) LoadSoftwareAK() (*tpm.AK, *ecdsa.PrivateKey, error) {
	r, pub, key, err := p.loadSoftwareECC(tpmrules.AKTemplate)
	if err != nil {
		return nil, nil, err
	}
	return &tpm.AK{Handle: r.ObjectHandle, Name: r.Name, Public: pub}, key, nil
}

// loadSoftwareECC makes an ECDSA P-256 key in Go and loads it with TPM2_LoadExternal under
// the template tmpl, with the attributes the TPM allows for an external key (no fixedTPM,
// fixedParent, sensitiveDataOrigin or restricted). The caller flushes the handle.
func (p *Prover) loadSoftwareECC(tmpl tpm2.TPMTPublic) (*tpm2.LoadExternalResponse, tpm2.TPMTPublic, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tmpl, nil, err
	}
	ecdhKey, err := key.ECDH()
	if err != nil {
		return nil, tmpl, nil, err
	}
	point := ecdhKey.PublicKey().Bytes() // 0x04 || X || Y
	pub := tmpl
	pub.ObjectAttributes = tpm2.TPMAObject{UserWithAuth: true, NoDA: true, SignEncrypt: true}
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: point[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: point[33:]},
	})
	sensitive := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgECC,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: ecdhKey.Bytes()}),
	}
	r, err := tpm2.LoadExternal{
		InPrivate: tpm2.New2B(sensitive),
		InPublic:  tpm2.New2B(pub),
		Hierarchy: tpm2.TPMRHNull,
	}.Execute(p.TPM)
	if err != nil {
		return nil, pub, nil, fmt.Errorf("testattest: LoadExternal: %w", err)
	}
	return r, pub, key, nil
}

// ekAuth authorizes the EK as a parent: the high-range templates take the empty auth
// value, the low-range ones (userWithAuth clear) PolicySecret(TPM_RH_ENDORSEMENT).
func (p *Prover) ekAuth() tpm2.AuthHandle {
	if p.EK.Public.ObjectAttributes.UserWithAuth {
		return tpm2.AuthHandle{Handle: p.EK.Handle, Name: p.EK.Name, Auth: tpm2.PasswordAuth(nil)}
	}
	return tpm2.AuthHandle{Handle: p.EK.Handle, Name: p.EK.Name, Auth: tpm.EKPolicySession()}
}

// Other is what RecordOther recorded of another TPM.
type Other struct {
	Hello *protocol.Hello
	// Certify and CertifySignature: in DevID mode, that TPM's AK certifying its DevID key
	// over the nonce given to RecordOther.
	Certify, CertifySignature []byte
}

// RecordOther provisions a prover on a TPM opened by open, records its Hello, and closes
// both: the EK certificate, EK and AK public areas of another TPM (and in DevID mode its
// DevID chain and public area, and its AK's Certify of its DevID key over nonce, a fixed
// one when nil), for the attacks that pair them with this one. With the in-process
// simulator, it must run before the simulator is opened for the prover under test (one
// simulator per process), and each opening is a new TPM with new seeds.
func RecordOther(open func() (transport.TPMCloser, error), cfg Config, nonce []byte) (*Other, error) {
	t, err := open()
	if err != nil {
		return nil, err
	}
	defer t.Close()
	p, err := New(t, cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	b, err := p.Hello(HelloOptions{})
	if err != nil {
		return nil, err
	}
	o := &Other{}
	if o.Hello, err = protocol.DecodeHello(b); err != nil {
		return nil, err
	}
	if p.DevID != nil {
		if nonce == nil {
			nonce = make([]byte, 32)
		}
		if o.Certify, o.CertifySignature, err = tpm.Certify(t, p.DevID, p.AK, nonce); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Transcript is the messages of one honest attestation, as they crossed the wire.
type Transcript struct {
	Hello, Challenge, Evidence []byte
	// CA issued the EK certificate; EKHash names the TPM.
	CA     *mfgca.CA
	EKHash string
}

// Record provisions a prover on a TPM opened by open, runs one honest attestation against
// v, and closes the TPM. When v has no CA bundle it gets the prover's. The attestation must
// be accepted. With a v.Rand that yields a fixed stream, the transcript's Evidence stays
// valid for any later session that starts from the same stream (see FixedStream).
func Record(open func() (transport.TPMCloser, error), cfg Config, v *verify.Verifier) (*Transcript, error) {
	t, err := open()
	if err != nil {
		return nil, err
	}
	defer t.Close()
	p, err := New(t, cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if v.EK.Bundle == nil {
		v.EK.Bundle = p.Bundle()
	}
	if p.DevID != nil && v.DevID.Bundle == nil {
		v.DevID.Bundle = p.DevIDCA.Bundle()
	}
	tr := &Transcript{CA: p.CA, EKHash: p.EKHash()}
	if tr.Hello, err = p.Hello(HelloOptions{}); err != nil {
		return nil, err
	}
	s, ch, err := v.Begin(tr.Hello)
	if err != nil {
		return nil, fmt.Errorf("testattest: honest hello refused: %w", err)
	}
	if tr.Challenge, err = protocol.Encode(ch); err != nil {
		return nil, err
	}
	if tr.Evidence, err = p.Evidence(ch, EvidenceOptions{}); err != nil {
		return nil, err
	}
	if _, err := s.Finish(tr.Evidence); err != nil {
		return nil, fmt.Errorf("testattest: honest evidence refused: %w", err)
	}
	return tr, nil
}

// FixedStream returns a reader of an endless deterministic byte stream derived from seed
// (SHA-256 in counter mode). Given to verify.Verifier.Rand, anew before each Begin, it
// makes the verifier draw the same credential secret and nonce every time, so that one
// recorded Evidence answers every such session: benchmarks and fuzzers replay it without
// a TPM. It is for tests only: a verifier that draws predictable nonces accepts replays.
func FixedStream(seed string) io.Reader {
	return &fixedStream{seed: sha256.Sum256([]byte(seed))}
}

type fixedStream struct {
	seed    [32]byte
	counter uint64
	buf     []byte
}

func (f *fixedStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(f.buf) == 0 {
			var block [40]byte
			copy(block[:], f.seed[:])
			binary.BigEndian.PutUint64(block[32:], f.counter)
			f.counter++
			sum := sha256.Sum256(block[:])
			f.buf = sum[:]
		}
		c := copy(p[n:], f.buf)
		f.buf, n = f.buf[c:], n+c
	}
	return n, nil
}
