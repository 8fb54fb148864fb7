package stepca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.step.sm/crypto/jose"

	"omens.dev/omens/internal/limits"
)

// TokenValidity is how long a one-time token is valid. step-ca allows a minute of clock
// skew on either side.
const TokenValidity = 5 * time.Minute

// Provisioner is the private key of a step-ca JWK provisioner, which signs one-time
// tokens (OTTs): JWTs that step-ca accepts once each, to sign or revoke one certificate.
type Provisioner struct {
	Name  string // the provisioner's name, the tokens' issuer
	KeyID string // the key's "kid", by which step-ca finds the provisioner

	key *jose.JSONWebKey
}

// LoadProvisioner returns the key of the JWK provisioner name, decrypted with password.
// path is either step-ca's ca.json, whose provisioner entry holds the key encrypted (its
// "encryptedKey", a JWE made by `step ca init` or `step ca provisioner add`), or a file
// holding the private JWK itself, encrypted or not (the JWE or JWK that `step crypto jwk
// create` writes).
//
// From ca.json, the decrypted key must match the provisioner's public key ("key").
func LoadProvisioner(path, name string, password []byte) (*Provisioner, error) {
	b, err := limits.ReadFile(path, limits.StepCAConfig)
	if err != nil {
		return nil, fmt.Errorf("stepca: provisioner %q: %w", name, err)
	}
	var conf struct {
		Authority *struct {
			Provisioners []struct {
				Type         string          `json:"type"`
				Name         string          `json:"name"`
				Key          json.RawMessage `json:"key"`
				EncryptedKey string          `json:"encryptedKey"`
			} `json:"provisioners"`
		} `json:"authority"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		if err := json.Unmarshal(b, &conf); err != nil {
			return nil, fmt.Errorf("stepca: provisioner %q: %s: %w", name, path, err)
		}
	}
	if conf.Authority == nil {
		return parseKeyFile(b, path, name, password)
	}

	var names []string
	for _, p := range conf.Authority.Provisioners {
		if p.Name != name {
			names = append(names, p.Name)
			continue
		}
		if p.Type != "JWK" {
			return nil, fmt.Errorf("stepca: provisioner %q in %s is of type %s, not JWK", name, path, p.Type)
		}
		if p.EncryptedKey == "" {
			return nil, fmt.Errorf("stepca: provisioner %q in %s has no encryptedKey", name, path)
		}
		var pub jose.JSONWebKey
		if err := json.Unmarshal(p.Key, &pub); err != nil {
			return nil, fmt.Errorf("stepca: provisioner %q in %s: key: %w", name, path, err)
		}
		key, err := jose.ParseKey([]byte(p.EncryptedKey), jose.WithPassword(password))
		if err != nil {
			return nil, fmt.Errorf("stepca: provisioner %q in %s: encryptedKey: %w", name, path, err)
		}
		if key.IsPublic() {
			return nil, fmt.Errorf("stepca: provisioner %q in %s: encryptedKey holds no private key", name, path)
		}
		got, ok := key.Public().Key.(interface{ Equal(crypto.PublicKey) bool })
		if key.KeyID != pub.KeyID || !ok || !got.Equal(pub.Key) {
			return nil, fmt.Errorf("stepca: provisioner %q in %s: encryptedKey (kid %s) does not match the provisioner's key (kid %s)", name, path, key.KeyID, pub.KeyID)
		}
		return newProvisioner(name, key)
	}
	return nil, fmt.Errorf("stepca: no provisioner %q in %s (provisioners: %s)", name, path, strings.Join(names, ", "))
}

// parseKeyFile reads a private JWK, encrypted (a JWE) or not.
func parseKeyFile(b []byte, path, name string, password []byte) (*Provisioner, error) {
	opts := []jose.Option{jose.WithFilename(path)}
	if len(password) > 0 {
		opts = append(opts, jose.WithPassword(password))
	}
	key, err := jose.ParseKey(b, opts...)
	if err != nil {
		return nil, fmt.Errorf("stepca: provisioner %q: %w", name, err)
	}
	if key.IsPublic() {
		return nil, fmt.Errorf("stepca: provisioner %q: %s holds no private key", name, path)
	}
	return newProvisioner(name, key)
}

// String names the provisioner and its key ID, never the key.
func (p *Provisioner) String() string { return p.Name + " (kid " + p.KeyID + ")" }

// GoString is String, so that %#v shows no key either.
func (p *Provisioner) GoString() string { return p.String() }

func newProvisioner(name string, key *jose.JSONWebKey) (*Provisioner, error) {
	if key.KeyID == "" {
		return nil, fmt.Errorf("stepca: provisioner %q: key has no kid", name)
	}
	if key.Algorithm == "" {
		return nil, fmt.Errorf("stepca: provisioner %q: key has no alg", name)
	}
	return &Provisioner{Name: name, KeyID: key.KeyID, key: key}, nil
}

// Token returns a one-time token of the provisioner for audience, the URL of the
// step-ca endpoint it is meant for (such as https://ca:9000/1.0/sign), about subject:
// the certificate's common name for a sign token, or its serial number (decimal) for a
// revoke token. A sign token names every SAN the certificate request may hold in sans;
// step-ca signs only a request whose SANs are exactly these and whose common name is
// subject or one of them. The token is valid for TokenValidity and carries a random ID
// (jti), which step-ca accepts only once.
func (p *Provisioner) Token(audience, subject string, sans []string) (string, error) {
	return p.ProfileToken(audience, subject, sans, "")
}

// ProfileToken is Token with the claim ProfileClaim set to profile (none when profile is
// empty), which picks the certificate profile of DevIDTemplate.
func (p *Provisioner) ProfileToken(audience, subject string, sans []string, profile string) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(p.key.Algorithm), Key: p.key},
		new(jose.SignerOptions).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("stepca: token: %w", err)
	}
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	now := time.Now()
	claims := struct {
		jose.Claims
		SANs    []string `json:"sans,omitempty"`
		Profile string   `json:"omens_profile,omitempty"`
	}{
		Claims: jose.Claims{
			ID:        hex.EncodeToString(id),
			Issuer:    p.Name,
			Subject:   subject,
			Audience:  jose.Audience{audience},
			IssuedAt:  jose.NewNumericDate(now),
			NotBefore: jose.NewNumericDate(now),
			Expiry:    jose.NewNumericDate(now.Add(TokenValidity)),
		},
		SANs:    sans,
		Profile: profile,
	}
	tok, err := jose.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("stepca: token: %w", err)
	}
	return tok, nil
}
