// Package mfgca is a simulated TPM manufacturer's certificate authority: a root CA, an
// EK intermediate CA, and the issuance of EK certificates in the profile real vendors use.
//
// A simulated TPM has an endorsement key but no vendor to certify it. This package plays
// the vendor, so that the verifier runs the same checks on a simulated host as on a
// physical one: the chain to a manufacturer CA bundle (ca_path), the TPM attributes in the
// subjectAltName, the tcg-kp-EKCertificate extended key usage.
//
// The EK certificate follows the TCG EK Credential Profile for TPM Family 2.0, section 3.2
// (X.509 EK certificate fields): an empty subject, a critical subjectAltName holding a
// directoryName with TPMManufacturer (2.23.133.2.1), TPMModel (2.23.133.2.2) and
// TPMVersion (2.23.133.2.3), extended key usage tcg-kp-EKCertificate (2.23.133.8.1), key
// usage keyEncipherment for an RSA EK and keyAgreement for an ECC EK, basicConstraints
// cA=false and an authorityKeyIdentifier.
//
// The package is pure Go and needs no TPM.
package mfgca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Defaults of the simulated manufacturer. The manufacturer is "MSFT", the vendor ID that
// the Microsoft reference TPM simulator reports as TPM_PT_MANUFACTURER, written the way
// the TCG EK Credential Profile encodes TPMManufacturer ("id:" and the four bytes in hex).
const (
	DefaultManufacturer = "id:4D534654"
	DefaultModel        = "omens-sim"
	DefaultVersion      = "id:00010002"
)

// Subject common names of the CA certificates that Open creates.
const (
	RootCommonName         = "omens Simulated TPM Manufacturer Root CA"
	IntermediateCommonName = "omens Simulated TPM Manufacturer EK Intermediate CA"
	organization           = "omens"
)

// Validity of the CA certificates that Open and NewEphemeral create when not told
// otherwise. Real manufacturer roots live for decades.
const (
	DefaultRootValidity         = 30 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 20 * 365 * 24 * time.Hour
)

// Object identifiers of the TCG EK Credential Profile and RFC 5280.
var (
	oidTPMManufacturer   = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel          = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion        = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidTCGKpEKCert       = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	oidExtSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// CA is a manufacturer CA: a root and an EK intermediate, with the intermediate's key.
type CA struct {
	root         *x509.Certificate
	intermediate *x509.Certificate
	rootKey      crypto.Signer
	interKey     crypto.Signer
	dir          string // empty for an ephemeral CA
}

// Root returns the self-signed root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediate returns the EK intermediate certificate, the issuer of EK certificates.
func (ca *CA) Intermediate() *x509.Certificate { return ca.intermediate }

// BundlePath returns the path of the PEM bundle (root then intermediate) that a verifier
// uses as its ca_path, or "" for an ephemeral CA, which has no files.
func (ca *CA) BundlePath() string {
	if ca.dir == "" {
		return ""
	}
	return bundlePath(ca.dir)
}

// BundlePEM returns the root and the intermediate certificates, PEM encoded, in that
// order: the same bytes as the file at BundlePath.
func (ca *CA) BundlePEM() []byte {
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: ca.intermediate.Raw})
	return b.Bytes()
}

// EKTemplate holds what varies between EK certificates. Empty fields take defaults: the
// Default* TPM attributes, NotBefore an hour ago (clock skew), NotAfter the intermediate's
// NotAfter, a random 127-bit serial number.
type EKTemplate struct {
	Manufacturer, Model, Version string
	NotBefore, NotAfter          time.Time
	Serial                       *big.Int
}

// IssueEK issues an EK certificate, DER encoded, for pub, the public key of an EK (an
// *rsa.PublicKey, or an *ecdsa.PublicKey on P-256, P-384 or P-521), signed by the
// intermediate: ECDSA P-384 with SHA-384, or as WithKeyAlgorithm says, ECDSA P-256 or RSA
// PKCS #1 v1.5 with SHA-256.
func (ca *CA) IssueEK(pub crypto.PublicKey, t EKTemplate) ([]byte, error) {
	var usage x509.KeyUsage
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("mfgca: nil RSA EK public key")
		}
		usage = x509.KeyUsageKeyEncipherment
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("mfgca: nil ECDSA EK public key")
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("mfgca: unsupported EK curve %s", k.Curve.Params().Name)
		}
		usage = x509.KeyUsageKeyAgreement
	default:
		return nil, fmt.Errorf("mfgca: unsupported EK public key type %T", pub)
	}
	if t.Manufacturer == "" {
		t.Manufacturer = DefaultManufacturer
	}
	if t.Model == "" {
		t.Model = DefaultModel
	}
	if t.Version == "" {
		t.Version = DefaultVersion
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = time.Now().Add(-time.Hour)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = ca.intermediate.NotAfter
	}
	if !t.NotAfter.After(t.NotBefore) {
		return nil, fmt.Errorf("mfgca: EK certificate NotAfter %s is not after NotBefore %s",
			t.NotAfter.Format(time.RFC3339), t.NotBefore.Format(time.RFC3339))
	}
	serial := t.Serial
	if serial == nil {
		var err error
		if serial, err = randomSerial(); err != nil {
			return nil, err
		}
	}
	if serial.Sign() <= 0 {
		return nil, fmt.Errorf("mfgca: EK certificate serial %v is not positive", serial)
	}
	san, err := tpmSubjectAltName(t.Manufacturer, t.Model, t.Version)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             t.NotBefore,
		NotAfter:              t.NotAfter,
		KeyUsage:              usage,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidTCGKpEKCert},
		BasicConstraintsValid: true,
		IsCA:                  false,
		ExtraExtensions:       []pkix.Extension{san},
		// Subject stays empty: section 3.2 of the profile lets the subject be empty when
		// the subjectAltName, then critical, names the TPM.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.intermediate, pub, ca.interKey)
	if err != nil {
		return nil, fmt.Errorf("mfgca: issuing EK certificate: %w", err)
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("mfgca: issued EK certificate does not parse: %w", err)
	}
	return der, nil
}

// tpmSubjectAltName builds the critical subjectAltName extension of an EK certificate:
// one directoryName whose three relative distinguished names hold the TPM manufacturer,
// model and version as UTF8String, the layout most vendors use.
func tpmSubjectAltName(manufacturer, model, version string) (pkix.Extension, error) {
	utf8 := func(s string) asn1.RawValue {
		return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(s)}
	}
	name := pkix.RDNSequence{
		{{Type: oidTPMManufacturer, Value: utf8(manufacturer)}},
		{{Type: oidTPMModel, Value: utf8(model)}},
		{{Type: oidTPMVersion, Value: utf8(version)}},
	}
	nameDER, err := asn1.Marshal(name)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("mfgca: encoding TPM directoryName: %w", err)
	}
	dirName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: nameDER}
	value, err := asn1.Marshal([]asn1.RawValue{dirName})
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("mfgca: encoding subjectAltName: %w", err)
	}
	return pkix.Extension{Id: oidExtSubjectAltName, Critical: true, Value: value}, nil
}

// Option changes how NewEphemeral builds a CA.
type Option func(*options)

type options struct {
	rootNotBefore, rootNotAfter   time.Time
	interNotBefore, interNotAfter time.Time
	alg                           KeyAlgorithm
}

// KeyAlgorithm is the key type of a CA's root and intermediate, which signs its EK
// certificates. Vendors use each: Infineon, STMicro and Google sign RSA EK certificates
// with RSA keys, Nuvoton with ECDSA P-256 (its 2110 root) or P-384 (its newer leaf CAs),
// AMD's ECC chains with ECDSA.
type KeyAlgorithm string

const (
	// P384 is ECDSA on P-384 with SHA-384, the default.
	P384 KeyAlgorithm = "p384"
	// P256 is ECDSA on P-256 with SHA-256.
	P256 KeyAlgorithm = "p256"
	// RSA2048 is RSA-2048 with PKCS #1 v1.5 and SHA-256.
	RSA2048 KeyAlgorithm = "rsa2048"
)

// KeyAlgorithms are the key types WithKeyAlgorithm takes.
var KeyAlgorithms = []KeyAlgorithm{P384, P256, RSA2048}

// WithKeyAlgorithm sets the key type of the root and the intermediate.
func WithKeyAlgorithm(alg KeyAlgorithm) Option {
	return func(o *options) { o.alg = alg }
}

func (alg KeyAlgorithm) generate() (crypto.Signer, error) {
	switch alg {
	case P384, "":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case P256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("mfgca: key algorithm %q is none of %v", alg, KeyAlgorithms)
}

// WithRootValidity sets the validity of the root certificate.
func WithRootValidity(notBefore, notAfter time.Time) Option {
	return func(o *options) { o.rootNotBefore, o.rootNotAfter = notBefore, notAfter }
}

// WithIntermediateValidity sets the validity of the intermediate certificate, for
// example to make an expired or a not yet valid intermediate.
func WithIntermediateValidity(notBefore, notAfter time.Time) Option {
	return func(o *options) { o.interNotBefore, o.interNotAfter = notBefore, notAfter }
}

// NewEphemeral creates a CA in memory, with a root named "<name> Root CA" and an
// intermediate named "<name> EK Intermediate CA". Tests use it for other manufacturers,
// for a CA that the verifier does not trust, and for CAs with odd validity.
func NewEphemeral(name string, opts ...Option) (*CA, error) {
	if name == "" {
		return nil, errors.New("mfgca: empty CA name")
	}
	return create(name+" Root CA", name+" EK Intermediate CA", opts...)
}

func create(rootCN, interCN string, opts ...Option) (*CA, error) {
	now := time.Now()
	o := options{
		rootNotBefore:  now.Add(-time.Hour),
		rootNotAfter:   now.Add(DefaultRootValidity),
		interNotBefore: now.Add(-time.Hour),
		interNotAfter:  now.Add(DefaultIntermediateValidity),
	}
	for _, opt := range opts {
		opt(&o)
	}
	rootKey, err := o.alg.generate()
	if err != nil {
		return nil, fmt.Errorf("mfgca: generating root key: %w", err)
	}
	interKey, err := o.alg.generate()
	if err != nil {
		return nil, fmt.Errorf("mfgca: generating intermediate key: %w", err)
	}
	rootSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          rootSerial,
		Subject:               pkix.Name{CommonName: rootCN, Organization: []string{organization}},
		NotBefore:             o.rootNotBefore,
		NotAfter:              o.rootNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("mfgca: creating root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, fmt.Errorf("mfgca: parsing root certificate: %w", err)
	}
	interSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	interTmpl := &x509.Certificate{
		SerialNumber:          interSerial,
		Subject:               pkix.Name{CommonName: interCN, Organization: []string{organization}},
		NotBefore:             o.interNotBefore,
		NotAfter:              o.interNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("mfgca: creating intermediate certificate: %w", err)
	}
	inter, err := x509.ParseCertificate(interDER)
	if err != nil {
		return nil, fmt.Errorf("mfgca: parsing intermediate certificate: %w", err)
	}
	return &CA{root: root, intermediate: inter, rootKey: rootKey, interKey: interKey}, nil
}

// randomSerial returns a positive random serial number of at most 127 bits, so that its
// DER encoding stays within the 20 octets RFC 5280, section 4.1.2.2, allows.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("mfgca: generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
