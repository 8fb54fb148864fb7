package verify

// This file and bundle.go check endorsement key (EK) certificates as the TCG EK Credential
// Profile for TPM Family 2.0 (Level 0) defines them, section 3.2 (X.509 EK certificate
// fields), and as vendors really write them:
//
//   - Subject Alternative Name: the TPM is named by a directoryName in a subjectAltName
//     that is critical when, as usual, the subject is empty. Its attributes are
//     TPMManufacturer (2.23.133.2.1, "id:" and the TCG vendor ID in hex, e.g.
//     "id:494E5443"), TPMModel (2.23.133.2.2) and TPMVersion (2.23.133.2.3). Vendors put
//     them in one relative distinguished name or in three; both are read. crypto/x509
//     reports a critical subjectAltName that holds only a directoryName as an unhandled
//     critical extension; this package parses it and removes it from that list.
//
//   - Extended Key Usage: tcg-kp-EKCertificate (2.23.133.8.1), unknown to crypto/x509, so
//     chains are built with x509.ExtKeyUsageAny and the EKU is checked here. Certificates
//     of older profiles (TPM 1.2 era, early TPM 2.0 chips) do not always carry the
//     extension, so a certificate without it is accepted; one that has it must list
//     tcg-kp-EKCertificate (ErrNotEKCert otherwise).
//
//   - Key usage: an EK certifies a decryption key (keyEncipherment for RSA, keyAgreement
//     for ECC). A certificate of a signing key is an AK certificate, not an EK's, however
//     it chains: one whose extended key usage lists tcg-kp-AIKCertificate (2.23.133.8.3),
//     or whose keyUsage has digitalSignature without keyEncipherment or keyAgreement, is
//     refused (ErrNotEKCert). Google's vTPM RSA EK certificates have keyUsage
//     digitalSignature alone but list tcg-kp-EKCertificate; the EKU, the CA's explicit
//     statement, then decides, and the keyUsage is reported as a quirk.
//
// Other quirks of real EK certificates handled here: trailing padding after the DER
// certificate in NV (a run of one repeated byte: 0x00, 0xFF of erased NV, or another
// such as 0x11, seen on real parts), the TPM 1.2 PC Client NV
// header (TCG_PCCLIENT_STORED_CERT), RSA keys under the RSAES-OAEP algorithm identifier
// (1.2.840.113549.1.1.7) that crypto/x509 leaves unparsed, EK certificates without
// basicConstraints. crypto/x509 refuses SHA-1 signatures; a chain refused only for one
// (the EK certificate's own, or an intermediate's, such as every Infineon "IFX TPM EK
// Intermediate CA") is reported untrusted with that reason first, in plain words
// (sha1chain.go).

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sentinel errors of EK certificate checks, for errors.Is. The errors returned carry the
// failed value in their message and wrap one of these (and the underlying crypto/x509
// error where there is one).
var (
	ErrMalformed      = errors.New("verify: malformed certificate")
	ErrUnsupportedKey = errors.New("verify: unsupported public key")
	ErrNotEKCert      = errors.New("verify: not an EK certificate")
	ErrUntrusted      = errors.New("verify: certificate not trusted")
	ErrExpired        = errors.New("verify: certificate expired")
	ErrNotYetValid    = errors.New("verify: certificate not yet valid")
	ErrKeyMismatch    = errors.New("verify: certificate public key does not match the EK")
)

// ekError is an error with a complete message that wraps a sentinel and, optionally, the
// error that caused it.
type ekError struct {
	kind  error
	msg   string
	cause error
}

func (e *ekError) Error() string { return e.msg }

func (e *ekError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// newError returns an error whose message is the sentinel's followed by ": " and detail.
func newError(kind error, cause error, format string, args ...any) error {
	return &ekError{kind: kind, msg: kind.Error() + ": " + fmt.Sprintf(format, args...), cause: cause}
}

// Object identifiers of the TCG EK Credential Profile and of RFC 5280 / RFC 8017.
var (
	oidTPMManufacturer   = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel          = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion        = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidTCGKpEKCert       = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	oidTCGKpAIKCert      = asn1.ObjectIdentifier{2, 23, 133, 8, 3}
	oidExtSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidRSAESOAEP         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
)

// TPMSpec is what an EK certificate's subjectAltName says about the TPM.
type TPMSpec struct {
	// Manufacturer is TPMManufacturer as written, e.g. "id:494E5443".
	Manufacturer string
	// ManufacturerID is the TCG vendor ID it encodes, in ASCII without padding, e.g.
	// "INTC" or "IFX"; empty when Manufacturer is not "id:" and four bytes in hex.
	ManufacturerID string
	// ManufacturerName is the vendor's name from the TCG TPM Vendor ID Registry for
	// well-known vendors, e.g. "Intel"; empty when unknown.
	ManufacturerName string
	// Model is TPMModel, e.g. "SLB 9670 TPM2.0".
	Model string
	// Version is TPMVersion as written, e.g. "id:00010002" (vendor-defined firmware
	// version).
	Version string
}

// tpmVendors maps TCG vendor IDs (TPM_PT_MANUFACTURER in ASCII, trailing NULs and spaces
// removed) to vendor names, after the TCG TPM Vendor ID Registry.
var tpmVendors = map[string]string{
	"AMD":  "AMD",
	"ATML": "Atmel",
	"BRCM": "Broadcom",
	"CSCO": "Cisco",
	"FLYS": "Flyslice Technologies",
	"GOOG": "Google",
	"HISI": "Huawei",
	"HPE":  "HPE",
	"IBM":  "IBM",
	"IFX":  "Infineon",
	"INTC": "Intel",
	"LEN":  "Lenovo",
	"MSFT": "Microsoft",
	"NSG":  "NSING",
	"NSM":  "National Semiconductor",
	"NTC":  "Nuvoton Technology",
	"NTZ":  "Nationz",
	"QCOM": "Qualcomm",
	"ROCC": "Fuzhou Rockchip",
	"SMSC": "SMSC",
	"SMSN": "Samsung",
	"SNS":  "Sinosun",
	"STM":  "STMicroelectronics",
	"TXN":  "Texas Instruments",
	"WEC":  "Winbond",
}

// EKCertificate is a parsed EK certificate.
type EKCertificate struct {
	// Cert is the certificate as crypto/x509 parsed it, except that the subjectAltName,
	// once parsed here, is removed from UnhandledCriticalExtensions, and that PublicKey
	// is filled in for an RSAES-OAEP key.
	Cert *x509.Certificate
	// PublicKey is the certified EK public key: *rsa.PublicKey or *ecdsa.PublicKey.
	PublicKey crypto.PublicKey
	// KeyType is "RSA-2048", "RSA-3072", "RSA-4096", "ECC-P256", "ECC-P384" or
	// "ECC-P521".
	KeyType string
	// TPM is the TPM named by the subjectAltName; zero when HasTPMSAN is false.
	TPM TPMSpec
	// HasTPMSAN tells whether a subjectAltName with TPM attributes was found.
	HasTPMSAN bool
	// HasEKU tells whether the certificate has an extended key usage extension (which
	// then lists tcg-kp-EKCertificate, or VerifyEKCertificate fails).
	HasEKU bool
	// Quirks lists what was tolerated to parse the certificate (padding, NV header,
	// RSAES-OAEP key), for logs.
	Quirks []string
}

// ParseEKCertificate parses an EK certificate as read from TPM NV: DER, possibly behind the
// TPM 1.2 PC Client NV header (0x10 0x01 0x00, a 2-byte length, then an optional 0x10 0x02
// tag), and possibly followed by padding up to the NV index size. Padding is a run of one
// repeated byte (0x00, 0xFF of erased NV, or another, as some parts write), reported in
// Quirks; trailing bytes that are not one repeated byte are an error. A PEM "CERTIFICATE" block is accepted as well. Errors wrap ErrMalformed, or
// ErrUnsupportedKey for a key that is not RSA (2048, 3072, 4096 bits) or ECC (NIST P-256,
// P-384, P-521).
func ParseEKCertificate(b []byte) (*EKCertificate, error) {
	var quirks []string
	if trimmed := bytes.TrimLeft(b, " \t\r\n"); bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, rest := pem.Decode(trimmed)
		if block == nil {
			return nil, newError(ErrMalformed, nil, "invalid PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, newError(ErrMalformed, nil, "PEM block type %q, want CERTIFICATE", block.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, newError(ErrMalformed, nil, "%d bytes after the PEM CERTIFICATE block", len(bytes.TrimSpace(rest)))
		}
		b = block.Bytes
	}
	der, q, err := extractDER(b)
	if err != nil {
		return nil, err
	}
	quirks = append(quirks, q...)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, newError(ErrMalformed, err, "%v", err)
	}
	ek := &EKCertificate{Cert: cert, Quirks: quirks}
	if err := ek.parseKey(); err != nil {
		return nil, err
	}
	for _, ext := range cert.Extensions {
		switch {
		case ext.Id.Equal(oidExtSubjectAltName):
			spec, found, err := parseTPMSpecSAN(ext.Value)
			if err != nil {
				return nil, newError(ErrMalformed, err, "subjectAltName: %v", err)
			}
			ek.TPM, ek.HasTPMSAN = spec, found
			if found {
				// The TPM directoryName is handled here; crypto/x509 only knew it
				// could not. A critical subjectAltName without TPM attributes stays
				// unhandled, and verification refuses it.
				removeUnhandled(cert, oidExtSubjectAltName)
			}
		case ext.Id.Equal(oidExtExtKeyUsage):
			ek.HasEKU = true
		}
	}
	if ek.signingKeyUsage() && ek.listsEKU(oidTCGKpEKCert) {
		ek.Quirks = append(ek.Quirks, "keyUsage digitalSignature without keyEncipherment or keyAgreement, accepted for its extended key usage tcg-kp-EKCertificate")
	}
	return ek, nil
}

// signingKeyUsage tells whether the certificate's keyUsage is a signing key's:
// digitalSignature, and neither keyEncipherment nor keyAgreement.
func (c *EKCertificate) signingKeyUsage() bool {
	ku := c.Cert.KeyUsage
	return ku&x509.KeyUsageDigitalSignature != 0 && ku&(x509.KeyUsageKeyEncipherment|x509.KeyUsageKeyAgreement) == 0
}

// listsEKU tells whether the certificate's extended key usage lists oid.
func (c *EKCertificate) listsEKU(oid asn1.ObjectIdentifier) bool {
	for _, u := range c.Cert.UnknownExtKeyUsage {
		if u.Equal(oid) {
			return true
		}
	}
	return false
}

// extractDER returns the DER certificate inside NV content b, and the quirks met.
func extractDER(b []byte) (der []byte, quirks []string, err error) {
	if len(b) == 0 {
		return nil, nil, newError(ErrMalformed, nil, "empty input")
	}
	// TPM 1.2 PC Client NV storage: TCG_PCCLIENT_STORED_CERT (tag 0x1001, certType 0 =
	// full certificate, certSize) then TCG_FULL_CERT (tag 0x1002) and the certificate.
	if len(b) >= 5 && b[0] == 0x10 && b[1] == 0x01 && b[2] == 0x00 {
		size := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b)-5 < size {
			return nil, nil, newError(ErrMalformed, nil, "truncated: NV header declares %d bytes, only %d present", size, len(b)-5)
		}
		if err := checkPadding(b[5+size:], "NV content"); err != nil {
			return nil, nil, err
		}
		b = b[5 : 5+size]
		if len(b) >= 2 && b[0] == 0x10 && b[1] == 0x02 {
			b = b[2:]
		}
		quirks = append(quirks, "TPM 1.2 NV header stripped")
	}
	n, err := derSequenceLen(b)
	if err != nil {
		return nil, nil, err
	}
	if pad := b[n:]; len(pad) > 0 {
		if err := checkPadding(pad, "certificate"); err != nil {
			return nil, nil, err
		}
		quirks = append(quirks, fmt.Sprintf("%d bytes of 0x%02X padding stripped", len(pad), pad[0]))
	}
	return b[:n], quirks, nil
}

// checkPadding accepts an empty tail or a run of one repeated byte.
func checkPadding(pad []byte, what string) error {
	i := 0
	for i < len(pad) && pad[i] == pad[0] {
		i++
	}
	if i == len(pad) {
		return nil
	}
	return newError(ErrMalformed, nil, "%d bytes of trailing data after the %s (byte 0x%02X at offset %d of them, after 0x%02X); only padding of one repeated byte is accepted",
		len(pad), what, pad[i], i, pad[0])
}

// derSequenceLen returns the length of the DER SEQUENCE at the start of b, header
// included, checking that b holds all of it.
func derSequenceLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, newError(ErrMalformed, nil, "truncated: %d bytes", len(b))
	}
	if b[0] != 0x30 {
		return 0, newError(ErrMalformed, nil, "not DER: first byte 0x%02X, want a SEQUENCE (0x30)", b[0])
	}
	length, header := int(b[1]), 2
	if b[1]&0x80 != 0 {
		n := int(b[1] & 0x7f)
		if n == 0 || n > 3 {
			return 0, newError(ErrMalformed, nil, "not DER: SEQUENCE length of %d octets", n)
		}
		if len(b) < 2+n {
			return 0, newError(ErrMalformed, nil, "truncated: %d bytes", len(b))
		}
		length = 0
		for _, c := range b[2 : 2+n] {
			length = length<<8 | int(c)
		}
		header += n
	}
	if len(b)-header < length {
		return 0, newError(ErrMalformed, nil, "truncated: DER SEQUENCE declares %d bytes, only %d present", header+length, len(b))
	}
	return header + length, nil
}

// removeUnhandled drops oid from cert's unhandled critical extensions.
func removeUnhandled(cert *x509.Certificate, oid asn1.ObjectIdentifier) {
	kept := cert.UnhandledCriticalExtensions[:0]
	for _, u := range cert.UnhandledCriticalExtensions {
		if !u.Equal(oid) {
			kept = append(kept, u)
		}
	}
	if len(kept) == 0 {
		kept = nil
	}
	cert.UnhandledCriticalExtensions = kept
}

// parseKey sets PublicKey and KeyType, parsing an RSAES-OAEP key that crypto/x509 left
// unparsed.
func (ek *EKCertificate) parseKey() error {
	pub := ek.Cert.PublicKey
	if pub == nil {
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		rest, err := asn1.Unmarshal(ek.Cert.RawSubjectPublicKeyInfo, &spki)
		if err != nil || len(rest) != 0 {
			return newError(ErrMalformed, err, "subjectPublicKeyInfo does not parse")
		}
		if !spki.Algorithm.Algorithm.Equal(oidRSAESOAEP) {
			return newError(ErrUnsupportedKey, nil, "public key algorithm %v", spki.Algorithm.Algorithm)
		}
		// RFC 8017, appendix C: an RSAES-OAEP key is an RSAPublicKey like an
		// rsaEncryption one; only the algorithm identifier (and its parameters) differ.
		k, err := x509.ParsePKCS1PublicKey(spki.PublicKey.RightAlign())
		if err != nil {
			return newError(ErrMalformed, err, "RSAES-OAEP public key: %v", err)
		}
		pub = k
		ek.Cert.PublicKey = k
		ek.Quirks = append(ek.Quirks, "RSAES-OAEP public key algorithm")
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); bits {
		case 2048, 3072, 4096:
			ek.KeyType = fmt.Sprintf("RSA-%d", bits)
		default:
			return newError(ErrUnsupportedKey, nil, "RSA key of %d bits (want 2048, 3072 or 4096)", bits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			ek.KeyType = "ECC-P256"
		case elliptic.P384():
			ek.KeyType = "ECC-P384"
		case elliptic.P521():
			ek.KeyType = "ECC-P521"
		default:
			return newError(ErrUnsupportedKey, nil, "ECC curve %s", k.Curve.Params().Name)
		}
	default:
		return newError(ErrUnsupportedKey, nil, "%T (%v)", pub, ek.Cert.PublicKeyAlgorithm)
	}
	ek.PublicKey = pub
	return nil
}

// ParseTPMSpecSAN parses the value of a subjectAltName extension (the DER GeneralNames)
// and returns the TPM attributes of its directoryName entries. found is false when no
// directoryName holds a TPM attribute; other kinds of names are ignored.
func ParseTPMSpecSAN(value []byte) (spec TPMSpec, found bool, err error) {
	spec, found, err = parseTPMSpecSAN(value)
	if err != nil {
		return TPMSpec{}, false, newError(ErrMalformed, err, "subjectAltName: %v", err)
	}
	return spec, found, nil
}

func parseTPMSpecSAN(value []byte) (spec TPMSpec, found bool, err error) {
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(value, &names)
	if err != nil {
		return TPMSpec{}, false, err
	}
	if len(rest) != 0 {
		return TPMSpec{}, false, fmt.Errorf("%d bytes after GeneralNames", len(rest))
	}
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 || !n.IsCompound {
			continue // not a directoryName
		}
		var rdns pkix.RDNSequence
		rest, err := asn1.Unmarshal(n.Bytes, &rdns)
		if err != nil {
			return TPMSpec{}, false, fmt.Errorf("directoryName: %w", err)
		}
		if len(rest) != 0 {
			return TPMSpec{}, false, fmt.Errorf("directoryName: %d trailing bytes", len(rest))
		}
		// One RDN holding the three attributes, or one RDN per attribute: walk them all.
		for _, rdn := range rdns {
			for _, atv := range rdn {
				var dst *string
				switch {
				case atv.Type.Equal(oidTPMManufacturer):
					dst = &spec.Manufacturer
				case atv.Type.Equal(oidTPMModel):
					dst = &spec.Model
				case atv.Type.Equal(oidTPMVersion):
					dst = &spec.Version
				default:
					continue
				}
				s, err := attributeString(atv.Value)
				if err != nil {
					return TPMSpec{}, false, fmt.Errorf("attribute %v: %w", atv.Type, err)
				}
				*dst = s
				found = true
			}
		}
	}
	spec.ManufacturerID, spec.ManufacturerName = vendor(spec.Manufacturer)
	return spec, found, nil
}

// attributeString returns a TPM attribute value: a string, as the profile defines them
// (UTF8String; some vendors use PrintableString).
func attributeString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("value of type %T, want a string", v)
	}
	if !utf8.ValidString(s) {
		return "", errors.New("value is not valid UTF-8")
	}
	return s, nil
}

// vendor decodes a TPMManufacturer value "id:XXXXXXXX" into the vendor ID in ASCII and the
// vendor's name.
func vendor(manufacturer string) (id, name string) {
	h, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(manufacturer)), "id:")
	if !ok || len(h) != 8 {
		return "", ""
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return "", ""
	}
	id = strings.TrimRight(string(raw), "\x00 ")
	for _, c := range []byte(id) {
		if c < 0x20 || c > 0x7e {
			return "", ""
		}
	}
	return id, tpmVendors[id]
}

// CheckPublicKey checks that the certificate certifies ek, the EK public key read from
// the TPM (an *rsa.PublicKey or *ecdsa.PublicKey). A mismatch wraps ErrKeyMismatch and
// names the SHA-256 of both keys (of their PKIX DER encoding, as in the agent ID).
func (c *EKCertificate) CheckPublicKey(ek crypto.PublicKey) error {
	switch k := ek.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return newError(ErrUnsupportedKey, nil, "nil EK public key")
		}
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return newError(ErrUnsupportedKey, nil, "nil EK public key")
		}
	default:
		return newError(ErrUnsupportedKey, nil, "EK public key of type %T", ek)
	}
	eq, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if ok && eq.Equal(ek) {
		return nil
	}
	return &ekError{
		kind: ErrKeyMismatch,
		msg: fmt.Sprintf("%s (cert key sha256 %s, EK sha256 %s)",
			ErrKeyMismatch.Error(), publicKeyHash(c.PublicKey), publicKeyHash(ek)),
	}
}

// publicKeyHash is the hex SHA-256 of pub's PKIX DER encoding.
func publicKeyHash(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "(unencodable " + fmt.Sprintf("%T", pub) + ")"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// checkEKProfile checks what makes a certificate an EK certificate rather than another
// kind: no CA; not an AK certificate (no tcg-kp-AIKCertificate, and no keyUsage of a
// signing key unless the extended key usage says tcg-kp-EKCertificate); and, when an
// extended key usage is present, tcg-kp-EKCertificate in it. Every EK certificate check
// (omens ek verify, the attestation verifier, the RA) goes through it.
func (c *EKCertificate) checkEKProfile() error {
	cert := c.Cert
	if cert.BasicConstraintsValid && cert.IsCA {
		return newError(ErrNotEKCert, nil, "serial %s is a CA certificate (basicConstraints cA=true)", serial(cert))
	}
	if c.listsEKU(oidTCGKpAIKCert) {
		return newError(ErrNotEKCert, nil, "serial %s is an AK certificate: its extended key usage lists tcg-kp-AIKCertificate (2.23.133.8.3); an EK certificate certifies a decryption key", serial(cert))
	}
	if c.signingKeyUsage() && !c.listsEKU(oidTCGKpEKCert) {
		return newError(ErrNotEKCert, nil, "serial %s certifies a signing key (an AK certificate?): keyUsage has digitalSignature without keyEncipherment or keyAgreement, and no extended key usage tcg-kp-EKCertificate", serial(cert))
	}
	if !c.HasEKU || c.listsEKU(oidTCGKpEKCert) {
		return nil
	}
	var listed []string
	for _, u := range cert.ExtKeyUsage {
		listed = append(listed, extKeyUsageName(u))
	}
	for _, u := range cert.UnknownExtKeyUsage {
		listed = append(listed, u.String())
	}
	return newError(ErrNotEKCert, nil, "serial %s: extended key usage [%s] lacks tcg-kp-EKCertificate (2.23.133.8.1)",
		serial(cert), strings.Join(listed, " "))
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:             "any",
	x509.ExtKeyUsageServerAuth:      "serverAuth",
	x509.ExtKeyUsageClientAuth:      "clientAuth",
	x509.ExtKeyUsageCodeSigning:     "codeSigning",
	x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping:    "timeStamping",
	x509.ExtKeyUsageOCSPSigning:     "OCSPSigning",
}

func extKeyUsageName(u x509.ExtKeyUsage) string {
	if n, ok := extKeyUsageNames[u]; ok {
		return n
	}
	return fmt.Sprintf("eku(%d)", int(u))
}

// serial formats a certificate serial number as 0x and lower-case hex.
func serial(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return "(none)"
	}
	return fmt.Sprintf("%#x", c.SerialNumber)
}
