package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/statefile"
	"omens.dev/omens/protocol"
	"omens.dev/omens/prover"
	"omens.dev/omens/tpm"
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
	KeyAlg string
	// AKHandle is where the AK is persisted (tpm.DefaultAKHandle when zero); the prover
	// loads it, or creates it there the first time, as for an attestation.
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
		return nil, errors.New("enroll: the host name, the RA URL and the output directory are required")
	}
	alg := tpm2.TPMAlgECC
	switch cfg.KeyAlg {
	case "", "ecc":
		cfg.KeyAlg = "ecc"
	case "rsa":
		alg = tpm2.TPMAlgRSA
	default:
		return nil, fmt.Errorf("enroll: key algorithm %q: want ecc or rsa", cfg.KeyAlg)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RARoots, MinVersion: tls.VersionTLS12}}}
	}
	p, err := prover.New(prover.Config{TPMPath: cfg.TPMPath, AKHandle: cfg.AKHandle, Open: cfg.Open})
	if err != nil {
		return nil, err
	}
	e, begin, err := p.BeginEnrollment(cfg.Host, alg)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	ek, err := e.EKPublicKey()
	if err != nil {
		return nil, err
	}
	ekHash, err := verify.EKHash(ek)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	ch, err := post(ctx, cfg, "/v1/enroll/begin", begin, protocol.DecodeEnrollChallenge)
	if err != nil {
		return nil, err
	}
	finish, err := e.Answer(ch)
	if err != nil {
		return nil, err
	}
	res, err := post(ctx, cfg, "/v1/enroll/finish", finish, protocol.DecodeEnrollResult)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("enroll: certificate from the RA: %w", err)
	}
	if _, err := verify.CheckCSR(finish.CSR, leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("enroll: the RA returned a certificate for another key: %w", err)
	}
	if cfg.Handle != 0 {
		if err := e.Persist(cfg.Handle); err != nil {
			return nil, err
		}
	}
	meta := &Meta{Host: cfg.Host, EKHash: ekHash, KeyAlg: cfg.KeyAlg, Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter.UTC(), Enrolled: time.Now().UTC()}
	if cfg.Handle != 0 {
		meta.Handle = fmt.Sprintf("0x%08X", uint32(cfg.Handle))
	}
	if err := writeFiles(cfg.Dir, e.Key(), res.Chain, meta); err != nil {
		return nil, err
	}
	return meta, nil
}

func writeFiles(dir string, key *tpm.DevIDKey, chain [][]byte, meta *Meta) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("enroll: %w", err)
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
			return fmt.Errorf("enroll: writing %s: %w", f.name, err)
		}
	}
	return nil
}
