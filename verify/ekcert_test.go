package verify_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

var (
	rsaKey  = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	rsaKey2 = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	p256    = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384    = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	// testCA's root and intermediate are valid from long before the EK certificates the
	// tests issue, expired ones included, as a real manufacturer's CAs are.
	testCA = sync.OnceValue(func() *mfgca.CA {
		now := time.Now()
		return must(mfgca.NewEphemeral("verify test",
			mfgca.WithRootValidity(now.Add(-20*year), now.Add(30*year)),
			mfgca.WithIntermediateValidity(now.Add(-10*year), now.Add(20*year))))
	})
)

const year = 365 * 24 * time.Hour

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// issue returns an EK certificate for pub from testCA.
func issue(t testing.TB, pub crypto.PublicKey, tmpl mfgca.EKTemplate) []byte {
	t.Helper()
	der, err := testCA().IssueEK(pub, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// selfSigned returns a self-signed certificate for key with the template's fields, to
// make certificates mfgca would refuse to issue.
func selfSigned(t testing.TB, key crypto.Signer, tmpl *x509.Certificate) []byte {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(7)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	return must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key))
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

var simSpec = verify.TPMSpec{Manufacturer: "id:4D534654", ManufacturerID: "MSFT", ManufacturerName: "Microsoft", Model: "omens-sim", Version: "id:00010002"}

func TestParseEKCertificate(t *testing.T) {
	rsaDER := issue(t, &rsaKey().PublicKey, mfgca.EKTemplate{})
	p256DER := issue(t, &p256().PublicKey, mfgca.EKTemplate{})
	p384DER := issue(t, &p384().PublicKey, mfgca.EKTemplate{})
	nvHeader := func(body []byte) []byte {
		b := []byte{0x10, 0x01, 0x00, byte((len(body) + 2) >> 8), byte(len(body) + 2), 0x10, 0x02}
		return append(b, body...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsa1024 := must(rsa.GenerateKey(rand.Reader, 1024))
	p224 := must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))

	for _, tc := range []struct {
		name    string
		in      []byte
		keyType string
		pub     crypto.PublicKey
		quirks  []string
		wantErr error
		errText string
	}{
		{name: "RSA-2048 DER", in: rsaDER, keyType: "RSA-2048", pub: &rsaKey().PublicKey},
		{name: "ECC P-256 DER", in: p256DER, keyType: "ECC-P256", pub: &p256().PublicKey},
		{name: "ECC P-384 DER", in: p384DER, keyType: "ECC-P384", pub: &p384().PublicKey},
		{name: "PEM", in: pemCert(p256DER), keyType: "ECC-P256", pub: &p256().PublicKey},
		{name: "PEM with leading text", in: cat([]byte("\n  \n"), pemCert(p256DER), []byte("\n")), keyType: "ECC-P256", pub: &p256().PublicKey},
		{name: "zero padding", in: cat(rsaDER, make([]byte, 300)), keyType: "RSA-2048", pub: &rsaKey().PublicKey,
			quirks: []string{"300 bytes of 0x00 padding stripped"}},
		{name: "erased NV padding", in: cat(p384DER, bytes.Repeat([]byte{0xFF}, 17)), keyType: "ECC-P384", pub: &p384().PublicKey,
			quirks: []string{"17 bytes of 0xFF padding stripped"}},
		{name: "TPM 1.2 NV header", in: cat(nvHeader(rsaDER), make([]byte, 9)), keyType: "RSA-2048", pub: &rsaKey().PublicKey,
			quirks: []string{"TPM 1.2 NV header stripped"}},
		{name: "trailing garbage", in: cat(rsaDER, []byte{0, 0, 0x41}), wantErr: verify.ErrMalformed,
			errText: "verify: malformed certificate: 3 bytes of trailing data after the certificate (byte 0x41 at offset 2 of them, after 0x00); only padding of one repeated byte is accepted"},
		{name: "mixed padding", in: cat(rsaDER, []byte{0, 0xFF}), wantErr: verify.ErrMalformed,
			errText: "verify: malformed certificate: 2 bytes of trailing data after the certificate (byte 0xFF at offset 1 of them, after 0x00); only padding of one repeated byte is accepted"},
		{name: "0x11 padding, as on real parts", in: cat(rsaDER, bytes.Repeat([]byte{0x11}, 200)), keyType: "RSA-2048", pub: &rsaKey().PublicKey,
			quirks: []string{"200 bytes of 0x11 padding stripped"}},
		{name: "0xA5 padding", in: cat(p256DER, bytes.Repeat([]byte{0xA5}, 64)), keyType: "ECC-P256", pub: &p256().PublicKey,
			quirks: []string{"64 bytes of 0xA5 padding stripped"}},
		{name: "one trailing byte", in: cat(p256DER, []byte{0x41}), keyType: "ECC-P256", pub: &p256().PublicKey,
			quirks: []string{"1 bytes of 0x41 padding stripped"}},
		{name: "TPM 1.2 NV header, 0x11 padding after it", in: cat(nvHeader(rsaDER), bytes.Repeat([]byte{0x11}, 9)), keyType: "RSA-2048", pub: &rsaKey().PublicKey,
			quirks: []string{"TPM 1.2 NV header stripped"}},
		{name: "TPM 1.2 NV header, mixed bytes after it", in: cat(nvHeader(rsaDER), []byte{0x11, 0x11, 0x12}), wantErr: verify.ErrMalformed,
			errText: "verify: malformed certificate: 3 bytes of trailing data after the NV content (byte 0x12 at offset 2 of them, after 0x11); only padding of one repeated byte is accepted"},
		{name: "truncated", in: rsaDER[:len(rsaDER)-10], wantErr: verify.ErrMalformed,
			errText: fmt.Sprintf("verify: malformed certificate: truncated: DER SEQUENCE declares %d bytes, only %d present", len(rsaDER), len(rsaDER)-10)},
		{name: "truncated NV header", in: nvHeader(rsaDER)[:100], wantErr: verify.ErrMalformed,
			errText: fmt.Sprintf("verify: malformed certificate: truncated: NV header declares %d bytes, only 95 present", len(rsaDER)+2)},
		{name: "empty", in: nil, wantErr: verify.ErrMalformed, errText: "verify: malformed certificate: empty input"},
		{name: "not DER", in: []byte("hello"), wantErr: verify.ErrMalformed,
			errText: "verify: malformed certificate: not DER: first byte 0x68, want a SEQUENCE (0x30)"},
		{name: "SEQUENCE that is no certificate", in: []byte{0x30, 0x03, 0x02, 0x01, 0x00}, wantErr: verify.ErrMalformed,
			errText: "verify: malformed certificate: x509: malformed tbs certificate"},
		{name: "PEM of a key", in: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), wantErr: verify.ErrMalformed,
			errText: `verify: malformed certificate: PEM block type "PUBLIC KEY", want CERTIFICATE`},
		{name: "two PEM certificates", in: cat(pemCert(rsaDER), pemCert(p256DER)), wantErr: verify.ErrMalformed,
			errText: fmt.Sprintf("verify: malformed certificate: %d bytes after the PEM CERTIFICATE block", len(bytes.TrimSpace(pemCert(p256DER))))},
		{name: "Ed25519 key", in: selfSigned(t, edPriv, &x509.Certificate{}), wantErr: verify.ErrUnsupportedKey,
			errText: "verify: unsupported public key: ed25519.PublicKey (Ed25519)"},
		{name: "RSA-1024 key", in: selfSigned(t, rsa1024, &x509.Certificate{}), wantErr: verify.ErrUnsupportedKey,
			errText: "verify: unsupported public key: RSA key of 1024 bits (want 2048, 3072 or 4096)"},
		{name: "P-224 key", in: selfSigned(t, p224, &x509.Certificate{}), wantErr: verify.ErrUnsupportedKey,
			errText: "verify: unsupported public key: ECC curve P-224"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ek, err := verify.ParseEKCertificate(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || err.Error() != tc.errText {
					t.Fatalf("error = %v, want %s (errors.Is %v)", err, tc.errText, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ek.KeyType != tc.keyType {
				t.Errorf("KeyType = %q, want %q", ek.KeyType, tc.keyType)
			}
			if ek.TPM != simSpec || !ek.HasTPMSAN {
				t.Errorf("TPM = %+v (found %v), want %+v", ek.TPM, ek.HasTPMSAN, simSpec)
			}
			if !ek.HasEKU {
				t.Error("HasEKU = false")
			}
			if len(ek.Cert.UnhandledCriticalExtensions) != 0 {
				t.Errorf("UnhandledCriticalExtensions = %v, want the SAN removed", ek.Cert.UnhandledCriticalExtensions)
			}
			if !slices.Equal(ek.Quirks, tc.quirks) {
				t.Errorf("Quirks = %q, want %q", ek.Quirks, tc.quirks)
			}
			if err := ek.CheckPublicKey(tc.pub); err != nil {
				t.Error(err)
			}
		})
	}
}

// san encodes a subjectAltName value holding names.
func san(t testing.TB, names ...asn1.RawValue) []byte {
	t.Helper()
	return must(asn1.Marshal(names))
}

func dirName(t testing.TB, rdns pkix.RDNSequence) asn1.RawValue {
	t.Helper()
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: must(asn1.Marshal(rdns))}
}

func utf8Value(s string) asn1.RawValue {
	return asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)}
}

var (
	oidManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

func TestParseTPMSpecSAN(t *testing.T) {
	dns := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("tpm.example")}
	for _, tc := range []struct {
		name    string
		value   []byte
		want    verify.TPMSpec
		found   bool
		errText string
	}{
		{
			name: "one RDN per attribute (Infineon, STMicro, Google)",
			value: san(t, dirName(t, pkix.RDNSequence{
				{{Type: oidManufacturer, Value: utf8Value("id:49465800")}},
				{{Type: oidModel, Value: utf8Value("SLB 9670 TPM2.0")}},
				{{Type: oidVersion, Value: utf8Value("id:073f")}},
			})),
			want:  verify.TPMSpec{Manufacturer: "id:49465800", ManufacturerID: "IFX", ManufacturerName: "Infineon", Model: "SLB 9670 TPM2.0", Version: "id:073f"},
			found: true,
		},
		{
			name: "one RDN with three attributes (Nuvoton)",
			value: san(t, dirName(t, pkix.RDNSequence{{
				{Type: oidManufacturer, Value: utf8Value("id:4E544300")},
				{Type: oidModel, Value: utf8Value("NPCT6xx")},
				{Type: oidVersion, Value: utf8Value("id:13")},
			}})),
			want:  verify.TPMSpec{Manufacturer: "id:4E544300", ManufacturerID: "NTC", ManufacturerName: "Nuvoton Technology", Model: "NPCT6xx", Version: "id:13"},
			found: true,
		},
		{
			name: "PrintableString values, lower-case hex, other names around",
			value: san(t, dns, dirName(t, pkix.RDNSequence{
				{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "ignored"}},
				{{Type: oidManufacturer, Value: "id:494e5443"}},
				{{Type: oidModel, Value: "PTT"}},
			})),
			want:  verify.TPMSpec{Manufacturer: "id:494e5443", ManufacturerID: "INTC", ManufacturerName: "Intel", Model: "PTT"},
			found: true,
		},
		{
			name:  "unknown vendor",
			value: san(t, dirName(t, pkix.RDNSequence{{{Type: oidManufacturer, Value: utf8Value("id:58595A00")}}})),
			want:  verify.TPMSpec{Manufacturer: "id:58595A00", ManufacturerID: "XYZ"},
			found: true,
		},
		{
			name:  "manufacturer not in id: form",
			value: san(t, dirName(t, pkix.RDNSequence{{{Type: oidManufacturer, Value: utf8Value("Infineon")}}})),
			want:  verify.TPMSpec{Manufacturer: "Infineon"},
			found: true,
		},
		{
			name:  "non-printable vendor bytes",
			value: san(t, dirName(t, pkix.RDNSequence{{{Type: oidManufacturer, Value: utf8Value("id:01020304")}}})),
			want:  verify.TPMSpec{Manufacturer: "id:01020304"},
			found: true,
		},
		{name: "no directoryName", value: san(t, dns)},
		{
			name:    "integer attribute",
			value:   san(t, dirName(t, pkix.RDNSequence{{{Type: oidModel, Value: 5}}})),
			errText: "verify: malformed certificate: subjectAltName: attribute 2.23.133.2.2: value of type int64, want a string",
		},
		{name: "garbage", value: []byte{0x30, 0x05, 0x01}, errText: "verify: malformed certificate: subjectAltName: asn1: syntax error: data truncated"},
		{name: "trailing bytes", value: append(san(t, dns), 0), errText: "verify: malformed certificate: subjectAltName: 1 bytes after GeneralNames"},
		{
			name:    "directoryName with trailing bytes",
			value:   san(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: []byte{0x30, 0x00, 0x00}}),
			errText: "verify: malformed certificate: subjectAltName: directoryName: 1 trailing bytes",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, found, err := verify.ParseTPMSpecSAN(tc.value)
			if tc.errText != "" {
				if !errors.Is(err, verify.ErrMalformed) || err.Error() != tc.errText {
					t.Fatalf("error = %v, want %s", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec != tc.want || found != tc.found {
				t.Errorf("got %+v found=%v, want %+v found=%v", spec, found, tc.want, tc.found)
			}
		})
	}
}

func pkixSHA256(pub crypto.PublicKey) string {
	sum := sha256.Sum256(must(x509.MarshalPKIXPublicKey(pub)))
	return hex.EncodeToString(sum[:])
}

func TestCheckPublicKey(t *testing.T) {
	rsaEK := must(verify.ParseEKCertificate(issue(t, &rsaKey().PublicKey, mfgca.EKTemplate{})))
	eccEK := must(verify.ParseEKCertificate(issue(t, &p256().PublicKey, mfgca.EKTemplate{})))
	mismatch := func(cert, ek crypto.PublicKey) string {
		return fmt.Sprintf("verify: certificate public key does not match the EK (cert key sha256 %s, EK sha256 %s)", pkixSHA256(cert), pkixSHA256(ek))
	}
	for _, tc := range []struct {
		name    string
		cert    *verify.EKCertificate
		ek      crypto.PublicKey
		wantErr error
		errText string
	}{
		{name: "RSA match", cert: rsaEK, ek: &rsaKey().PublicKey},
		{name: "ECC match", cert: eccEK, ek: &p256().PublicKey},
		{name: "ECC match, other copy", cert: eccEK, ek: &ecdsa.PublicKey{Curve: elliptic.P256(), X: p256().X, Y: p256().Y}},
		{name: "other RSA key", cert: rsaEK, ek: &rsaKey2().PublicKey, wantErr: verify.ErrKeyMismatch,
			errText: mismatch(&rsaKey().PublicKey, &rsaKey2().PublicKey)},
		{name: "ECC key for RSA cert", cert: rsaEK, ek: &p384().PublicKey, wantErr: verify.ErrKeyMismatch,
			errText: mismatch(&rsaKey().PublicKey, &p384().PublicKey)},
		{name: "other curve", cert: eccEK, ek: &p384().PublicKey, wantErr: verify.ErrKeyMismatch,
			errText: mismatch(&p256().PublicKey, &p384().PublicKey)},
		{name: "nil key", cert: eccEK, ek: nil, wantErr: verify.ErrUnsupportedKey,
			errText: "verify: unsupported public key: EK public key of type <nil>"},
		{name: "nil RSA key", cert: rsaEK, ek: (*rsa.PublicKey)(nil), wantErr: verify.ErrUnsupportedKey,
			errText: "verify: unsupported public key: nil EK public key"},
		{name: "key by value", cert: rsaEK, ek: rsaKey().PublicKey, wantErr: verify.ErrUnsupportedKey,
			errText: "verify: unsupported public key: EK public key of type rsa.PublicKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cert.CheckPublicKey(tc.ek)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || err.Error() != tc.errText {
				t.Fatalf("error = %v, want %s", err, tc.errText)
			}
		})
	}
}
