package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"testing"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

var devIDAlgs = []struct {
	name string
	alg  tpm2.TPMAlgID
}{{"RSA", tpm2.TPMAlgRSA}, {"ECC", tpm2.TPMAlgECC}}

// tpmDevIDSRK is the SRK template SPIRE v1.13.3's tpm_devid agent derives before it loads
// the DevID blobs (tpmutil.SRKTemplateHighRSA and SRKTemplateHighECC: go-tpm-tools'
// client.SRKTemplateRSA and SRKTemplateECC with an empty unique field), written out in the
// legacy go-tpm types that plugin uses.
func tpmDevIDSRK(alg tpm2.TPMAlgID) legacy.Public {
	attrs := legacy.FlagStorageDefault | legacy.FlagNoDA
	sym := &legacy.SymScheme{Alg: legacy.AlgAES, KeyBits: 128, Mode: legacy.AlgCFB}
	if alg == tpm2.TPMAlgRSA {
		return legacy.Public{Type: legacy.AlgRSA, NameAlg: legacy.AlgSHA256, Attributes: attrs,
			RSAParameters: &legacy.RSAParams{Symmetric: sym, KeyBits: 2048, ModulusRaw: []byte{}}}
	}
	return legacy.Public{Type: legacy.AlgECC, NameAlg: legacy.AlgSHA256, Attributes: attrs,
		ECCParameters: &legacy.ECCParams{Symmetric: sym, CurveID: legacy.CurveNISTP256, Point: legacy.ECPoint{XRaw: []byte{}, YRaw: []byte{}}}}
}

// tpmDevIDKeyTemplate is the DevID template of SPIRE's own test provisioning
// (test/tpmsimulator: go-tpm-tools' AK templates with sign, fixedTPM, fixedParent,
// sensitiveDataOrigin and userWithAuth).
func tpmDevIDKeyTemplate(alg tpm2.TPMAlgID) legacy.Public {
	attrs := legacy.FlagSign | legacy.FlagFixedTPM | legacy.FlagFixedParent | legacy.FlagSensitiveDataOrigin | legacy.FlagUserWithAuth
	if alg == tpm2.TPMAlgRSA {
		return legacy.Public{Type: legacy.AlgRSA, NameAlg: legacy.AlgSHA256, Attributes: attrs,
			RSAParameters: &legacy.RSAParams{Sign: &legacy.SigScheme{Alg: legacy.AlgRSASSA, Hash: legacy.AlgSHA256}, KeyBits: 2048}}
	}
	return legacy.Public{Type: legacy.AlgECC, NameAlg: legacy.AlgSHA256, Attributes: attrs,
		ECCParameters: &legacy.ECCParams{Sign: &legacy.SigScheme{Alg: legacy.AlgECDSA, Hash: legacy.AlgSHA256}, CurveID: legacy.CurveNISTP256,
			Point: legacy.ECPoint{XRaw: make([]byte, 32), YRaw: make([]byte, 32)}}}
}

func TestSRKTemplatesAreTPMDevIDs(t *testing.T) {
	for _, a := range devIDAlgs {
		want, err := tpmDevIDSRK(a.alg).Encode()
		if err != nil {
			t.Fatal(err)
		}
		got := tpm2.Marshal(tpmrules.SRKTemplateRSA)
		if a.alg == tpm2.TPMAlgECC {
			got = tpm2.Marshal(tpmrules.SRKTemplateECC)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s SRK template\n%x\ntpm_devid's\n%x", a.name, got, want)
		}
	}
}

// csrFor has the DevID key sign a CSR and checks it the way the RA does.
func csrFor(t *testing.T, s transport.TPM, k *tpm.DevIDKey) []byte {
	t.Helper()
	signer, err := k.Signer(s)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "auth.funlab.casa"}}, signer)
	if err != nil {
		t.Fatalf("CreateCertificateRequest with the TPM signer: %v", err)
	}
	_, devid, err := verify.CheckDevIDPublic(k.PublicBlob)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := verify.CheckCSR(der, devid)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if pk, _ := k.PublicKey(); !devid.(interface{ Equal(crypto.PublicKey) bool }).Equal(pk) || !devid.(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()) {
		t.Fatal("CSR key, DevID public area and signer disagree")
	}
	return der
}

func TestDevIDCreateSignReload(t *testing.T) {
	for _, a := range devIDAlgs {
		t.Run(a.name, func(t *testing.T) {
			s := openSim(t)
			srk, err := tpm.LoadSRK(s, a.alg)
			if err != nil {
				t.Fatal(err)
			}
			if srk.Persistent {
				t.Fatal("a fresh simulator has a persistent SRK")
			}
			k, err := tpm.CreateDevID(s, srk, a.alg)
			if err != nil {
				t.Fatal(err)
			}
			if k.Persistent || len(k.PrivateBlob) == 0 || !bytes.Equal(k.PublicBlob, tpm2.Marshal(k.Public)) {
				t.Fatalf("CreateDevID = %+v", k)
			}
			if err := tpm.IsDevIDKey(&k.Public); err != nil {
				t.Fatal(err)
			}
			if k.Public.Type != a.alg {
				t.Fatalf("key type 0x%04X, want 0x%04X", k.Public.Type, a.alg)
			}
			noTransients(t, s, srk.Handle, k.Handle)
			csrFor(t, s, k)
			if err := k.Close(s); err != nil {
				t.Fatal(err)
			}
			if err := srk.Close(s); err != nil {
				t.Fatal(err)
			}
			noTransients(t, s)

			// The blobs load again under a newly derived SRK, which may go at once.
			srk, err = tpm.LoadSRK(s, a.alg)
			if err != nil {
				t.Fatal(err)
			}
			again, err := tpm.LoadDevID(s, srk, k.PublicBlob, k.PrivateBlob)
			if err != nil {
				t.Fatal(err)
			}
			if err := srk.Close(s); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Name.Buffer, k.Name.Buffer) {
				t.Errorf("reloaded name %x, created %x", again.Name.Buffer, k.Name.Buffer)
			}
			csrFor(t, s, again)
			if err := again.Close(s); err != nil {
				t.Fatal(err)
			}
			noTransients(t, s)
		})
	}
}

// legacyRW carries the legacy go-tpm API, which tpm_devid uses, to a transport.TPM: one
// command per Write, its whole response read back (transport.ToReadWriter returns io.EOF
// with the last bytes, which the legacy API takes for a failure).
type legacyRW struct {
	tpm  transport.TPM
	resp []byte
}

func (l *legacyRW) Write(cmd []byte) (int, error) {
	var err error
	l.resp, err = l.tpm.Send(cmd)
	if err != nil {
		return 0, err
	}
	return len(cmd), nil
}

func (l *legacyRW) Read(p []byte) (int, error) {
	if len(l.resp) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.resp)
	l.resp = l.resp[n:]
	return n, nil
}

// TestDevIDTPMDevIDInterop runs SPIRE tpm_devid's own load path (legacy go-tpm: derive
// the SRK with a random auth value, TPM2_Load the two files, TPM2_Hash then TPM2_Sign the
// server's challenge, checked as its server does) on blobs CreateDevID made, and LoadDevID
// on blobs made the way SPIRE's test provisioning makes them.
func TestDevIDTPMDevIDInterop(t *testing.T) {
	for _, a := range devIDAlgs {
		t.Run(a.name, func(t *testing.T) {
			s := openSim(t)
			rw := &legacyRW{tpm: s}
			srk, err := tpm.LoadSRK(s, a.alg)
			if err != nil {
				t.Fatal(err)
			}
			k, err := tpm.CreateDevID(s, srk, a.alg)
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := k.PublicKey()
			k.Close(s)
			srk.Close(s)

			srkAuth := string(randomNonce(t, 32))
			srkHandle, _, _, _, _, _, err := legacy.CreatePrimaryEx(rw, legacy.HandleOwner, legacy.PCRSelection{}, "", srkAuth, tpmDevIDSRK(a.alg))
			if err != nil {
				t.Fatal(err)
			}
			h, _, err := legacy.Load(rw, srkHandle, srkAuth, k.PublicBlob, k.PrivateBlob)
			legacy.FlushContext(rw, srkHandle)
			if err != nil {
				t.Fatalf("tpm_devid's TPM2_Load of CreateDevID's blobs: %v", err)
			}
			challenge := randomNonce(t, 32)
			digest, ticket, err := legacy.Hash(rw, legacy.AlgSHA256, challenge, legacy.HandlePlatform)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := legacy.Sign(rw, h, "", digest, ticket, nil)
			legacy.FlushContext(rw, h)
			if err != nil {
				t.Fatal(err)
			}
			var raw []byte
			alg := x509.SHA256WithRSA
			if sig.RSA != nil {
				raw = sig.RSA.Signature
			} else {
				alg = x509.ECDSAWithSHA256
				if raw, err = asn1Signature(sig.ECC.R, sig.ECC.S); err != nil {
					t.Fatal(err)
				}
			}
			if err := (&x509.Certificate{PublicKey: pub}).CheckSignature(alg, challenge, raw); err != nil {
				t.Errorf("tpm_devid server's challenge check: %v", err)
			}
			noTransients(t, s)

			// The other way: blobs from tpm_devid-style provisioning load in omens.
			srkHandle, _, _, _, _, _, err = legacy.CreatePrimaryEx(rw, legacy.HandleOwner, legacy.PCRSelection{}, "", srkAuth, tpmDevIDSRK(a.alg))
			if err != nil {
				t.Fatal(err)
			}
			priv, pubBlob, _, _, _, err := legacy.CreateKey(rw, srkHandle, legacy.PCRSelection{}, srkAuth, "", tpmDevIDKeyTemplate(a.alg))
			legacy.FlushContext(rw, srkHandle)
			if err != nil {
				t.Fatal(err)
			}
			srk, err = tpm.LoadSRK(s, a.alg)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := tpm.LoadDevID(s, srk, pubBlob, priv)
			srk.Close(s)
			if err != nil {
				t.Fatalf("LoadDevID of tpm_devid-provisioned blobs: %v", err)
			}
			csrFor(t, s, theirs)
			theirs.Close(s)
			noTransients(t, s)
		})
	}
}

func TestDevIDPersistent(t *testing.T) {
	s := openSim(t)
	const h = tpm2.TPMHandle(0x81010002) // the handle of the Tower's plan
	srk, err := tpm.LoadSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	defer srk.Close(s)
	k, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.PersistDevID(s, k, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testtpm.EvictDevID(s, h) })
	if !k.Persistent || k.Handle != h {
		t.Fatalf("after PersistDevID: handle 0x%08X persistent %v", uint32(k.Handle), k.Persistent)
	}
	noTransients(t, s, srk.Handle)
	p, err := tpm.LoadPersistentDevID(s, h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Name.Buffer, k.Name.Buffer) || !bytes.Equal(p.PublicBlob, k.PublicBlob) || p.PrivateBlob != nil {
		t.Fatalf("LoadPersistentDevID = %+v, persisted %+v", p, k)
	}
	csrFor(t, s, p)
	if err := p.Close(s); err != nil {
		t.Fatal(err)
	}
	if err := tpm.PersistDevID(s, k, h); err != nil {
		t.Errorf("persisting again at the same handle: %v", err)
	}

	// Renewal: a new DevID key replaces the old one at h.
	renewed, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.PersistDevID(s, renewed, h); err != nil {
		t.Fatal(err)
	}
	if p, err := tpm.LoadPersistentDevID(s, h); err != nil || !bytes.Equal(p.Name.Buffer, renewed.Name.Buffer) {
		t.Fatalf("after renewal, 0x%08X holds %v, %v; want %x", uint32(h), p, err, renewed.Name.Buffer)
	}
	noTransients(t, s, srk.Handle)

	// A handle holding another kind of key is left alone. A TPM may have only three
	// object slots: the SRK and the EK go before the AK is read back.
	other, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(s)
	srk.Close(s)
	ek, err := tpm.LoadEK(s, tpmrules.EKECCP256)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm.LoadOrCreateAK(s, ek, tpmrules.DefaultAKHandle)
	ek.Close(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testtpm.Evict(s, tpmrules.DefaultAKHandle) })
	for _, c := range []struct {
		name string
		err  error
		is   error
		want string
	}{
		{"persist over an AK", tpm.PersistDevID(s, other, tpmrules.DefaultAKHandle), tpm.ErrHandleInUse,
			"tpm: persistent handle holds another key: 0x81010010: tpm: not a DevID key: attributes lack [not restricted]; choose another DevID handle or evict it (tpm2_evictcontrol -c 0x81010010)"},
		{"load an AK", func() error { _, err := tpm.LoadPersistentDevID(s, tpmrules.DefaultAKHandle); return err }(), nil,
			"tpm: 0x81010010 does not hold a DevID key: tpm: not a DevID key: attributes lack [not restricted]"},
		{"evict an AK", testtpm.EvictDevID(s, tpmrules.DefaultAKHandle), nil,
			"tpm: 0x81010010 does not hold a DevID key: tpm: not a DevID key: attributes lack [not restricted]"},
		{"transient handle", tpm.PersistDevID(s, other, 0x80000001), nil,
			"tpm: 0x80000001 is not a persistent handle (want 0x81000000 to 0x81FFFFFF)"},
		{"persistent elsewhere", tpm.PersistDevID(s, renewed, 0x81000100), nil,
			"tpm: the DevID key is already persistent at 0x81010002"},
	} {
		if c.err == nil || c.err.Error() != c.want || (c.is != nil && !errors.Is(c.err, c.is)) {
			t.Errorf("%s: error = %v\nwant %s", c.name, c.err, c.want)
		}
	}
	if rp, err := (tpm2.ReadPublic{ObjectHandle: tpmrules.DefaultAKHandle}).Execute(s); err != nil || !bytes.Equal(rp.Name.Buffer, ak.Name.Buffer) {
		t.Errorf("the AK at 0x%08X changed: %v", uint32(tpmrules.DefaultAKHandle), err)
	}
	other.Close(s)
	noTransients(t, s)
}

// persistSRK makes a primary key of template persistent at tpmrules.DefaultSRKHandle.
func persistSRK(t *testing.T, s transport.TPM, template tpm2.TPMTPublic) tpm2.TPM2BName {
	t.Helper()
	r, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(template)}.Execute(s)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: r.ObjectHandle}.Execute(s)
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: r.ObjectHandle, Name: r.Name},
		PersistentHandle: tpmrules.DefaultSRKHandle,
	}).Execute(s); err != nil {
		t.Fatal(err)
	}
	return r.Name
}

func evictSRK(t *testing.T, s transport.TPM, name tpm2.TPM2BName) {
	t.Helper()
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: tpmrules.DefaultSRKHandle, Name: name},
		PersistentHandle: tpmrules.DefaultSRKHandle,
	}).Execute(s); err != nil {
		t.Fatal(err)
	}
}

func TestDevIDPersistentSRK(t *testing.T) {
	s := openSim(t)
	// The SRK the template derives, persisted: used as it is.
	name := persistSRK(t, s, tpmrules.SRKTemplateECC)
	srk, err := tpm.LoadSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	if !srk.Persistent || !bytes.Equal(srk.Name.Buffer, name.Buffer) {
		t.Fatalf("LoadSRK = %+v, want the persistent SRK", srk)
	}
	k, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	k.Close(s)
	if k, err := tpm.LoadDevID(s, srk, k.PublicBlob, k.PrivateBlob); err != nil {
		t.Fatal(err)
	} else {
		k.Close(s)
	}
	noTransients(t, s)
	// An RSA DevID needs an RSA SRK, which is not the persistent one.
	if rsaSRK, err := tpm.LoadSRK(s, tpm2.TPMAlgRSA); err != nil || rsaSRK.Persistent {
		t.Fatalf("LoadSRK(RSA) = %+v, %v; want a derived RSA SRK", rsaSRK, err)
	} else {
		rsaSRK.Close(s)
	}
	evictSRK(t, s, name)

	// go-tpm's ECCSRKTemplate has a zero-filled unique field: the same template to look
	// at, another key, under which tpm_devid's blobs do not load.
	foreign := persistSRK(t, s, tpm2.ECCSRKTemplate)
	defer evictSRK(t, s, foreign)
	srk, err = tpm.LoadSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	if !srk.Persistent {
		t.Fatal("LoadSRK did not take the persistent SRK of the same template")
	}
	_, err = tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
	want := fmt.Sprintf("tpm: the SRK persisted at 0x81000001 (name %x) is not the one the TCG template derives (name %x): "+
		"DevID blobs made under it would not load in SPIRE's tpm_devid; use DeriveSRK", foreign.Buffer, name.Buffer)
	if err == nil || err.Error() != want {
		t.Errorf("CreateDevID under a foreign SRK: error = %v\nwant %s", err, want)
	}
	_, err = tpm.LoadDevID(s, srk, k.PublicBlob, k.PrivateBlob)
	if err == nil || !errors.Is(err, tpm2.TPMRCIntegrity) ||
		!bytes.HasSuffix([]byte(err.Error()), []byte("(the blobs were made under another SRK, or in another TPM)")) {
		t.Errorf("LoadDevID under a foreign SRK: error = %v", err)
	}
	derived, err := tpm.DeriveSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := tpm.LoadDevID(s, derived, k.PublicBlob, k.PrivateBlob); err != nil {
		t.Errorf("LoadDevID under DeriveSRK's SRK: %v", err)
	} else {
		k.Close(s)
	}
	derived.Close(s)
	noTransients(t, s)
}

func TestDevIDCertify(t *testing.T) {
	s := openSim(t)
	// A TPM may have only three object slots: the EK goes once the AK is made, and each
	// DevID key's SRK once the key is loaded.
	ek, err := tpm.LoadEK(s, tpmrules.EKECCP256)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm.LoadOrCreateAK(s, ek, 0)
	ek.Close(s)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close(s)
	for _, a := range devIDAlgs {
		srk, err := tpm.LoadSRK(s, a.alg)
		if err != nil {
			t.Fatal(err)
		}
		k, err := tpm.CreateDevID(s, srk, a.alg)
		srk.Close(s)
		if err != nil {
			t.Fatal(err)
		}
		nonce := randomNonce(t, 32)
		attest, sig, err := tpm.Certify(s, k, ak, nonce)
		k.Close(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify.VerifyCertify(&ak.Public, attest, sig, nonce, k.PublicBlob); err != nil {
			t.Errorf("%s: %v", a.name, err)
		}
		noTransients(t, s, ak.Handle)
	}
	ak.Close(s)
	noTransients(t, s)
}

func TestDevIDErrors(t *testing.T) {
	s := openSim(t)
	srk, err := tpm.LoadSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	defer srk.Close(s)
	k, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(s)
	signer, err := k.Signer(s)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	tpm2b := append([]byte{byte(len(k.PublicBlob) >> 8), byte(len(k.PublicBlob))}, k.PublicBlob...)
	for _, c := range []struct {
		name string
		err  func() error
		want string
	}{
		{"SHA-384", func() error { _, err := signer.Sign(nil, make([]byte, 48), crypto.SHA384); return err },
			"tpm: the DevID key signs SHA-256 digests, not SHA-384"},
		{"PSS", func() error {
			_, err := signer.Sign(nil, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256})
			return err
		}, "tpm: the DevID key signs PKCS #1 v1.5, not PSS"},
		{"short digest", func() error { _, err := signer.Sign(nil, digest[:20], crypto.SHA256); return err },
			"tpm: digest is 20 bytes, want 32 (SHA-256)"},
		{"RSA key under ECC SRK", func() error { _, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgRSA); return err },
			"tpm: a DevID RSA key under an ECC SRK would not load in SPIRE's tpm_devid, which derives the SRK of the DevID key's type"},
		{"unknown type", func() error { _, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgKeyedHash); return err },
			"tpm: no DevID template for alg 0x0008 (want RSA or ECC)"},
		{"TPM2B_PUBLIC blob", func() error { _, err := tpm.LoadDevID(s, srk, tpm2b, k.PrivateBlob); return err },
			"tpm: DevID public blob: unmarshalling field 4 of struct of type 'tpm2.TPMTPublic', ran out of data reading sized parameter 'Buffer' inside struct of type 'TPM2BDigest' (it looks like a TPM2B_PUBLIC with its size prefix, as tpm2_create writes; tpm_devid and omens want the TPMT_PUBLIC without it)"},
		{"SRK blob", func() error { _, err := tpm.LoadDevID(s, srk, tpm2.Marshal(srk.Public), nil); return err },
			"tpm: not a DevID key: attributes lack [sign not restricted not decrypt]"},
	} {
		if err := c.err(); err == nil || err.Error() != c.want {
			t.Errorf("%s: error = %v\nwant %s", c.name, err, c.want)
		}
	}
	k.Close(s)
	srk.Close(s)
	noTransients(t, s)
}

func randomNonce(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// asn1Signature encodes an ECDSA signature as tpm_devid's agent does before sending it.
func asn1Signature(r, s *big.Int) ([]byte, error) {
	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}
