package bootlog

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// OmensOwner is the SignatureOwner of the entries NewPlatformKeys makes.
const OmensOwner GUID = "6f6d656e-732d-4f53-8000-73696d2d6b65"

// PlatformKeys are a platform's Secure Boot databases (UEFI 2.10, "Secure Boot and
// Driver Signing"): the platform key, the key exchange keys, the signature database (db)
// of certificates that may sign boot applications, and the forbidden signature database
// (dbx), here SHA-256 image digests. Certificates are DER.
type PlatformKeys struct {
	// Owner is the SignatureOwner of every entry.
	Owner GUID     `json:"owner"`
	PK    []byte   `json:"pk"`
	KEK   [][]byte `json:"kek"`
	DB    [][]byte `json:"db"`
	DBX   [][]byte `json:"dbx"`
}

// NewPlatformKeys makes the Secure Boot certificates of a platform vendor: a platform key,
// a KEK CA and a UEFI CA for db, each a self-signed RSA-2048 certificate (the key type
// UEFI requires firmware to support) named after vendor, and a dbx of
// three revoked image digests. The private keys are not kept: a synthetic boot log only
// shows what firmware found enrolled.
func NewPlatformKeys(vendor string) (*PlatformKeys, error) {
	k := &PlatformKeys{Owner: OmensOwner}
	var err error
	if k.PK, err = selfSignedCA(vendor + " Platform Key"); err != nil {
		return nil, err
	}
	kek, err := selfSignedCA(vendor + " KEK CA")
	if err != nil {
		return nil, err
	}
	db, err := selfSignedCA(vendor + " UEFI CA")
	if err != nil {
		return nil, err
	}
	k.KEK, k.DB = [][]byte{kek}, [][]byte{db}
	for i := 1; i <= 3; i++ {
		d := sha256.Sum256(fmt.Appendf(nil, "%s revoked boot application %d", vendor, i))
		k.DBX = append(k.DBX, d[:])
	}
	return k, nil
}

func selfSignedCA(cn string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("bootlog: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("bootlog: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"omens simulated platform"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("bootlog: certificate %q: %w", cn, err)
	}
	return der, nil
}
