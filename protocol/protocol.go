// Package protocol holds the wire messages of omens TPM attestation, shared by the agent
// (prover) and the server (verifier). It is versioned from the first message: every
// message carries "v", and a peer refuses a version it does not speak before it reads
// anything else.
//
// EK mode, one SPIRE node attestation exchange:
//
//	agent → server  Hello      EK certificate, EK and AK public areas, PCR selection, TPM properties
//	server → agent  Challenge  MakeCredential(EK, AK name, secret) and a fresh nonce
//	agent → server  Evidence   the activated secret, a quote over the PCRs with the nonce, PCR values, event log
//
// DevID mode is the same exchange with two more fields each way: the Hello carries the
// DevID certificate chain and the DevID key's public area, the Evidence the AK's
// TPM2_Certify of the DevID key over the same nonce. Those fields are refused in EK mode
// and required in DevID mode, so version 1 speaks both.
//
// Messages are JSON objects with a "type" (so a message out of order is named as such);
// byte fields are base64. Decoders are strict: a size limit, unknown fields refused, every
// field bounded. They check form only; what the values mean is the verifier's job.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version this package speaks.
const Version = 1

// Limits on what a peer may send.
const (
	// MaxMessageSize bounds any message; Evidence with an event log is the largest (base64
	// makes the log a third longer on the wire).
	MaxMessageSize = 3 << 19
	// MaxEventLogSize bounds the boot event log (real logs are 10 to 100 KiB).
	MaxEventLogSize = 768 << 10
	// maxBlob bounds certificates, public areas, quotes and signatures.
	maxBlob = 8 << 10
	// MaxDevIDChain bounds the DevID certificates of a Hello (the certificate and its
	// issuers).
	MaxDevIDChain = 8
)

// Message types.
const (
	TypeHello     = "hello"
	TypeChallenge = "challenge"
	TypeEvidence  = "evidence"
)

// Attestation modes.
const (
	ModeEKCert = "ek_cert"
	ModeDevID  = "devid"
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("protocol: malformed message")

// header is read first, to check version and type before the body.
type header struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
}

// TPMProperties is what the agent's TPM reports about itself (TPM_PT_MANUFACTURER,
// TPM_PT_VENDOR_STRING_*, TPM_PT_FIRMWARE_VERSION_*).
type TPMProperties struct {
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Firmware     string `json:"firmware"`
}

// FirmwareVersion formats a TPM firmware version, the 64 bits of TPM_PT_FIRMWARE_VERSION_1
// (high half) and TPM_PT_FIRMWARE_VERSION_2 (low half), which a TPM also signs in every
// TPMS_ATTEST as firmwareVersion (TPM 2.0 Part 2, 10.12.12): four 16-bit parts in decimal,
// "major.minor.build.patch" as vendors print them. TPMProperties.Firmware is in this form.
func FirmwareVersion(v uint64) string {
	return fmt.Sprintf("%d.%d.%d.%d", v>>48, v>>32&0xffff, v>>16&0xffff, v&0xffff)
}

// Hello is the agent's first message.
type Hello struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	Mode    string `json:"mode"`
	// EKCert is the EK certificate as read from NV (DER, possibly padded); empty when the
	// TPM has none.
	EKCert []byte `json:"ek_cert,omitempty"`
	// EKPublic and AKPublic are TPMT_PUBLIC areas as the TPM marshals them.
	EKPublic []byte `json:"ek_public"`
	AKPublic []byte `json:"ak_public"`
	// PCRBank ("sha256") and PCRs (ascending) are the selection the agent will quote.
	PCRBank string        `json:"pcr_bank"`
	PCRs    []int         `json:"pcrs"`
	TPM     TPMProperties `json:"tpm"`
	// DevIDCert is the DevID certificate then its issuers, DER each (mode "devid" only,
	// and required then).
	DevIDCert [][]byte `json:"devid_cert,omitempty"`
	// DevIDPublic is the DevID key's TPMT_PUBLIC as the TPM marshals it (mode "devid"
	// only, and required then).
	DevIDPublic []byte `json:"devid_public,omitempty"`
}

// Challenge is the server's answer to Hello.
type Challenge struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	// CredentialBlob and EncryptedSecret are TPM2_MakeCredential's output for the EK and
	// the AK's name (TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents).
	CredentialBlob  []byte `json:"credential_blob"`
	EncryptedSecret []byte `json:"encrypted_secret"`
	// Nonce is the qualifying data the quote must carry.
	Nonce []byte `json:"nonce"`
}

// Evidence is the agent's answer to Challenge.
type Evidence struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	// Secret is what TPM2_ActivateCredential recovered.
	Secret []byte `json:"secret"`
	// Quote is the TPMS_ATTEST the AK signed; Signature its TPMT_SIGNATURE.
	Quote     []byte `json:"quote"`
	Signature []byte `json:"signature"`
	// PCRValues are the digests of the quoted PCRs, in the order of Hello.PCRs.
	PCRValues [][]byte `json:"pcr_values"`
	// EventLog is the boot event log (binary_bios_measurements), when the host has one.
	EventLog []byte `json:"event_log,omitempty"`
	// DevIDCertify and DevIDCertifySignature are TPM2_Certify's TPMS_ATTEST and
	// TPMT_SIGNATURE: the AK's statement, over the challenge's nonce, that the DevID key of
	// the Hello is loaded in the same TPM (DevID mode only; both or neither).
	DevIDCertify          []byte `json:"devid_certify,omitempty"`
	DevIDCertifySignature []byte `json:"devid_certify_signature,omitempty"`
}

// Encode marshals a message, filling in version and type.
func Encode(m any) ([]byte, error) {
	switch v := m.(type) {
	case *Hello:
		v.Version, v.Type = Version, TypeHello
	case *Challenge:
		v.Version, v.Type = Version, TypeChallenge
	case *Evidence:
		v.Version, v.Type = Version, TypeEvidence
	default:
		return nil, fmt.Errorf("protocol: cannot encode %T", m)
	}
	return json.Marshal(m)
}

func jsonMarshal(m any) ([]byte, error) { return json.Marshal(m) }

// decode checks size, version and type, then decodes b strictly into v.
func decode(b []byte, want string, v message) error { return decodeLimited(b, want, v, MaxMessageSize) }

// message is a decoded message's version and type.
type message interface{ header() header }

func (m *Hello) header() header     { return header{m.Version, m.Type} }
func (m *Challenge) header() header { return header{m.Version, m.Type} }
func (m *Evidence) header() header  { return header{m.Version, m.Type} }

// decodeLimited is decode with a size limit of its own.
//
// The message is read once, strictly, with its version and type; only when that fails, or
// the version or type is not the one wanted, is the header read on its own, so that the
// error names an unknown version or a message out of order before anything else, as if
// the header had been read first. Reading the header first every time would scan every
// message twice more (the event log of an Evidence is most of its bytes).
func decodeLimited(b []byte, want string, v message, limit int) error {
	if len(b) > limit {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrMalformed, want, len(b), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, tail := dec.Token(); tail != io.EOF {
			err = errors.New("data after the message")
		}
	}
	if err == nil && v.header() == (header{Version, want}) {
		return nil
	}
	var h header
	if herr := json.Unmarshal(b, &h); herr != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, want, herr)
	}
	if h.Version != Version {
		return fmt.Errorf("%w: unknown protocol version %d (this side speaks %d)", ErrMalformed, h.Version, Version)
	}
	if h.Type != want {
		return fmt.Errorf("%w: message out of order: got %q, want %q", ErrMalformed, h.Type, want)
	}
	if err == nil {
		// Not reached: a message that decoded has the header just read.
		err = fmt.Errorf("header v=%d type=%q", v.header().Version, v.header().Type)
	}
	return fmt.Errorf("%w: %s: %v", ErrMalformed, want, err)
}

func checkBlob(msg, field string, b []byte, required bool, limit int) error {
	if required && len(b) == 0 {
		return fmt.Errorf("%w: %s: %s is missing", ErrMalformed, msg, field)
	}
	if len(b) > limit {
		return fmt.Errorf("%w: %s: %s is %d bytes, limit %d", ErrMalformed, msg, field, len(b), limit)
	}
	return nil
}

// DecodeHello decodes and checks the form of a Hello.
func DecodeHello(b []byte) (*Hello, error) {
	var m Hello
	if err := decode(b, TypeHello, &m); err != nil {
		return nil, err
	}
	if m.Mode != ModeEKCert && m.Mode != ModeDevID {
		return nil, fmt.Errorf("%w: hello: unknown mode %q (want %q or %q)", ErrMalformed, m.Mode, ModeEKCert, ModeDevID)
	}
	for _, c := range []struct {
		name     string
		b        []byte
		required bool
	}{{"ek_cert", m.EKCert, false}, {"ek_public", m.EKPublic, true}, {"ak_public", m.AKPublic, true}} {
		if err := checkBlob("hello", c.name, c.b, c.required, maxBlob); err != nil {
			return nil, err
		}
	}
	if len(m.PCRs) == 0 || len(m.PCRs) > 24 {
		return nil, fmt.Errorf("%w: hello: %d PCRs selected, want 1 to 24", ErrMalformed, len(m.PCRs))
	}
	for i, p := range m.PCRs {
		if p < 0 || p > 23 || (i > 0 && p <= m.PCRs[i-1]) {
			return nil, fmt.Errorf("%w: hello: PCR selection %v is not ascending indices from 0 to 23", ErrMalformed, m.PCRs)
		}
	}
	if len(m.PCRBank) > 16 || len(m.TPM.Manufacturer) > 64 || len(m.TPM.Model) > 64 || len(m.TPM.Firmware) > 64 {
		return nil, fmt.Errorf("%w: hello: a text field is longer than its limit", ErrMalformed)
	}
	if m.Mode == ModeEKCert {
		if len(m.DevIDCert) > 0 || len(m.DevIDPublic) > 0 {
			return nil, fmt.Errorf("%w: hello: devid_cert and devid_public are sent only in mode %q", ErrMalformed, ModeDevID)
		}
		// An empty list that was present comes back absent, as for byte fields.
		m.DevIDCert = nil
		return &m, nil
	}
	if len(m.DevIDCert) == 0 || len(m.DevIDCert) > MaxDevIDChain {
		return nil, fmt.Errorf("%w: hello: %d DevID certificates, want 1 to %d in mode %q", ErrMalformed, len(m.DevIDCert), MaxDevIDChain, ModeDevID)
	}
	for i, c := range m.DevIDCert {
		if err := checkBlob("hello", fmt.Sprintf("devid_cert[%d]", i), c, true, maxBlob); err != nil {
			return nil, err
		}
	}
	if err := checkBlob("hello", "devid_public", m.DevIDPublic, true, maxBlob); err != nil {
		return nil, err
	}
	return &m, nil
}

// DecodeChallenge decodes and checks the form of a Challenge.
func DecodeChallenge(b []byte) (*Challenge, error) {
	var m Challenge
	if err := decode(b, TypeChallenge, &m); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{{"credential_blob", m.CredentialBlob}, {"encrypted_secret", m.EncryptedSecret}, {"nonce", m.Nonce}} {
		if err := checkBlob("challenge", c.name, c.b, true, maxBlob); err != nil {
			return nil, err
		}
	}
	if len(m.Nonce) > 64 {
		return nil, fmt.Errorf("%w: challenge: nonce is %d bytes, limit 64", ErrMalformed, len(m.Nonce))
	}
	return &m, nil
}

// DecodeEvidence decodes and checks the form of an Evidence.
func DecodeEvidence(b []byte) (*Evidence, error) {
	var m Evidence
	if err := decode(b, TypeEvidence, &m); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{{"secret", m.Secret}, {"quote", m.Quote}, {"signature", m.Signature}} {
		if err := checkBlob("evidence", c.name, c.b, true, maxBlob); err != nil {
			return nil, err
		}
	}
	if len(m.PCRValues) == 0 || len(m.PCRValues) > 24 {
		return nil, fmt.Errorf("%w: evidence: %d PCR values, want 1 to 24", ErrMalformed, len(m.PCRValues))
	}
	for i, v := range m.PCRValues {
		if len(v) == 0 || len(v) > 64 {
			return nil, fmt.Errorf("%w: evidence: PCR value %d is %d bytes, want 1 to 64", ErrMalformed, i, len(v))
		}
	}
	if err := checkBlob("evidence", "event_log", m.EventLog, false, MaxEventLogSize); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{{"devid_certify", m.DevIDCertify}, {"devid_certify_signature", m.DevIDCertifySignature}} {
		if err := checkBlob("evidence", c.name, c.b, false, maxBlob); err != nil {
			return nil, err
		}
	}
	if (len(m.DevIDCertify) == 0) != (len(m.DevIDCertifySignature) == 0) {
		return nil, fmt.Errorf("%w: evidence: devid_certify and devid_certify_signature are sent together or not at all", ErrMalformed)
	}
	return &m, nil
}
