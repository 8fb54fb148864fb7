package mfgca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"omens.dev/omens/internal/statefile"
)

// Files of a CA directory. The private keys are PKCS #8, PEM encoded, mode 0600.
const (
	RootCertFile         = "root.pem"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.pem"
	IntermediateKeyFile  = "intermediate.key"
	BundleFile           = "manufacturer-ca.pem"
	lockFile             = ".lock"
)

func bundlePath(dir string) string { return filepath.Join(dir, BundleFile) }

// Open loads the manufacturer CA from dir, or creates it there when dir holds none: a
// self-signed root (RootCommonName) and an EK intermediate (IntermediateCommonName), both
// with ECDSA P-384 keys. dir then holds the two certificates, the two private keys (mode
// 0600) and BundleFile, the root and the intermediate in PEM: the bundle a verifier uses
// as its ca_path. Open is idempotent: a second Open, in this process or after a restart,
// loads the same CA. Processes that open the same dir at once are serialized by a lock
// file, so that only one of them creates the CA. A directory holding only some of the CA
// files is refused rather than overwritten.
func Open(dir string) (*CA, error) {
	if dir == "" {
		return nil, errors.New("mfgca: empty CA directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mfgca: creating CA directory: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("mfgca: locking CA directory %q: %w", dir, err)
	}
	defer unlock()

	files := []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile}
	var present, missing []string
	for _, f := range files {
		switch _, err := os.Stat(filepath.Join(dir, f)); {
		case err == nil:
			present = append(present, f)
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, f)
		default:
			return nil, fmt.Errorf("mfgca: %w", err)
		}
	}
	var ca *CA
	switch {
	case len(present) == 0:
		if ca, err = create(RootCommonName, IntermediateCommonName); err != nil {
			return nil, err
		}
		if err := ca.save(dir); err != nil {
			return nil, err
		}
	case len(missing) == 0:
		if ca, err = load(dir); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("mfgca: CA directory %q holds %s but not %s: refusing to create a new CA over a partial one",
			dir, strings.Join(present, ", "), strings.Join(missing, ", "))
	}
	ca.dir = dir
	// The bundle is derived from the two certificates: rewrite it when it is missing or
	// stale, for example after someone deleted it.
	want := ca.BundlePEM()
	if got, err := os.ReadFile(bundlePath(dir)); err != nil || !bytes.Equal(got, want) {
		if err := writeFile(bundlePath(dir), want, 0o644); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

func (ca *CA) save(dir string) error {
	for _, k := range []struct {
		file string
		key  crypto.Signer
	}{{RootKeyFile, ca.rootKey}, {IntermediateKeyFile, ca.interKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return fmt.Errorf("mfgca: encoding %s: %w", k.file, err)
		}
		if err := writeFile(filepath.Join(dir, k.file), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		file string
		cert *x509.Certificate
	}{{RootCertFile, ca.root}, {IntermediateCertFile, ca.intermediate}} {
		if err := writeFile(filepath.Join(dir, c.file), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func load(dir string) (*CA, error) {
	root, err := readCert(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	inter, err := readCert(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		return nil, err
	}
	rootKey, err := readKey(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return nil, err
	}
	interKey, err := readKey(filepath.Join(dir, IntermediateKeyFile))
	if err != nil {
		return nil, err
	}
	if !rootKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(root.PublicKey) {
		return nil, fmt.Errorf("mfgca: %s does not hold the key of %s", RootKeyFile, RootCertFile)
	}
	if !interKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(inter.PublicKey) {
		return nil, fmt.Errorf("mfgca: %s does not hold the key of %s", IntermediateKeyFile, IntermediateCertFile)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("mfgca: %s is not signed by %s: %w", IntermediateCertFile, RootCertFile, err)
	}
	return &CA{root: root, intermediate: inter, rootKey: rootKey, interKey: interKey}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mfgca: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("mfgca: %s holds no PEM CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mfgca: parsing %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mfgca: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("mfgca: %s holds no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mfgca: parsing %s: %w", path, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("mfgca: %s holds a %T, want an ECDSA or RSA key", path, k)
}

// writeFile replaces path atomically (statefile.WriteAtomic).
func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := statefile.WriteAtomic(path, data, perm); err != nil {
		return fmt.Errorf("mfgca: writing %s: %w", path, err)
	}
	return nil
}
