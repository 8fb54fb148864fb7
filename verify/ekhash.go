package verify

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
)

// EKHash is the identity omens gives a TPM: the SHA-256 of its EK public key in PKIX
// (SubjectPublicKeyInfo) DER, in lower-case hex. It is stable for the life of the chip and
// equal to the pub_hash of the earlier external SPIRE TPM plugin, so agent IDs
// (spiffe://TD/spire/agent/tpm/<EKHash>) carry over.
func EKHash(ek crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(ek)
	if err != nil {
		return "", fmt.Errorf("verify: hash of EK public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}
