package testattest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// DefaultDevIDHandle is where New persists the DevID key of a DevID-mode prover: clear of
// the EK, AK and SRK handles and of the plan's 0x81010002, which tests of the plugins use.
const DefaultDevIDHandle tpm2.TPMHandle = 0x81010030

// DefaultDevIDHost is the common name of DevID certificates unless a template says
// otherwise.
const DefaultDevIDHost = "auth.funlab.casa"

// DevIDCA is a DevID certificate authority for tests, shaped like step-ca: a root, an
// intermediate that issues DevID certificates (with the client and server usages step-ca
// gives) and signs the CRL. The real step-ca enrollment path is tested elsewhere.
type DevIDCA struct {
	Root, Intermediate *x509.Certificate
	rootKey, interKey  *ecdsa.PrivateKey
}

// NewDevIDCA makes a CA whose root is "<name> Root CA" and intermediate "<name>
// Intermediate CA", valid for ten years either side of now.
func NewDevIDCA(name string) (*DevIDCA, error) {
	now := time.Now()
	ca := &DevIDCA{}
	var err error
	if ca.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.interKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " Root CA", Organization: []string{"omens test"}},
		NotBefore:             now.Add(-10 * 365 * 24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, root, root, &ca.rootKey.PublicKey, ca.rootKey)
	if err != nil {
		return nil, err
	}
	if ca.Root, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	inter := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: name + " Intermediate CA", Organization: []string{"omens test"}},
		NotBefore:             root.NotBefore,
		NotAfter:              root.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if der, err = x509.CreateCertificate(rand.Reader, inter, ca.Root, &ca.interKey.PublicKey, ca.rootKey); err != nil {
		return nil, err
	}
	if ca.Intermediate, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	return ca, nil
}

// Bundle returns the bundle that trusts the CA: its root, and its intermediate to build
// chains (what devid_ca_path holds).
func (ca *DevIDCA) Bundle() *verify.Bundle {
	return verify.NewBundle([]*x509.Certificate{ca.Root}, []*x509.Certificate{ca.Intermediate})
}

// BundlePEM is the root and the intermediate, PEM.
func (ca *DevIDCA) BundlePEM() []byte { return ChainPEM([][]byte{ca.Root.Raw, ca.Intermediate.Raw}) }

// ChainPEM encodes DER certificates as PEM CERTIFICATE blocks, in order.
func ChainPEM(chain [][]byte) []byte {
	var out []byte
	for _, der := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// DevIDTemplate says what Issue puts in a DevID certificate. Zero fields take defaults: a
// random serial, DefaultDevIDHost, valid from an hour ago for 90 days.
type DevIDTemplate struct {
	Serial              *big.Int
	CommonName          string
	NotBefore, NotAfter time.Time
}

// Issue certifies pub as a DevID of tmpl's host and returns the chain, the certificate
// then the intermediate (DER), as step-ca returns it.
func (ca *DevIDCA) Issue(pub crypto.PublicKey, tmpl DevIDTemplate) ([][]byte, error) {
	if tmpl.Serial == nil {
		s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, err
		}
		tmpl.Serial = s
	}
	if tmpl.CommonName == "" {
		tmpl.CommonName = DefaultDevIDHost
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = tmpl.NotBefore.Add(2160 * time.Hour)
	}
	leaf := &x509.Certificate{
		SerialNumber: tmpl.Serial,
		Subject:      pkix.Name{CommonName: tmpl.CommonName},
		DNSNames:     []string{tmpl.CommonName},
		NotBefore:    tmpl.NotBefore,
		NotAfter:     tmpl.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca.Intermediate, pub, ca.interKey)
	if err != nil {
		return nil, fmt.Errorf("testattest: issue DevID certificate: %w", err)
	}
	return [][]byte{der, ca.Intermediate.Raw}, nil
}

// CRL returns a CRL of the intermediate (DER) listing revoked, with CRL number number,
// valid from thisUpdate to nextUpdate.
func (ca *DevIDCA) CRL(number int64, thisUpdate, nextUpdate time.Time, revoked ...x509.RevocationListEntry) ([]byte, error) {
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: revoked,
	}, ca.Intermediate, ca.interKey)
}

// ServerCertificate issues a TLS server certificate for the IP address ip (as step-ca
// serves its API with a certificate of its own intermediate).
func (ca *DevIDCA) ServerCertificate(ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: ip},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Intermediate, &key.PublicKey, ca.interKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Intermediate.Raw}, PrivateKey: key}, nil
}

// provisionDevID creates a DevID key of type alg under the SRK, persists it at h, and
// returns it; nothing stays loaded. It runs before the EK and the AK are loaded: the
// reference simulator holds three transient objects, and making a key takes two.
func provisionDevID(t transport.TPM, alg tpm2.TPMAlgID, h tpm2.TPMHandle) (*tpm.DevIDKey, error) {
	srk, err := tpm.LoadSRK(t, alg)
	if err != nil {
		return nil, err
	}
	key, err := tpm.CreateDevID(t, srk, alg)
	if cerr := srk.Close(t); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := tpm.PersistDevID(t, key, h); err != nil {
		key.Close(t)
		return nil, err
	}
	return key, nil
}

// SoftwareDevIDPublic makes an ECDSA P-256 key in Go, loads it with TPM2_LoadExternal (the
// TPM then signs with it, and the AK would certify it), and returns its public area as the
// TPM reports it, and the key. The TPM insists that such a key be neither fixedTPM,
// fixedParent nor sensitiveDataOrigin (Part 3, 12.3): what gives it away as no device
// identity. Nothing stays loaded.
func (p *Prover) SoftwareDevIDPublic() ([]byte, *ecdsa.PrivateKey, error) {
	r, _, key, err := p.loadSoftwareECC(tpmrules.DevIDTemplateECC)
	if err != nil {
		return nil, nil, err
	}
	defer tpm2.FlushContext{FlushHandle: r.ObjectHandle}.Execute(p.TPM)
	rp, err := tpm2.ReadPublic{ObjectHandle: r.ObjectHandle}.Execute(p.TPM)
	if err != nil {
		return nil, nil, fmt.Errorf("testattest: ReadPublic: %w", err)
	}
	return rp.OutPublic.Bytes(), key, nil
}
