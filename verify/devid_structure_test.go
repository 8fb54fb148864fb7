package verify_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/verify"
)

// softwareAK is an RSA key made in Go whose public area claims what an AK is (restricted,
// fixedTPM, ...) with scheme RSASSA of hash: the verifier checks only the public area and
// the signature, so structures signed by it reach every Certify check (what a TPM signs is
// shown with the simulator elsewhere; here the structures are built by hand).
func softwareAK(t *testing.T, hash tpm2.TPMIAlgHash) (*tpm2.TPMTPublic, *rsa.PrivateKey) {
	t.Helper()
	key := rsaKey()
	pub := rsaAKTemplate(tpm2.TPMAlgRSASSA, hash)
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.Bytes()})
	// Exponent 65537 is the TPM default (0 in the structure).
	if key.E != 65537 {
		t.Fatalf("exponent %d", key.E)
	}
	return &pub, key
}

// signRSASSA signs msg with key in RSASSA of hash, as a TPMT_SIGNATURE.
func signRSASSA(t *testing.T, key *rsa.PrivateKey, hash tpm2.TPMIAlgHash, msg []byte) []byte {
	t.Helper()
	var h crypto.Hash
	var digest []byte
	switch hash {
	case tpm2.TPMAlgSHA1:
		s := sha1.Sum(msg)
		h, digest = crypto.SHA1, s[:]
	case tpm2.TPMAlgSHA256:
		s := sha256.Sum256(msg)
		h, digest = crypto.SHA256, s[:]
	}
	sig := must(rsa.SignPKCS1v15(rand.Reader, key, h, digest))
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg:    tpm2.TPMAlgRSASSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{Hash: hash, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}}),
	})
}

// TestVerifyCertifyStructureAndHashes: Certify structures built by hand, with the right
// magic and type, signed by a software key whose public area says AK; every field bounded,
// every hash SHA-256 or stronger.
func TestVerifyCertifyStructureAndHashes(t *testing.T) {
	d := loadDevIDData(t)
	ak, key := softwareAK(t, tpm2.TPMAlgSHA256)
	devidName := must(tpm2.ObjectName(must(tpm2.Unmarshal[tpm2.TPMTPublic](d.a))))
	// The TPM's own Certify of d.a, its signer replaced by the software AK.
	honest := func() *tpm2.TPMSAttest {
		a := must(tpm2.Unmarshal[tpm2.TPMSAttest](d.certifyA[0]))
		a.QualifiedSigner = tpm2.TPM2BName{Buffer: append([]byte{0x00, 0x0B}, bytes.Repeat([]byte{0x11}, 32)...)}
		return a
	}
	withInfo := func(f func(*tpm2.TPMSCertifyInfo)) *tpm2.TPMSAttest {
		a := honest()
		c := must(a.Attested.Certify())
		f(c)
		a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, c)
		return a
	}
	sha1AK, sha1Key := softwareAK(t, tpm2.TPMAlgSHA1)
	for _, c := range []struct {
		name   string
		ak     *tpm2.TPMTPublic
		attest *tpm2.TPMSAttest
		// sign signs the marshalled structure; nil signs with the SHA-256 software AK.
		sign        func([]byte) []byte
		check, want string
	}{
		{name: "honest structure, software AK", attest: honest()},
		{name: "AK of scheme RSASSA SHA-1", ak: sha1AK, attest: honest(), sign: func(b []byte) []byte { return signRSASSA(t, sha1Key, tpm2.TPMAlgSHA1, b) },
			check: verify.CheckWeakHash, want: "verify: weak_hash: AK RSASSA scheme hash is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions"},
		{name: "SHA-1 signature by a SHA-256 AK", attest: honest(), sign: func(b []byte) []byte { return signRSASSA(t, key, tpm2.TPMAlgSHA1, b) },
			check: verify.CheckWeakHash, want: "verify: weak_hash: Certify signature hash is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions"},
		{name: "qualifiedSigner of 300 bytes", attest: func() *tpm2.TPMSAttest {
			a := honest()
			a.QualifiedSigner.Buffer = make([]byte, 300)
			return a
		}(), check: verify.CheckCertifyStructure, want: "verify: devid_certify_structure: Certify: qualifiedSigner is 300 bytes, more than a TPM2B_NAME holds (66)"},
		{name: "extraData longer than the nonce", attest: func() *tpm2.TPMSAttest {
			a := honest()
			a.ExtraData.Buffer = append(a.ExtraData.Buffer, 0)
			return a
		}(), check: verify.CheckCertifyStructure, want: "verify: devid_certify_structure: Certify: extraData is 33 bytes, longer than the 32-byte nonce"},
		{name: "certified name with a collision block", attest: withInfo(func(c *tpm2.TPMSCertifyInfo) {
			c.Name.Buffer = append(c.Name.Buffer, make([]byte, 32)...)
		}), check: verify.CheckCertifyStructure, want: "verify: devid_certify_structure: Certify: certified name is 66 bytes, want 34 (a SHA-256 (0x000B) name)"},
		{name: "certified name of SHA-1", attest: withInfo(func(c *tpm2.TPMSCertifyInfo) {
			c.Name.Buffer = append([]byte{0x00, 0x04}, make([]byte, 20)...)
		}), check: verify.CheckCertifyStructure, want: "verify: devid_certify_structure: Certify: certified name starts with SHA-1 (0x0004), want the name algorithm SHA-256 (0x000B)"},
		{name: "certified qualifiedName too long", attest: withInfo(func(c *tpm2.TPMSCertifyInfo) {
			c.QualifiedName.Buffer = make([]byte, 4000)
		}), check: verify.CheckCertifyStructure, want: "verify: devid_certify_structure: Certify: certified qualifiedName is 4000 bytes, more than a TPM2B_NAME holds (66)"},
		{name: "certified qualifiedName empty", attest: withInfo(func(c *tpm2.TPMSCertifyInfo) {
			c.QualifiedName.Buffer = nil
		}), check: verify.CheckCertifyStructure, want: "verify: devid_certify_structure: Certify: certified qualifiedName starts with nothing, want the name algorithm SHA-256 (0x000B)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := ak
			if c.ak != nil {
				a = c.ak
			}
			msg := tpm2.Marshal(c.attest)
			sig := signRSASSA(t, key, tpm2.TPMAlgSHA256, msg)
			if c.sign != nil {
				sig = c.sign(msg)
			}
			err := verify.VerifyCertify(a, msg, sig, d.nonce, d.a)
			checkDevIDRejection(t, c.name, err, c.check, c.want)
		})
	}
	if got := must(must(tpm2.Unmarshal[tpm2.TPMSAttest](d.certifyA[0])).Attested.Certify()).Name.Buffer; !bytes.Equal(got, devidName.Buffer) {
		t.Fatalf("the recorded Certify is about %x, not d.a %x", got, devidName.Buffer)
	}
}
