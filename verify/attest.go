package verify

// This file is the orchestration of one TPM node attestation (protocol package): Begin
// checks the Hello (mode, PCR selection), the EK proof (ek.go) and in DevID mode the DevID
// certificate (devidcert.go), and answers with the challenge; Finish checks the Evidence:
// credential activation (ek.go), the quote (quote.go) and in DevID mode the AK's
// TPM2_Certify of the DevID key over the same nonce (devid.go), which puts the DevID key
// in the TPM whose EK activated the credential. The PCR values' meaning (the boot policy)
// is the policy package's.

import (
	"crypto"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpmrules"
)

// Verifier checks attestations. Its fields are read-only once in use.
type Verifier struct {
	// Mode is the attestation mode served: protocol.ModeEKCert (also when empty) or
	// protocol.ModeDevID. A Hello of the other mode is refused.
	Mode string
	EK   EKPolicy
	// DevID applies in DevID mode.
	DevID DevIDPolicy
	// EKModeHosts, in DevID mode, are the EK hashes of the TPMs also accepted in EK mode:
	// hosts rolled back from DevID mode (their DevID failed) while the others stay on it.
	// Such a TPM must still present an EK certificate that verifies (EK.Bundle), and
	// activate the credential; the Result's Identity.EKModeException is set. Nil accepts
	// no agent in EK mode.
	EKModeHosts map[string]bool
	// PCRBank and PCRs are the selection every quote must cover.
	PCRBank tpm2.TPMIAlgHash
	PCRs    []int
	// EventLog says whether the boot event log is replayed against the quote (eventlog.go);
	// the zero value ignores it.
	EventLog EventLogPolicy
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
	// Rand is the source of secrets and nonces; nil means crypto/rand.
	Rand interface{ Read([]byte) (int, error) }
}

// Identity is what the verifier learned of a TPM from its Hello.
type Identity struct {
	EKHash      string
	EKPublicKey crypto.PublicKey
	// EKCert is the EK certificate; nil when the TPM sent none.
	EKCert *EKCertificate
	// CertStatus is "valid", "expired", "none" (no certificate) or "insecure" (a
	// certificate that did not verify, accepted by AllowInsecure).
	CertStatus string
	// TPM is what the agent's Hello claims of its TPM: unsigned, for logs only. What is
	// proven is EKCert.TPM (the manufacturer's signed SAN) and Result.Firmware (signed by
	// the TPM in the quote).
	TPM      protocol.TPMProperties
	Warnings []string
	// Mode is the attestation mode, protocol.ModeEKCert or protocol.ModeDevID.
	Mode string
	// EKModeException is set when the TPM attested in EK mode to a verifier in DevID
	// mode, as one of its EKModeHosts.
	EKModeException bool
	// DevID is the DevID certificate and key in DevID mode; nil in EK mode. Until Finish
	// accepts the AK's Certify of the key, nothing says the key is in this TPM.
	DevID *DevIDIdentity
}

// Session carries a verification from the Hello to the Evidence.
type Session struct {
	hello     *protocol.Hello
	proof     *ekProof
	Identity  *Identity
	bankAlg   tpm2.TPMIAlgHash
	eventLog  EventLogPolicy
	completed bool
}

// Result is an accepted attestation.
type Result struct {
	*Identity
	PCRBank string
	// PCRs maps each quoted PCR to its value.
	PCRs map[int][]byte
	// PCRDigest is the quoted digest of the PCR values, hex.
	PCRDigest string
	// Firmware is the TPM's firmware version as the TPM signed it in the quote
	// (TPMS_ATTEST.firmwareVersion, protocol.FirmwareVersion's format); the Hello's claim
	// was checked against it.
	Firmware string
	// EventLog is the boot event log the agent sent, unparsed; nil when none.
	EventLog []byte
	// Boot is what the replayed event log proves; nil when there is no log or the
	// verifier ignores it (EventLogPolicy).
	Boot *BootFacts
}

func (v *Verifier) ek() ekVerifier { return ekVerifier{policy: &v.EK, clock: v.Now, rnd: v.Rand} }

func (v *Verifier) now() time.Time { return v.ek().now() }

func (v *Verifier) mode() string {
	if v.Mode == "" {
		return protocol.ModeEKCert
	}
	return v.Mode
}

// Begin checks a Hello and returns the Challenge to send. The Session keeps the secret and
// nonce for Finish.
func (v *Verifier) Begin(helloBytes []byte) (*Session, *protocol.Challenge, error) {
	hello, err := protocol.DecodeHello(helloBytes)
	if err != nil {
		return nil, nil, &CheckError{Check: CheckProtocol, Err: err}
	}
	mode := v.mode()
	exception := false
	if hello.Mode != mode {
		if mode != protocol.ModeDevID || hello.Mode != protocol.ModeEKCert || v.EKModeHosts == nil {
			return nil, nil, reject(CheckProtocol, "mode %q is not served by this verifier (want %q)", hello.Mode, mode)
		}
		// An EK-mode exception, decided once the EK is known (below).
		mode, exception = protocol.ModeEKCert, true
	}
	bank, err := tpmrules.ParseBank(hello.PCRBank)
	if err != nil {
		return nil, nil, reject(CheckPCRSelection, "%v", err)
	}
	bankAlg := bank.Alg
	if bankAlg != v.PCRBank || !slices.Equal(hello.PCRs, v.PCRs) {
		return nil, nil, reject(CheckPCRSelection, "agent selects %s %v, server requires %s %v (set pcr_bank and pcr_selection alike on both sides)",
			hello.PCRBank, hello.PCRs, tpmrules.BankName(v.PCRBank), v.PCRs)
	}
	c, err := v.ek().begin(hello.EKCert, hello.EKPublic, hello.AKPublic, hello.TPM)
	if err != nil {
		return nil, nil, err
	}
	c.id.Mode = mode
	if exception {
		if err := v.checkEKModeException(c.id); err != nil {
			return nil, nil, err
		}
	}
	if mode == protocol.ModeDevID {
		if c.id.DevID, err = v.checkDevID(hello.DevIDCert, hello.DevIDPublic); err != nil {
			var ce *CheckError
			if errors.As(err, &ce) {
				ce.EKHash = c.id.EKHash
			}
			return nil, nil, err
		}
	}
	s := &Session{hello: hello, proof: c, Identity: c.id, bankAlg: bankAlg, eventLog: v.EventLog}
	return s, &protocol.Challenge{CredentialBlob: c.blob, EncryptedSecret: c.encSecret, Nonce: c.nonce}, nil
}

// checkEKModeException accepts a TPM in EK mode by a verifier in DevID mode only when
// its EK hash is one of EKModeHosts and its EK certificate verified against the
// manufacturer bundle (expired is accepted only as EK.Expired allows); an allow-listed EK
// without a certificate, or one accepted by AllowInsecure, is refused.
func (v *Verifier) checkEKModeException(id *Identity) error {
	var err error
	switch {
	case !v.EKModeHosts[id.EKHash]:
		err = reject(CheckEKModeException, "EK %s is not an EK-mode exception (ek_mode_hosts_path): this server serves mode %q", id.EKHash, protocol.ModeDevID)
	case id.CertStatus != "valid" && id.CertStatus != "expired":
		err = reject(CheckEKModeException, "EK %s is an EK-mode exception but its EK certificate is %q: an exception needs an EK certificate that verifies against ca_path", id.EKHash, id.CertStatus)
	default:
		id.EKModeException = true
		return nil
	}
	err.(*CheckError).EKHash = id.EKHash
	return err
}

// Finish checks the Evidence against the session's challenge. A session finishes once.
func (s *Session) Finish(evidenceBytes []byte) (*Result, error) {
	if s.completed {
		return nil, reject(CheckProtocol, "message out of order: this attestation already received its evidence")
	}
	s.completed = true
	ev, err := protocol.DecodeEvidence(evidenceBytes)
	if err != nil {
		return nil, &CheckError{Check: CheckProtocol, Err: err}
	}
	res, err := s.finish(ev)
	if err != nil {
		var ce *CheckError
		if errors.As(err, &ce) && ce.EKHash == "" {
			ce.EKHash = s.Identity.EKHash
		}
		return nil, err
	}
	s.proof.remember()
	return res, nil
}

func (s *Session) finish(ev *protocol.Evidence) (*Result, error) {
	if s.Identity.DevID == nil && len(ev.DevIDCertify) > 0 {
		return nil, reject(CheckProtocol, "the evidence carries a DevID Certify, but this attestation is in mode %q", s.Identity.Mode)
	}
	if err := s.proof.checkActivation(ev.Secret); err != nil {
		return nil, err
	}
	q, err := s.checkQuote(ev)
	if err != nil {
		return nil, err
	}
	if s.Identity.DevID != nil {
		// The AK is in the EK's TPM (the credential was activated); its Certify over
		// this attestation's nonce puts the DevID key there too, now.
		if len(ev.DevIDCertify) == 0 {
			return nil, reject(CheckCertify, "the evidence carries no Certify of the DevID key, which mode %q requires", protocol.ModeDevID)
		}
		if err := verifyCertify(s.proof.akPub, s.proof.akQN, ev.DevIDCertify, ev.DevIDCertifySignature, s.proof.nonce, s.Identity.DevID.Public); err != nil {
			return nil, err
		}
	}
	boot, err := s.checkEventLog(ev.EventLog, q)
	if err != nil {
		return nil, err
	}
	return &Result{
		Identity:  s.Identity,
		PCRBank:   tpmrules.BankName(s.bankAlg),
		PCRs:      q.pcrs,
		PCRDigest: hex.EncodeToString(q.digest),
		Firmware:  q.firmware,
		EventLog:  ev.EventLog,
		Boot:      boot,
	}, nil
}

// checkEventLog replays the evidence's event log against the quoted PCR values, as the
// verifier's EventLogPolicy asks.
func (s *Session) checkEventLog(log []byte, q *quoted) (*BootFacts, error) {
	p := s.eventLog
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !p.enabled() {
		return nil, nil
	}
	if len(log) == 0 {
		if p.Mode == EventLogRequire {
			return nil, reject(CheckEventLogMissing, "the evidence carries no boot event log, which this verifier requires")
		}
		return nil, nil
	}
	return ReplayEventLog(log, []PCRBank{{Alg: s.bankAlg, PCRs: q.pcrs}}, p)
}
