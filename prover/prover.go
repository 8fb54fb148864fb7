package prover

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// DefaultEventLogPath is where Linux exposes the firmware's boot event log.
const DefaultEventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// Config says how to prove.
type Config struct {
	// TPMPath is the TPM device or socket; "" auto-detects (tpm.Open).
	TPMPath string
	// AKHandle is where the AK is persisted (tpmrules.DefaultAKHandle when zero).
	AKHandle tpm2.TPMHandle
	// Bank and PCRs are the selection to quote (sha256 and 0,2,4,7 by default).
	Bank string
	PCRs []int
	// EventLogPath is sent when the file exists ("" means DefaultEventLogPath).
	EventLogPath string
	// EKType chooses the EK ("RSA-2048", "ECC-P256", "ECC-P384"); "" takes the first kind,
	// in that order, for which the TPM holds a certificate, else RSA-2048.
	EKType string
	// Open opens the TPM; nil means tpm.Open. Tests use it to count commands.
	Open func(path string) (transport.TPMCloser, error)
	// DevID, when set, makes the prover attest in DevID mode with this DevID.
	DevID *DevIDConfig
}

// Prover answers attestations on one TPM. What does not change while the host runs (the
// EK certificate, the TPM's properties) is read once.
type Prover struct {
	cfg  Config
	bank tpm.Bank

	mu     sync.Mutex
	cached *identity
}

type identity struct {
	kind  tpmrules.EKKind
	cert  []byte
	props protocol.TPMProperties
}

// New checks cfg and returns a Prover.
func New(cfg Config) (*Prover, error) {
	if cfg.AKHandle == 0 {
		cfg.AKHandle = tpmrules.DefaultAKHandle
	}
	if cfg.Bank == "" {
		cfg.Bank = tpmrules.DefaultPCRBank
	}
	if len(cfg.PCRs) == 0 {
		cfg.PCRs = tpmrules.DefaultPCRs()
	}
	if cfg.EventLogPath == "" {
		cfg.EventLogPath = DefaultEventLogPath
	}
	if cfg.Open == nil {
		cfg.Open = tpm.Open
	}
	bank, err := tpm.ParseBank(cfg.Bank)
	if err != nil {
		return nil, err
	}
	if cfg.EKType != "" {
		if _, found := tpmrules.EKKindNamed(cfg.EKType); !found {
			return nil, fmt.Errorf("prover: EK type %q: want RSA-2048, ECC-P256 or ECC-P384", cfg.EKType)
		}
	}
	for i, p := range cfg.PCRs {
		if p < 0 || p >= tpm.NumPCRs || (i > 0 && p <= cfg.PCRs[i-1]) {
			return nil, fmt.Errorf("prover: PCR selection %v: want ascending indices from 0 to 23", cfg.PCRs)
		}
	}
	if cfg.DevID != nil {
		if err := cfg.DevID.check(); err != nil {
			return nil, err
		}
	}
	return &Prover{cfg: cfg, bank: bank}, nil
}

// Exchange is one attestation in progress. Close it when done.
type Exchange struct {
	p      *Prover
	t      transport.TPMCloser
	ek     *tpm.EK
	ak     *tpm.AK
	devid  *devidFiles // DevID mode
	closed bool
}

// Begin opens the TPM, loads (or the first time creates and persists) the AK, and returns
// the Hello to send.
func (p *Prover) Begin() (*Exchange, []byte, error) {
	t, err := p.cfg.Open(p.cfg.TPMPath)
	if err != nil {
		return nil, nil, err
	}
	x := &Exchange{p: p, t: t}
	hello, err := x.hello()
	if err != nil {
		x.Close()
		return nil, nil, err
	}
	return x, hello, nil
}

func (x *Exchange) hello() ([]byte, error) {
	id, err := x.p.identity(x.t)
	if err != nil {
		return nil, err
	}
	if x.ek, err = tpm.LoadEK(x.t, id.kind); err != nil {
		return nil, err
	}
	if x.ak, err = tpm.LoadOrCreateAK(x.t, x.ek, x.p.cfg.AKHandle); err != nil {
		return nil, err
	}
	h := &protocol.Hello{
		Mode:     protocol.ModeEKCert,
		EKCert:   id.cert,
		EKPublic: tpm2.Marshal(x.ek.Public),
		AKPublic: tpm2.Marshal(x.ak.Public),
		PCRBank:  x.p.bank.Name,
		PCRs:     x.p.cfg.PCRs,
		TPM:      id.props,
	}
	if x.p.cfg.DevID != nil {
		if x.devid, err = x.readDevID(); err != nil {
			return nil, err
		}
		h.Mode, h.DevIDCert, h.DevIDPublic = protocol.ModeDevID, x.devid.chain, x.devid.pub
	}
	return protocol.Encode(h)
}

// identity reads the EK certificate and TPM properties once.
func (p *Prover) identity(t transport.TPM) (*identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cached != nil {
		return p.cached, nil
	}
	kind, cert, err := chooseEK(t, p.cfg.EKType)
	if err != nil {
		return nil, err
	}
	id := &identity{kind: kind, cert: cert}
	info, err := tpm.ReadInfo(t)
	if err != nil {
		return nil, err
	}
	id.props = protocol.TPMProperties{Manufacturer: info.Manufacturer, Model: info.VendorString, Firmware: info.FirmwareVersion}
	p.cached = id
	return id, nil
}

// chooseEK returns the EK of kind ekType and its certificate (nil when NV holds none); with
// ekType "", the first kind of tpmrules.EKKinds with a certificate, else RSA-2048. Attestation
// and enrollment choose the same way, so both present the same EK.
func chooseEK(t transport.TPM, ekType string) (tpmrules.EKKind, []byte, error) {
	chosen := tpmrules.EKRSA2048
	for _, kind := range tpmrules.EKKinds {
		if ekType != "" && kind.Name != ekType {
			continue
		}
		if ekType != "" {
			chosen = kind
		}
		cert, err := tpm.ReadEKCertificate(t, kind)
		if errors.Is(err, tpm.ErrNoEKCertificate) {
			continue
		}
		if err != nil {
			return tpmrules.EKKind{}, nil, err
		}
		return kind, cert, nil
	}
	return chosen, nil, nil
}

// Answer activates the challenge's credential, quotes the PCRs over its nonce, and
// returns the Evidence to send.
func (x *Exchange) Answer(challenge []byte) ([]byte, error) {
	ch, err := protocol.DecodeChallenge(challenge)
	if err != nil {
		return nil, err
	}
	secret, err := tpm.ActivateCredential(x.t, x.ak, x.ek, ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		// The cached EK may be stale (a cleared TPM); read it again next time.
		x.p.mu.Lock()
		x.p.cached = nil
		x.p.mu.Unlock()
		return nil, err
	}
	// The EK has done its part: a transient one leaves its slot to the keys to come.
	if err := x.ek.Close(x.t); err != nil {
		return nil, err
	}
	x.ek = nil
	// Quote first, then read the PCRs: if a PCR is extended in between, the values no longer
	// hash to the quoted digest, and the quote is taken again.
	var quote, sig []byte
	var values [][]byte
	for attempt := 0; ; attempt++ {
		quote, sig, err = tpm.Quote(x.t, x.ak, x.p.bank, x.p.cfg.PCRs, ch.Nonce)
		if err != nil {
			return nil, err
		}
		pcrs, err := tpm.ReadPCRs(x.t, x.p.bank, x.p.cfg.PCRs)
		if err != nil {
			return nil, err
		}
		values = values[:0]
		for _, p := range x.p.cfg.PCRs {
			values = append(values, pcrs[p])
		}
		ok, err := digestMatches(quote, &x.ak.Public, values)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		if attempt == 2 {
			return nil, errors.New("prover: PCRs keep changing while they are quoted; try again")
		}
	}
	ev := &protocol.Evidence{Secret: secret, Quote: quote, Signature: sig, PCRValues: values}
	if x.devid != nil {
		if ev.DevIDCertify, ev.DevIDCertifySignature, err = x.certify(ch.Nonce); err != nil {
			return nil, err
		}
	}
	if log, err := readEventLog(x.p.cfg.EventLogPath); err != nil {
		return nil, err
	} else {
		ev.EventLog = log
	}
	return protocol.Encode(ev)
}

// digestMatches reports whether values hash, with the AK's signing hash, to the quote's
// PCR digest.
func digestMatches(quote []byte, ak *tpm2.TPMTPublic, values [][]byte) (bool, error) {
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](quote)
	if err != nil {
		return false, fmt.Errorf("prover: quote from TPM: %w", err)
	}
	info, err := a.Attested.Quote()
	if err != nil {
		return false, fmt.Errorf("prover: quote from TPM: %w", err)
	}
	h := crypto.SHA256
	if _, alg, err := tpmrules.SigningScheme(ak); err == nil {
		if hh, err := alg.Hash(); err == nil {
			h = hh
		}
	}
	d := h.New()
	for _, v := range values {
		d.Write(v)
	}
	return bytes.Equal(d.Sum(nil), info.PCRDigest.Buffer), nil
}

// ReadEventLog reads the boot event log at path as the agent does before it sends it:
// nil, and no error, when there is no file; an error for a log over the protocol's
// limit (protocol.MaxEventLogSize).
func ReadEventLog(path string) ([]byte, error) { return readEventLog(path) }

func readEventLog(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prover: event log: %w", err)
	}
	defer f.Close()
	b := make([]byte, protocol.MaxEventLogSize+1)
	n, err := ioReadFull(f, b)
	if err != nil {
		return nil, fmt.Errorf("prover: event log %s: %w", path, err)
	}
	if n > protocol.MaxEventLogSize {
		return nil, fmt.Errorf("prover: event log %s is over %d bytes, the protocol's limit", path, protocol.MaxEventLogSize)
	}
	return b[:n], nil
}

// Close flushes what the exchange loaded (a transient EK) and closes the TPM.
func (x *Exchange) Close() error {
	if x.closed {
		return nil
	}
	x.closed = true
	var errs []error
	if x.ak != nil {
		errs = append(errs, x.ak.Close(x.t))
	}
	if x.ek != nil {
		errs = append(errs, x.ek.Close(x.t))
	}
	errs = append(errs, x.t.Close())
	return errors.Join(errs...)
}
