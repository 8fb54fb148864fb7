// Package devid is the device side of DevID enrollment: it creates a DevID key in the
// host's TPM, proves the TPM to the RA (package ra) in one exchange, and writes what both
// omens and SPIRE's built-in tpm_devid agent plugin load: the certificate chain
// (devid_cert_path), the key's public and private blobs (devid_pub_path,
// devid_priv_path; the private blob is encrypted by the TPM's SRK and useless anywhere
// else), and, when asked, the key persisted at a handle (the plan's 0x81010002).
package devid

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/statefile"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// Files in the DevID directory.
const (
	CertFile = "devid.crt"  // certificate then issuers, PEM
	PubFile  = "devid.pub"  // TPM2B_PUBLIC of the key
	PrivFile = "devid.priv" // TPM2B_PRIVATE of the key, encrypted by the SRK
	MetaFile = "devid.json" // what was enrolled, for status and renewal
)

// Config says how to enroll.
type Config struct {
	TPMPath string
	// RAURL is the RA's base URL (https://ca.funlab.casa:8443); RARoots verifies its TLS
	// certificate (step-ca's root).
	RAURL   string
	RARoots *x509.CertPool
	// Host is the name the certificate carries (auth.funlab.casa).
	Host string
	// Dir receives the files (see CertFile etc.).
	Dir string
	// Handle, when not zero, is where the DevID key is also persisted.
	Handle tpm2.TPMHandle
	// KeyAlg is "ecc" (P-256, the default) or "rsa" (2048).
	KeyAlg   string
	AKHandle tpm2.TPMHandle
	// Open opens the TPM; nil means tpm.Open.
	Open func(string) (transport.TPMCloser, error)
	// HTTP is the client for the RA; nil builds one that trusts RARoots.
	HTTP *http.Client
}

// Meta is what devid.json records.
type Meta struct {
	Host     string    `json:"host"`
	EKHash   string    `json:"ek_hash"`
	KeyAlg   string    `json:"key_alg"`
	Handle   string    `json:"handle,omitempty"`
	Serial   string    `json:"serial"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	Enrolled time.Time `json:"enrolled"`
}

// Enroll creates a DevID key in the TPM, enrolls it through the RA and writes the files.
// The files are replaced atomically, the certificate last, so a reader never pairs a new
// certificate with an old key.
func Enroll(ctx context.Context, cfg Config) (*Meta, error) {
	if cfg.Host == "" || cfg.RAURL == "" || cfg.Dir == "" {
		return nil, errors.New("devid: the host name, the RA URL and the output directory are required")
	}
	if cfg.Open == nil {
		cfg.Open = tpm.Open
	}
	if cfg.AKHandle == 0 {
		cfg.AKHandle = tpmrules.DefaultAKHandle
	}
	alg := tpm2.TPMAlgECC
	switch cfg.KeyAlg {
	case "", "ecc":
		cfg.KeyAlg = "ecc"
	case "rsa":
		alg = tpm2.TPMAlgRSA
	default:
		return nil, fmt.Errorf("devid: key algorithm %q: want ecc or rsa", cfg.KeyAlg)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RARoots, MinVersion: tls.VersionTLS12}}}
	}
	t, err := cfg.Open(cfg.TPMPath)
	if err != nil {
		return nil, err
	}
	defer t.Close()

	// The reference TPM has three transient object slots and TPM2_Create needs one spare:
	// load what each step needs and flush it before the next.
	kind, ekCert, err := firstEK(t)
	if err != nil {
		return nil, err
	}
	ek, err := tpm.LoadEK(t, kind)
	if err != nil {
		return nil, err
	}
	ekPublic := ek.Public
	ak, err := tpm.LoadOrCreateAK(t, ek, cfg.AKHandle)
	ek.Close(t)
	if err != nil {
		return nil, err
	}
	defer ak.Close(t)
	srk, err := tpm.LoadSRK(t, alg)
	if err != nil {
		return nil, err
	}
	key, err := tpm.CreateDevID(t, srk, alg)
	srk.Close(t)
	if err != nil {
		return nil, err
	}
	defer key.Close(t)

	begin := &protocol.EnrollBegin{Host: cfg.Host, EKCert: ekCert, EKPublic: tpm2.Marshal(ekPublic), AKPublic: tpm2.Marshal(ak.Public), DevIDPublic: tpm2.Marshal(key.Public)}
	var ch protocol.EnrollChallenge
	if err := post(ctx, cfg, "/v1/enroll/begin", begin, func(b []byte) error {
		c, err := protocol.DecodeEnrollChallenge(b)
		if c != nil {
			ch = *c
		}
		return err
	}); err != nil {
		return nil, err
	}
	ek, err = tpm.LoadEK(t, kind)
	if err != nil {
		return nil, err
	}
	secret, err := tpm.ActivateCredential(t, ak, ek, ch.CredentialBlob, ch.EncryptedSecret)
	ek.Close(t)
	if err != nil {
		return nil, err
	}
	attest, sig, err := tpm.Certify(t, key, ak, ch.Nonce)
	if err != nil {
		return nil, err
	}
	signer, err := key.Signer(t)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cfg.Host},
		DNSNames: []string{cfg.Host},
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("devid: CSR signed in the TPM: %w", err)
	}
	finish := &protocol.EnrollFinish{Session: ch.Session, Secret: secret, Certify: attest, CertifySignature: sig, CSR: csr}
	var res *protocol.EnrollResult
	if err := post(ctx, cfg, "/v1/enroll/finish", finish, func(b []byte) error {
		var err error
		res, err = protocol.DecodeEnrollResult(b)
		return err
	}); err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("devid: certificate from the RA: %w", err)
	}
	if _, err := verify.CheckCSR(csr, leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("devid: the RA returned a certificate for another key: %w", err)
	}
	if cfg.Handle != 0 {
		if err := tpm.PersistDevID(t, key, cfg.Handle); err != nil {
			return nil, err
		}
	}
	ekKey, _ := tpm2.Pub(ekPublic)
	ekHash, _ := verify.EKHash(ekKey)
	meta := &Meta{Host: cfg.Host, EKHash: ekHash, KeyAlg: cfg.KeyAlg, Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter.UTC(), Enrolled: time.Now().UTC()}
	if cfg.Handle != 0 {
		meta.Handle = tpmrules.FormatHandle(cfg.Handle)
	}
	if err := writeFiles(cfg.Dir, key, res.Chain, meta); err != nil {
		return nil, err
	}
	return meta, nil
}

// firstEK returns the first EK kind with a certificate, as the prover does.
func firstEK(t transport.TPM) (tpmrules.EKKind, []byte, error) {
	for _, kind := range tpmrules.EKKinds {
		cert, err := tpm.ReadEKCertificate(t, kind)
		if errors.Is(err, tpm.ErrNoEKCertificate) {
			continue
		}
		if err != nil {
			return tpmrules.EKKind{}, nil, err
		}
		return kind, cert, nil
	}
	return tpmrules.EKRSA2048, nil, nil
}

func post(ctx context.Context, cfg Config, path string, msg any, decode func([]byte) error) error {
	body, err := protocol.EncodeEnroll(msg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.RAURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("devid: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cfg.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("devid: RA %s: %w", cfg.RAURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxEnrollMessageSize+1))
	if err != nil {
		return fmt.Errorf("devid: RA %s: %w", cfg.RAURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e protocol.EnrollError
		if json.Unmarshal(b, &e) == nil && e.Check != "" {
			return &RAError{Status: resp.StatusCode, Check: printable(e.Check, 64), RequestID: printable(e.RequestID, 64), Message: printable(e.Error, 512)}
		}
		return fmt.Errorf("devid: RA %s: %s", cfg.RAURL, resp.Status)
	}
	return decode(b)
}

// RAError is a refusal by the RA: the check that failed and the request id under which
// the RA's operator finds the detail in the RA's log; Message is the RA's fixed sentence
// for the check.
type RAError struct {
	Status    int
	Check     string
	RequestID string
	Message   string
}

func (e *RAError) Error() string {
	return fmt.Sprintf("devid: the RA refused (%d, check %s, request id %s): %s", e.Status, e.Check, e.RequestID, e.Message)
}

// printable keeps at most max printable ASCII characters of what the RA said, so a
// hostile answer cannot drive the operator's terminal.
func printable(s string, max int) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= max {
			b.WriteString("…")
			break
		}
		if c >= 0x20 && c < 0x7f {
			b.WriteRune(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func writeFiles(dir string, key *tpm.DevIDKey, chain [][]byte, meta *Meta) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("devid: %w", err)
	}
	var pemChain bytes.Buffer
	for _, c := range chain {
		pem.Encode(&pemChain, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	m, _ := json.MarshalIndent(meta, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{PubFile, key.PublicBlob, 0o644},
		{PrivFile, key.PrivateBlob, 0o600},
		{MetaFile, append(m, '\n'), 0o644},
		{CertFile, pemChain.Bytes(), 0o644},
	} {
		if err := statefile.WriteAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("devid: writing %s: %w", f.name, err)
		}
	}
	return nil
}
