package protocol

// DevID enrollment, device → RA (the registration authority beside step-ca), over HTTPS:
//
//	POST /v1/enroll/begin   EnrollBegin  → EnrollChallenge
//	POST /v1/enroll/finish  EnrollFinish → EnrollResult
//
// The device proves in one exchange that its EK chains to its manufacturer, that the AK
// is in the same TPM (credential activation), that the DevID key is in that TPM too (the
// AK certifies it with TPM2_Certify over the RA's nonce), and that it holds the DevID key
// (the CSR is signed by it). Errors are JSON EnrollError bodies that name the check.

import "fmt"

// Enrollment message types.
const (
	TypeEnrollBegin     = "enroll_begin"
	TypeEnrollChallenge = "enroll_challenge"
	TypeEnrollFinish    = "enroll_finish"
	TypeEnrollResult    = "enroll_result"
)

// MaxEnrollMessageSize bounds an enrollment request; the RA refuses larger bodies.
const MaxEnrollMessageSize = 64 << 10

// EnrollBegin opens an enrollment.
type EnrollBegin struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	// Host is the DNS name the DevID certificate will carry, e.g. "auth.funlab.casa".
	Host string `json:"host"`
	// EKCert, EKPublic, AKPublic as in Hello.
	EKCert   []byte `json:"ek_cert,omitempty"`
	EKPublic []byte `json:"ek_public"`
	AKPublic []byte `json:"ak_public"`
	// DevIDPublic is the TPMT_PUBLIC of the DevID key the device created in its TPM.
	DevIDPublic []byte `json:"devid_public"`
}

// EnrollChallenge answers EnrollBegin.
type EnrollChallenge struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	// Session names this enrollment in EnrollFinish; it is good for one use, briefly.
	Session         string `json:"session"`
	CredentialBlob  []byte `json:"credential_blob"`
	EncryptedSecret []byte `json:"encrypted_secret"`
	// Nonce is the qualifying data TPM2_Certify must carry.
	Nonce []byte `json:"nonce"`
}

// EnrollFinish proves the TPM and asks for the certificate.
type EnrollFinish struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	Session string `json:"session"`
	// Secret is what TPM2_ActivateCredential recovered.
	Secret []byte `json:"secret"`
	// Certify and CertifySignature are TPM2_Certify's TPMS_ATTEST and TPMT_SIGNATURE: the
	// AK's statement that the DevID key is in this TPM, over the challenge's nonce.
	Certify          []byte `json:"certify"`
	CertifySignature []byte `json:"certify_signature"`
	// CSR is a PKCS #10 request (DER) signed by the DevID key.
	CSR []byte `json:"csr"`
}

// EnrollResult carries the DevID certificate.
type EnrollResult struct {
	Version int    `json:"v"`
	Type    string `json:"type"`
	// Chain is the DevID certificate then its issuers (DER each), as step-ca returned them.
	Chain [][]byte `json:"chain"`
}

func (m *EnrollBegin) header() header     { return header{m.Version, m.Type} }
func (m *EnrollChallenge) header() header { return header{m.Version, m.Type} }
func (m *EnrollFinish) header() header    { return header{m.Version, m.Type} }
func (m *EnrollResult) header() header    { return header{m.Version, m.Type} }

// EnrollError is the body of every refusal: the check that failed, the request id under
// which the RA logged the detail, and a fixed sentence for the check. It carries nothing
// about the RA's internals: no paths, no internal error text, no words of step-ca.
type EnrollError struct {
	Check     string `json:"check"`
	RequestID string `json:"request_id,omitempty"`
	Error     string `json:"error"`
}

// EncodeEnroll marshals an enrollment message, filling in version and type.
func EncodeEnroll(m any) ([]byte, error) {
	switch v := m.(type) {
	case *EnrollBegin:
		v.Version, v.Type = Version, TypeEnrollBegin
	case *EnrollChallenge:
		v.Version, v.Type = Version, TypeEnrollChallenge
	case *EnrollFinish:
		v.Version, v.Type = Version, TypeEnrollFinish
	case *EnrollResult:
		v.Version, v.Type = Version, TypeEnrollResult
	default:
		return nil, fmt.Errorf("protocol: cannot encode %T", m)
	}
	return jsonMarshal(m)
}

func checkHost(msg, host string) error {
	if host == "" || len(host) > 253 {
		return fmt.Errorf("%w: %s: host %q: want a DNS name of 1 to 253 characters", ErrMalformed, msg, host)
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("%w: %s: host %q: want a lower-case DNS name", ErrMalformed, msg, host)
		}
	}
	return nil
}

// DecodeEnrollBegin decodes and checks the form of an EnrollBegin.
func DecodeEnrollBegin(b []byte) (*EnrollBegin, error) {
	var m EnrollBegin
	if err := decodeLimited(b, TypeEnrollBegin, &m, MaxEnrollMessageSize); err != nil {
		return nil, err
	}
	if err := checkHost("enroll_begin", m.Host); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name     string
		b        []byte
		required bool
	}{{"ek_cert", m.EKCert, false}, {"ek_public", m.EKPublic, true}, {"ak_public", m.AKPublic, true}, {"devid_public", m.DevIDPublic, true}} {
		if err := checkBlob("enroll_begin", c.name, c.b, c.required, maxBlob); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// DecodeEnrollChallenge decodes and checks the form of an EnrollChallenge.
func DecodeEnrollChallenge(b []byte) (*EnrollChallenge, error) {
	var m EnrollChallenge
	if err := decodeLimited(b, TypeEnrollChallenge, &m, MaxEnrollMessageSize); err != nil {
		return nil, err
	}
	if len(m.Session) == 0 || len(m.Session) > 128 {
		return nil, fmt.Errorf("%w: enroll_challenge: session is %d characters, want 1 to 128", ErrMalformed, len(m.Session))
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{{"credential_blob", m.CredentialBlob}, {"encrypted_secret", m.EncryptedSecret}, {"nonce", m.Nonce}} {
		if err := checkBlob("enroll_challenge", c.name, c.b, true, maxBlob); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// DecodeEnrollFinish decodes and checks the form of an EnrollFinish.
func DecodeEnrollFinish(b []byte) (*EnrollFinish, error) {
	var m EnrollFinish
	if err := decodeLimited(b, TypeEnrollFinish, &m, MaxEnrollMessageSize); err != nil {
		return nil, err
	}
	if len(m.Session) == 0 || len(m.Session) > 128 {
		return nil, fmt.Errorf("%w: enroll_finish: session is %d characters, want 1 to 128", ErrMalformed, len(m.Session))
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{{"secret", m.Secret}, {"certify", m.Certify}, {"certify_signature", m.CertifySignature}, {"csr", m.CSR}} {
		if err := checkBlob("enroll_finish", c.name, c.b, true, maxBlob); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// DecodeEnrollResult decodes and checks the form of an EnrollResult.
func DecodeEnrollResult(b []byte) (*EnrollResult, error) {
	var m EnrollResult
	if err := decodeLimited(b, TypeEnrollResult, &m, MaxEnrollMessageSize); err != nil {
		return nil, err
	}
	if len(m.Chain) == 0 || len(m.Chain) > 8 {
		return nil, fmt.Errorf("%w: enroll_result: %d certificates in the chain, want 1 to 8", ErrMalformed, len(m.Chain))
	}
	for i, c := range m.Chain {
		if err := checkBlob("enroll_result", fmt.Sprintf("chain[%d]", i), c, true, maxBlob); err != nil {
			return nil, err
		}
	}
	return &m, nil
}
