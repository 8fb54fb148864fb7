package verify_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// devidData is what the DevID checks are tested and fuzzed on, all made by the in-process
// simulator (closed once it is recorded): real DevID keys and TPM2_Certify statements, and
// the bad ones an attacker who holds a genuine TPM can make.
type devidData struct {
	// ak signs every Certify below except otherAK's.
	ak tpm2.TPMTPublic
	// nonce is the verifier's; stale is an earlier one.
	nonce, stale []byte
	// a, b (ECC P-256) and rsa are DevID keys made by CreateDevID: public areas.
	a, b, rsa []byte
	// certifyA and certifyRSA are honest: the AK certifies a and rsa over nonce.
	certifyA, certifyRSA [2][]byte
	// otherAK: another AK of the same TPM certifies a over nonce.
	otherAK [2][]byte
	// staleA: the AK certifies a over stale.
	staleA [2][]byte
	// notGenerated: certifyA's structure with its magic cleared, signed by the AK through
	// TPM2_Hash and TPM2_Sign.
	notGenerated [2][]byte
	// quote: a TPM2_Quote by the AK over nonce.
	quote [2][]byte
	// Public areas the DevID checks refuse: a software key loaded with
	// TPM2_LoadExternal, the AK, a key that signs and decrypts, the SRK, an RSA-1024
	// DevID key.
	software, decrypt, srk, rsa1024 []byte
	// csrA is a CSR signed by a; csrBSignedByA names b but a signed it.
	csrA, csrBSignedByA []byte
}

// Persistent handles for the two AKs while recording; evicted afterwards.
const (
	devidAKHandle      tpm2.TPMHandle = 0x81010020
	devidOtherAKHandle tpm2.TPMHandle = 0x81010021
)

func recordDevID() (*devidData, error) {
	s, err := openSimulator()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	d := &devidData{nonce: bytes.Repeat([]byte{0xA5}, 32), stale: bytes.Repeat([]byte{0x5A}, 32)}
	// A TPM may have only three object slots: keys are created with only their parent
	// loaded, and the AKs live at persistent handles.
	var blobA [2][]byte
	srk, err := tpm.LoadSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		return nil, err
	}
	d.srk = tpm2.Marshal(srk.Public)
	for _, out := range []*[]byte{&d.a, &d.b} {
		k, err := tpm.CreateDevID(s, srk, tpm2.TPMAlgECC)
		if err != nil {
			srk.Close(s)
			return nil, err
		}
		k.Close(s)
		*out = k.PublicBlob
		if out == &d.a {
			blobA = [2][]byte{k.PublicBlob, k.PrivateBlob}
		}
	}
	signDecrypt := tpmrules.DevIDTemplateECC
	signDecrypt.ObjectAttributes.Decrypt = true
	signDecrypt.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{CurveID: tpm2.TPMECCNistP256})
	cr, err := tpm2.Create{ParentHandle: srkAuth(srk), InPublic: tpm2.New2B(signDecrypt)}.Execute(s)
	srk.Close(s)
	if err != nil {
		return nil, fmt.Errorf("create a sign and decrypt key: %w", err)
	}
	d.decrypt = cr.OutPublic.Bytes()

	rsaSRK, err := tpm.LoadSRK(s, tpm2.TPMAlgRSA)
	if err != nil {
		return nil, err
	}
	rsaKey, err := tpm.CreateDevID(s, rsaSRK, tpm2.TPMAlgRSA)
	if err != nil {
		rsaSRK.Close(s)
		return nil, err
	}
	rsaKey.Close(s)
	d.rsa = rsaKey.PublicBlob
	small := tpmrules.DevIDTemplateRSA
	small.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme:  tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})},
		KeyBits: 1024,
	})
	cr, err = tpm2.Create{ParentHandle: srkAuth(rsaSRK), InPublic: tpm2.New2B(small)}.Execute(s)
	rsaSRK.Close(s)
	if err != nil {
		return nil, fmt.Errorf("create an RSA-1024 key: %w", err)
	}
	d.rsa1024 = cr.OutPublic.Bytes()

	if d.software, err = loadSoftwareKey(s); err != nil {
		return nil, err
	}

	ek, err := tpm.LoadEK(s, tpmrules.EKECCP256)
	if err != nil {
		return nil, err
	}
	ak, err := tpm.LoadOrCreateAK(s, ek, devidAKHandle)
	if err != nil {
		ek.Close(s)
		return nil, err
	}
	defer testtpm.Evict(s, devidAKHandle)
	otherAK, err := tpm.LoadOrCreateAK(s, ek, devidOtherAKHandle)
	ek.Close(s)
	if err != nil {
		return nil, err
	}
	defer testtpm.Evict(s, devidOtherAKHandle)
	d.ak = ak.Public

	srk, err = tpm.LoadSRK(s, tpm2.TPMAlgECC)
	if err != nil {
		return nil, err
	}
	a, err := tpm.LoadDevID(s, srk, blobA[0], blobA[1])
	srk.Close(s)
	if err != nil {
		return nil, err
	}
	defer a.Close(s)
	certify := func(out *[2][]byte, k *tpm.DevIDKey, by *tpm.AK, nonce []byte) {
		if err == nil {
			out[0], out[1], err = tpm.Certify(s, k, by, nonce)
		}
	}
	certify(&d.certifyA, a, ak, d.nonce)
	certify(&d.otherAK, a, otherAK, d.nonce)
	certify(&d.staleA, a, ak, d.stale)
	if err != nil {
		return nil, err
	}
	if d.notGenerated, err = signNotGenerated(s, ak, d.certifyA[0]); err != nil {
		return nil, err
	}
	bank, err := tpm.ParseBank("sha256")
	if err != nil {
		return nil, err
	}
	if d.quote[0], d.quote[1], err = tpm.Quote(s, ak, bank, []int{0}, d.nonce); err != nil {
		return nil, err
	}
	signer, err := a.Signer(s)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "auth.funlab.casa"}}
	if d.csrA, err = x509.CreateCertificateRequest(rand.Reader, tmpl, signer); err != nil {
		return nil, err
	}
	if d.csrBSignedByA, err = csrNaming(d.csrA, d.a, d.b, signer); err != nil {
		return nil, err
	}
	a.Close(s)

	srk, err = tpm.LoadSRK(s, tpm2.TPMAlgRSA)
	if err != nil {
		return nil, err
	}
	rk, err := tpm.LoadDevID(s, srk, rsaKey.PublicBlob, rsaKey.PrivateBlob)
	srk.Close(s)
	if err != nil {
		return nil, err
	}
	defer rk.Close(s)
	certify(&d.certifyRSA, rk, ak, d.nonce)
	if err != nil {
		return nil, err
	}
	rk.Close(s)
	if hs, err := tpm.TransientHandles(s); err != nil || len(hs) != 0 {
		return nil, fmt.Errorf("transient handles left loaded: %x %v", hs, err)
	}
	return d, nil
}

func srkAuth(srk *tpm.SRK) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
}

// loadSoftwareKey loads a P-256 key made in software, public and private parts, with
// TPM2_LoadExternal: the TPM signs with it, but it was never the TPM's alone.
func loadSoftwareKey(s transport.TPM) ([]byte, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{UserWithAuth: true, NoDA: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: priv.X.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: priv.Y.FillBytes(make([]byte, 32))},
		}),
	}
	sens := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgECC,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: priv.D.FillBytes(make([]byte, 32))}),
	}
	lr, err := tpm2.LoadExternal{InPrivate: tpm2.New2B(sens), InPublic: tpm2.New2B(pub), Hierarchy: tpm2.TPMRHNull}.Execute(s)
	if err != nil {
		return nil, fmt.Errorf("LoadExternal: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: lr.ObjectHandle}.Execute(s)
	rp, err := tpm2.ReadPublic{ObjectHandle: lr.ObjectHandle}.Execute(s)
	if err != nil {
		return nil, err
	}
	return rp.OutPublic.Bytes(), nil
}

// signNotGenerated clears the magic of a TPMS_ATTEST and has the AK sign it: TPM2_Hash
// gives a ticket for data that does not start with TPM_GENERATED_VALUE, and a restricted
// key signs a digest with such a ticket.
func signNotGenerated(s transport.TPM, ak *tpm.AK, attest []byte) ([2][]byte, error) {
	forged := slices.Clone(attest)
	copy(forged, []byte{0, 0, 0, 0})
	h, err := tpm2.Hash{Data: tpm2.TPM2BMaxBuffer{Buffer: forged}, HashAlg: tpm2.TPMAlgSHA256, Hierarchy: tpm2.TPMRHOwner}.Execute(s)
	if err != nil {
		return [2][]byte{}, err
	}
	sig, err := tpm2.Sign{
		KeyHandle:  ak.AuthHandle(),
		Digest:     h.OutHash,
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: h.Validation,
	}.Execute(s)
	if err != nil {
		return [2][]byte{}, err
	}
	return [2][]byte{forged, tpm2.Marshal(sig.Signature)}, nil
}

// csrNaming returns csr (ECDSA with SHA-256) with the key from in its request info
// replaced by the key of out, signed by signer. x509.CreateCertificateRequest checks its
// own signature, so such a CSR is put together here.
func csrNaming(csr, in, out []byte, signer crypto.Signer) ([]byte, error) {
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, err
	}
	spki := func(pub []byte) []byte {
		return must(x509.MarshalPKIXPublicKey(must(tpm2.Pub(*must(tpm2.Unmarshal[tpm2.TPMTPublic](pub))))))
	}
	from, to := spki(in), spki(out)
	if len(from) != len(to) || bytes.Count(parsed.RawTBSCertificateRequest, from) != 1 {
		return nil, errors.New("csrNaming: the keys are not interchangeable in place")
	}
	tbs := bytes.Replace(parsed.RawTBSCertificateRequest, from, to, 1)
	digest := sha256.Sum256(tbs)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Info      asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{
		asn1.RawValue{FullBytes: tbs},
		pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, // ecdsa-with-SHA256
		asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}

func loadDevIDData(t testing.TB) *devidData {
	t.Helper()
	d, err := devidRecording()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// name is the TPM name of a public area, in hex.
func devidName(pub []byte) string {
	n, err := tpm2.ObjectName(must(tpm2.Unmarshal[tpm2.TPMTPublic](pub)))
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(n.Buffer)
}

// keyID is how the CSR checks name a key.
func devidKeyID(pub []byte) string {
	der := must(x509.MarshalPKIXPublicKey(must(tpm2.Pub(*must(tpm2.Unmarshal[tpm2.TPMTPublic](pub))))))
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// changed returns pub with f applied, marshalled.
func devidChanged(pub []byte, f func(*tpm2.TPMTPublic)) []byte {
	p := must(tpm2.Unmarshal[tpm2.TPMTPublic](pub))
	f(p)
	return tpm2.Marshal(*p)
}

func devidExpand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

func checkDevIDRejection(t *testing.T, name string, err error, check, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v", name, err)
	case want == "":
	case err == nil:
		t.Errorf("%s: accepted, want %s", name, want)
	case err.Error() != want:
		t.Errorf("%s: error\n%s\nwant\n%s", name, err, want)
	case verify.FailedCheck(err) != check:
		t.Errorf("%s: check %q, want %q", name, verify.FailedCheck(err), check)
	}
}

func TestCheckDevIDPublic(t *testing.T) {
	d := loadDevIDData(t)
	noOrigin := devidChanged(d.a, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false })
	bn := devidChanged(d.a, func(p *tpm2.TPMTPublic) {
		e := must(p.Parameters.ECCDetail())
		e.CurveID = tpm2.TPMECCBNP256
		p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, e)
	})
	sha1 := devidChanged(d.a, func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 })
	akPub := tpm2.Marshal(d.ak)
	const outside = ": a key made outside the TPM or able to leave it is no device identity"
	for _, c := range []struct {
		name, check, err string
		pub              []byte
	}{
		{name: "ECC DevID", pub: d.a},
		{name: "RSA DevID", pub: d.rsa},
		{name: "software key (LoadExternal)", pub: d.software, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID key attributes 0x00040440 lack [fixedTPM fixedParent sensitiveDataOrigin]" + outside + " (devid_name=" + devidName(d.software) + ")"},
		{name: "key not generated in the TPM", pub: noOrigin, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID key attributes 0x00040452 lack [sensitiveDataOrigin]" + outside + " (devid_name=" + devidName(noOrigin) + ")"},
		{name: "restricted key (the AK)", pub: akPub, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID key attributes 0x00050472 lack [not restricted] (devid_name=" + devidName(akPub) + ")"},
		{name: "decrypt key", pub: d.decrypt, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID key attributes 0x00060472 lack [not decrypt] (devid_name=" + devidName(d.decrypt) + ")"},
		{name: "SRK", pub: d.srk, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID key attributes 0x00030472 lack [sign not restricted not decrypt] (devid_name=" + devidName(d.srk) + ")"},
		{name: "RSA-1024", pub: d.rsa1024, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID RSA key is 1024 bits, want at least 2048 (devid_name=" + devidName(d.rsa1024) + ")"},
		{name: "BN curve", pub: bn, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID curve 0x0010, want NIST P-256 or P-384 (devid_name=" + devidName(bn) + ")"},
		{name: "SHA-1 name", pub: sha1, check: verify.CheckWeakHash,
			err: "verify: weak_hash: DevID name algorithm is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions"},
		{name: "trailing byte", pub: append(slices.Clone(d.a), 0), check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID public area: not in canonical TPM encoding (trailing or extra bytes)"},
		{name: "empty", pub: nil, check: verify.CheckDevIDAttributes,
			err: "verify: devid_attributes: DevID public area: unmarshalling field 1 of struct of type 'tpm2.TPMTPublic', EOF"},
	} {
		pub, key, err := verify.CheckDevIDPublic(c.pub)
		checkDevIDRejection(t, c.name, err, c.check, c.err)
		if err == nil {
			want := must(tpm2.Pub(*must(tpm2.Unmarshal[tpm2.TPMTPublic](c.pub))))
			if pub == nil || !key.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
				t.Errorf("%s: returned %v, %v", c.name, pub, key)
			}
		} else if pub != nil || key != nil {
			t.Errorf("%s: returned a key with an error", c.name)
		}
	}
}

func TestVerifyCertify(t *testing.T) {
	d := loadDevIDData(t)
	devidAsAK := must(tpm2.Unmarshal[tpm2.TPMTPublic](d.a))
	flipped := slices.Clone(d.certifyA[1])
	flipped[len(flipped)-1] ^= 1
	vars := map[string]string{
		"{nonce}": hex.EncodeToString(d.nonce), "{stale}": hex.EncodeToString(d.stale),
		"{a}": devidName(d.a), "{b}": devidName(d.b),
	}
	for _, c := range []struct {
		name        string
		ak          *tpm2.TPMTPublic
		certify     [2][]byte
		nonce, pub  []byte
		check, want string
	}{
		{name: "ECC DevID", certify: d.certifyA, pub: d.a},
		{name: "RSA DevID", certify: d.certifyRSA, pub: d.rsa},
		{name: "signed by another AK", certify: d.otherAK, pub: d.a, check: verify.CheckCertify,
			want: "verify: devid_certify: bad Certify signature: not made by this AK"},
		{name: "stale nonce", certify: d.staleA, pub: d.a, check: verify.CheckCertifyNonce,
			want: "verify: devid_certify_nonce: Certify qualifying data {stale} is not the nonce {nonce} (a replayed Certify?)"},
		{name: "about another key", certify: d.certifyA, pub: d.b, check: verify.CheckCertifyKey,
			want: "verify: devid_certify_key: Certify is about the key named {a}, not the DevID key {b}"},
		{name: "not TPM-generated", certify: d.notGenerated, pub: d.a, check: verify.CheckCertify,
			want: "verify: devid_certify: Certify magic 0x00000000 is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate"},
		{name: "a quote", certify: d.quote, pub: d.a, check: verify.CheckCertify,
			want: "verify: devid_certify: attestation type 0x8018 is not a Certify (TPM_ST_ATTEST_CERTIFY 0x8017)"},
		{name: "flipped signature", certify: [2][]byte{d.certifyA[0], flipped}, pub: d.a, check: verify.CheckCertify,
			want: "verify: devid_certify: bad Certify signature: not made by this AK"},
		{name: "trailing byte", certify: [2][]byte{append(slices.Clone(d.certifyA[0]), 0), d.certifyA[1]}, pub: d.a, check: verify.CheckCertify,
			want: "verify: devid_certify: Certify attestation: not in canonical TPM encoding (trailing or extra bytes)"},
		{name: "DevID public area with a trailing byte", certify: d.certifyA, pub: append(slices.Clone(d.a), 0), check: verify.CheckCertifyKey,
			want: "verify: devid_certify_key: DevID public area: not in canonical TPM encoding (trailing or extra bytes)"},
		{name: "signer is not an AK", ak: devidAsAK, certify: d.certifyA, pub: d.a, check: verify.CheckAKAttributes,
			want: "verify: ak_attributes: AK attributes lack [restricted]"},
		{name: "short nonce", certify: d.certifyA, nonce: d.nonce[:8], pub: d.a,
			want: "verify: Certify nonce is 8 bytes, want at least 16: the verifier must draw a fresh one"},
	} {
		ak, nonce := &d.ak, d.nonce
		if c.ak != nil {
			ak = c.ak
		}
		if c.nonce != nil {
			nonce = c.nonce
		}
		err := verify.VerifyCertify(ak, c.certify[0], c.certify[1], nonce, c.pub)
		checkDevIDRejection(t, c.name, err, c.check, devidExpand(c.want, vars))
	}
}

func TestCheckCSR(t *testing.T) {
	d := loadDevIDData(t)
	a := must(tpm2.Pub(*must(tpm2.Unmarshal[tpm2.TPMTPublic](d.a))))
	b := must(tpm2.Pub(*must(tpm2.Unmarshal[tpm2.TPMTPublic](d.b))))
	sw := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	weak := must(x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA1}, sw))
	vars := map[string]string{"{a}": devidKeyID(d.a), "{b}": devidKeyID(d.b)}
	for _, c := range []struct {
		name        string
		csr         []byte
		devid       crypto.PublicKey
		check, want string
	}{
		{name: "signed by the DevID key", csr: d.csrA, devid: a},
		{name: "signed by another key", csr: d.csrBSignedByA, devid: b, check: verify.CheckCSRSignature,
			want: "verify: devid_csr: CSR signature does not verify with the key it names ({b}): x509: ECDSA verification failure"},
		{name: "for another key", csr: d.csrA, devid: b, check: verify.CheckCSRKey,
			want: "verify: devid_csr_key: CSR is for key {a}, not the DevID key {b}"},
		{name: "SHA-1", csr: weak, devid: &sw.PublicKey, check: verify.CheckWeakHash,
			want: "verify: weak_hash: CSR signature algorithm ECDSA-SHA1, want SHA-256 or stronger with RSA or ECDSA"},
		{name: "truncated", csr: []byte{0x30}, devid: a, check: verify.CheckCSRSignature,
			want: "verify: devid_csr: CSR: asn1: syntax error: truncated tag or length"},
	} {
		csr, err := verify.CheckCSR(c.csr, c.devid)
		checkDevIDRejection(t, c.name, err, c.check, devidExpand(c.want, vars))
		if err == nil && csr == nil || err != nil && csr != nil {
			t.Errorf("%s: CSR %v with error %v", c.name, csr, err)
		}
	}
	if _, err := verify.CheckCSR(d.csrA, nil); err == nil || err.Error() != "verify: DevID key: x509: unsupported public key type: <nil>" {
		t.Errorf("CheckCSR without a DevID key: %v", err)
	}
}
