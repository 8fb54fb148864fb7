package prover

// DevID mode: the Hello also carries the DevID certificate chain and the DevID key's
// public area, and the Evidence the AK's TPM2_Certify of the DevID key over the
// challenge's nonce. The certificate and the key files are read at every attestation, so
// a renewed certificate (omens devid renew) is used at the next one without a restart.

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// DevIDConfig says where the DevID certificate and key are.
type DevIDConfig struct {
	// CertPath holds the DevID certificate then its issuers, PEM.
	CertPath string
	// Handle is where the DevID key is persisted; or, when zero, PrivPath and PubPath
	// hold its private and public blobs (SPIRE tpm_devid's format: the TPM2B_PRIVATE's
	// buffer and the TPMT_PUBLIC), loaded under the SRK for each attestation. With a
	// handle, PubPath may name the key's public blob, which must then be the key's.
	Handle            tpm2.TPMHandle
	PrivPath, PubPath string
}

func (c *DevIDConfig) check() error {
	switch {
	case c.CertPath == "":
		return errors.New("prover: DevID mode needs the DevID certificate chain (devid_cert_path)")
	case c.Handle != 0 && c.PrivPath != "":
		return errors.New("prover: the DevID key is either at a persistent handle or in blob files, not both")
	case c.Handle != 0:
		if !tpmrules.IsPersistent(c.Handle) {
			return fmt.Errorf("prover: DevID handle %s is not a persistent handle (%s)", tpmrules.FormatHandle(c.Handle), tpmrules.PersistentRange)
		}
	case c.PrivPath == "":
		return errors.New("prover: DevID mode needs the DevID key (devid_priv_path: a persistent handle such as 0x81010002, or the private blob)")
	case c.PubPath == "":
		return errors.New("prover: the DevID private blob (devid_priv_path) needs its public blob (devid_pub_path)")
	}
	return nil
}

// devidFiles is one consistent reading of the DevID files.
type devidFiles struct {
	chain      [][]byte
	leaf       *x509.Certificate
	pub, priv  []byte // blobs; pub is also what the Hello sends
	key        *tpm.DevIDKey
	pubContent *tpm2.TPMTPublic
}

// readChain reads PEM CERTIFICATE blocks, leaf first.
func readChain(path string) ([][]byte, *x509.Certificate, error) {
	b, err := limits.ReadFile(path, limits.DevIDCert)
	if err != nil {
		return nil, nil, fmt.Errorf("prover: DevID certificate: %w", err)
	}
	var chain [][]byte
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if len(chain) == protocol.MaxDevIDChain {
			return nil, nil, fmt.Errorf("prover: DevID certificate %s: more than %d certificates", path, protocol.MaxDevIDChain)
		}
		chain = append(chain, block.Bytes)
	}
	if len(chain) == 0 {
		return nil, nil, fmt.Errorf("prover: DevID certificate %s: no PEM CERTIFICATE block", path)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("prover: DevID certificate %s: %w", path, err)
	}
	return chain, leaf, nil
}

// readDevID reads the certificate and the key's public part (from the TPM for a handle,
// from the file for blobs) and checks that the certificate is for that key. A mismatch
// is read once more: renewal replaces the key files, then the certificate.
func (x *Exchange) readDevID() (*devidFiles, error) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var f *devidFiles
		if f, err = x.readDevIDOnce(); err == nil {
			return f, nil
		}
		if !errors.Is(err, errDevIDMismatch) {
			return nil, err
		}
	}
	return nil, err
}

var errDevIDMismatch = errors.New("the DevID certificate is not for the DevID key")

func (x *Exchange) readDevIDOnce() (*devidFiles, error) { return readDevIDFiles(x.t, x.p.cfg.DevID) }

// ReadDevIDChain reads a DevID certificate file (devid_cert_path) as an attestation does:
// PEM CERTIFICATE blocks, the DevID certificate first, then its issuers.
func ReadDevIDChain(path string) (chain [][]byte, leaf *x509.Certificate, err error) {
	return readChain(path)
}

// CheckDevIDKey does on t what an attestation in DevID mode does before it certifies the
// key: it reads the certificate and the key (at its handle, or its blobs), checks that
// the certificate is for that key, and for blobs also loads them under the SRK, which only
// the TPM that made them can; nothing is left loaded. It returns the DevID certificate.
func CheckDevIDKey(t transport.TPM, c DevIDConfig) (*x509.Certificate, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	f, err := readDevIDFiles(t, &c)
	if err != nil {
		return nil, err
	}
	if f.key == nil {
		srk, err := tpm.LoadSRK(t, f.pubContent.Type)
		if err != nil {
			return nil, err
		}
		key, err := tpm.LoadDevID(t, srk, f.pub, f.priv)
		srk.Close(t)
		if err != nil {
			return nil, err
		}
		key.Close(t)
	}
	return f.leaf, nil
}

func readDevIDFiles(t transport.TPM, c *DevIDConfig) (*devidFiles, error) {
	f := &devidFiles{}
	var err error
	if f.chain, f.leaf, err = readChain(c.CertPath); err != nil {
		return nil, err
	}
	if c.PubPath != "" {
		if f.pub, err = limits.ReadFile(c.PubPath, limits.KeyBlob); err != nil {
			return nil, fmt.Errorf("prover: DevID public blob: %w", err)
		}
	}
	if c.Handle != 0 {
		if f.key, err = tpm.LoadPersistentDevID(t, c.Handle); err != nil {
			return nil, err
		}
		if f.pub != nil && !bytes.Equal(f.pub, f.key.PublicBlob) {
			return nil, fmt.Errorf("prover: the DevID public blob %s is not the key persisted at 0x%08X", c.PubPath, uint32(c.Handle))
		}
		f.pub, f.pubContent = f.key.PublicBlob, &f.key.Public
	} else {
		if f.priv, err = limits.ReadFile(c.PrivPath, limits.KeyBlob); err != nil {
			return nil, fmt.Errorf("prover: DevID private blob: %w", err)
		}
		if f.pubContent, err = tpm2.Unmarshal[tpm2.TPMTPublic](f.pub); err != nil {
			return nil, fmt.Errorf("prover: DevID public blob %s: %w", c.PubPath, err)
		}
	}
	key, err := tpm2.Pub(*f.pubContent)
	if err != nil {
		return nil, fmt.Errorf("prover: DevID public key: %w", err)
	}
	if k, ok := f.leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(key) {
		return nil, fmt.Errorf("prover: %w: %s (serial %x, CN=%s) certifies another key than the DevID key (was the key renewed without its certificate?)",
			errDevIDMismatch, c.CertPath, f.leaf.SerialNumber, f.leaf.Subject.CommonName)
	}
	return f, nil
}

// certify has the AK certify the DevID key over nonce: at its handle, or loaded from its
// blobs under the SRK and flushed after, the SRK flushed as soon as the key is loaded.
func (x *Exchange) certify(nonce []byte) (attest, sig []byte, err error) {
	f := x.devid
	key := f.key
	if key == nil {
		srk, err := tpm.LoadSRK(x.t, f.pubContent.Type)
		if err != nil {
			return nil, nil, err
		}
		key, err = tpm.LoadDevID(x.t, srk, f.pub, f.priv)
		if cerr := srk.Close(x.t); err == nil && cerr != nil {
			key.Close(x.t)
			err = cerr
		}
		if err != nil {
			return nil, nil, err
		}
		defer key.Close(x.t)
	}
	return tpm.Certify(x.t, key, x.ak, nonce)
}

// DevIDNotAfter is the notAfter of the DevID certificate this exchange presents; zero in
// EK mode.
func (x *Exchange) DevIDNotAfter() time.Time {
	if x.devid == nil || x.devid.leaf == nil {
		return time.Time{}
	}
	return x.devid.leaf.NotAfter
}
