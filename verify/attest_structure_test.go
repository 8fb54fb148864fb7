package verify_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// rsaAKTemplate is a restricted RSA 2048 signing key of scheme (RSASSA or RSAPSS) with
// hash, as tpm2_createak -G rsa -s rsassa -g sha1 makes it.
func rsaAKTemplate(scheme tpm2.TPMAlgID, hash tpm2.TPMIAlgHash) tpm2.TPMTPublic {
	tmpl := tpmrules.AKTemplate
	tmpl.Type = tpm2.TPMAlgRSA
	details := tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: hash})
	if scheme == tpm2.TPMAlgRSAPSS {
		details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: hash})
	}
	tmpl.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme:  tpm2.TPMTRSAScheme{Scheme: scheme, Details: details},
		KeyBits: 2048,
	})
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	return tmpl
}

// withKey has the TPM create a key of tmpl under the EK for one case, announced as the
// AK and used to activate the credential and quote.
func withKey(tmpl tpm2.TPMTPublic) (func(*attestEnv) []byte, func(*attestEnv, *protocol.Challenge, map[string]string) []byte) {
	var k *tpm.AK
	hello := func(e *attestEnv) []byte {
		e.t.Helper()
		var err error
		if k, err = e.p.CreateKey(tmpl); err != nil {
			e.t.Fatal(err)
		}
		key := k
		e.t.Cleanup(func() { key.Close(e.sim) })
		return e.hello(testattest.HelloOptions{AK: k})
	}
	evidence := func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
		return answer(testattest.EvidenceOptions{AK: k})(e, ch, nil)
	}
	return hello, evidence
}

// mutateQuote changes the TPM's quote without signing it again: the structure checks come
// before the signature's.
func mutateQuote(f func(a *tpm2.TPMSAttest)) testattest.EvidenceOptions {
	return testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
		a := must(tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote))
		f(a)
		ev.Quote = tpm2.Marshal(a)
	}}
}

// hashCases are signatures and names of a hash weaker than SHA-256 (weak_hash), and AKs
// of a strong one that still pass.
var hashCases = []attestCase{
	func() attestCase {
		h, ev := withKey(rsaAKTemplate(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA1))
		return attestCase{name: "RSA AK with RSASSA SHA-1, made by the TPM", hello: h, evidence: ev, check: verify.CheckWeakHash,
			err: "verify: weak_hash: AK RSASSA scheme hash is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions"}
	}(),
	func() attestCase {
		h, ev := withKey(rsaAKTemplate(tpm2.TPMAlgRSAPSS, tpm2.TPMAlgSHA1))
		return attestCase{name: "RSA AK with RSAPSS SHA-1, made by the TPM", hello: h, evidence: ev, check: verify.CheckWeakHash,
			err: "verify: weak_hash: AK RSAPSS scheme hash is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions"}
	}(),
	func() attestCase {
		h, ev := withKey(rsaAKTemplate(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256))
		return attestCase{name: "RSA AK with RSASSA SHA-256, made by the TPM", hello: h, evidence: ev, certStatus: "valid"}
	}(),
	func() attestCase {
		h, ev := withKey(rsaAKTemplate(tpm2.TPMAlgRSAPSS, tpm2.TPMAlgSHA384))
		return attestCase{name: "RSA AK with RSAPSS SHA-384, made by the TPM", hello: h, evidence: ev, certStatus: "valid"}
	}(),
	{
		name: "ECDSA AK with SHA-1",
		hello: func(e *attestEnv) []byte {
			return e.helloAK(func(p *tpm2.TPMTPublic) {
				p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
					Scheme: tpm2.TPMTECCScheme{
						Scheme:  tpm2.TPMAlgECDSA,
						Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA1}),
					},
					CurveID: tpm2.TPMECCNistP256,
				})
			})
		},
		check: verify.CheckWeakHash,
		err:   "verify: weak_hash: AK ECDSA scheme hash is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions",
	},
	{
		name: "RSA AK with RSASSA of no hash",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{AKPublic: tpm2.Marshal(rsaAKTemplate(tpm2.TPMAlgRSASSA, tpm2.TPMAlgNull))})
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK RSASSA scheme hash is TPM_ALG_NULL (0x0010), want SHA-256, SHA-384 or SHA-512",
	},
	{
		name: "quote signature that says SHA-1",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
			sig := must(tpm2.Unmarshal[tpm2.TPMTSignature](ev.Signature))
			e := must(sig.Signature.ECDSA())
			e.Hash = tpm2.TPMAlgSHA1
			sig.Signature = tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, e)
			ev.Signature = tpm2.Marshal(sig)
		}}),
		check: verify.CheckWeakHash,
		err:   "verify: weak_hash: quote signature hash is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions",
	},
}

// structureCases are quotes whose TPMS_ATTEST fields hold what no TPM puts there.
var structureCases = []attestCase{
	{
		name:     "qualifiedSigner longer than a name",
		evidence: answer(mutateQuote(func(a *tpm2.TPMSAttest) { a.QualifiedSigner.Buffer = make([]byte, 1000) })),
		check:    verify.CheckQuoteStructure,
		err:      "verify: quote_structure: quote: qualifiedSigner is 1000 bytes, more than a TPM2B_NAME holds (66)",
	},
	{
		name: "qualifiedSigner of SHA-1",
		evidence: answer(mutateQuote(func(a *tpm2.TPMSAttest) {
			a.QualifiedSigner.Buffer = append([]byte{0x00, 0x04}, make([]byte, 20)...)
		})),
		check: verify.CheckQuoteStructure,
		err:   "verify: quote_structure: quote: qualifiedSigner starts with SHA-1 (0x0004), want the name algorithm SHA-256 (0x000B)",
	},
	{
		name: "qualifiedSigner with room for a collision block",
		evidence: answer(mutateQuote(func(a *tpm2.TPMSAttest) {
			a.QualifiedSigner.Buffer = append(a.QualifiedSigner.Buffer, bytes.Repeat([]byte{0xCC}, 30)...)
		})),
		check: verify.CheckQuoteStructure,
		err:   "verify: quote_structure: quote: qualifiedSigner is 64 bytes, want 34 (a SHA-256 (0x000B) name)",
	},
	{
		name:     "empty qualifiedSigner",
		evidence: answer(mutateQuote(func(a *tpm2.TPMSAttest) { a.QualifiedSigner.Buffer = nil })),
		check:    verify.CheckQuoteStructure,
		err:      "verify: quote_structure: quote: qualifiedSigner starts with nothing, want the name algorithm SHA-256 (0x000B)",
	},
	{
		name:     "extraData longer than the nonce, quoted by the TPM",
		evidence: answer(testattest.EvidenceOptions{Nonce: bytes.Repeat([]byte{0x42}, 48)}),
		check:    verify.CheckQuoteStructure,
		err:      "verify: quote_structure: quote: extraData is 48 bytes, longer than the 32-byte nonce",
	},
	{
		name: "PCR digest of 20 bytes",
		evidence: answer(mutateQuote(func(a *tpm2.TPMSAttest) {
			q := must(a.Attested.Quote())
			q.PCRDigest.Buffer = q.PCRDigest.Buffer[:20]
			a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, q)
		})),
		check: verify.CheckQuoteStructure,
		err:   "verify: quote_structure: quote: PCR digest is 20 bytes, want 32 (the size of the AK's signing hash, Part 3, 18.4.1)",
	},
	{
		name: "clockInfo.safe neither YES nor NO",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
			a := must(tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote))
			// magic, type, qualifiedSigner, extraData, clock, resetCount, restartCount
			safe := 4 + 2 + 2 + len(a.QualifiedSigner.Buffer) + 2 + len(a.ExtraData.Buffer) + 8 + 4 + 4
			ev.Quote[safe] = 2
		}}),
		check: verify.CheckQuoteSignature,
		err:   "verify: quote_signature: quote: not in canonical TPM encoding (trailing or extra bytes)",
	},
	{
		name: "AK not a child of the EK: a primary key of the endorsement hierarchy",
		hello: func(e *attestEnv) []byte {
			ak := primaryAK(e)
			e.vars["{primary_qn}"] = hex.EncodeToString(qualified(tpm2.TPMAlgSHA256, binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHEndorsement)), ak.Name.Buffer))
			ekQN := qualified(tpm2.TPMAlgSHA256, binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHEndorsement)), e.p.EK.Name.Buffer)
			e.vars["{child_qn}"] = hex.EncodeToString(qualified(tpm2.TPMAlgSHA256, ekQN, ak.Name.Buffer))
			return e.hello(testattest.HelloOptions{AK: ak})
		},
		evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
			return answer(testattest.EvidenceOptions{AK: e.extraAK})(e, ch, nil)
		},
		check: verify.CheckQuoteStructure,
		err:   "verify: quote_structure: quote: qualifiedSigner {primary_qn} is not {child_qn}, the qualified name of this AK as a child of this EK (TPM 2.0 Part 1, 16; create the AK under the EK)",
	},
}

// primaryAK creates an AK as a primary key of the endorsement hierarchy (not a child of
// the EK): the TPM activates credentials for it and quotes with it, but its qualified
// name is not that of a child of the EK. It is flushed at the end of the case.
func primaryAK(e *attestEnv) *tpm.AK {
	e.t.Helper()
	r, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tpmrules.AKTemplate)}.Execute(e.sim)
	if err != nil {
		e.t.Fatal(err)
	}
	pub := must(r.OutPublic.Contents())
	ak := &tpm.AK{Handle: r.ObjectHandle, Name: r.Name, Public: *pub}
	e.t.Cleanup(func() { ak.Close(e.sim) })
	e.extraAK = ak
	return ak
}

// qualified is alg || H_alg(parent || name) with SHA-256, written out apart from the
// verifier's code (TPM 2.0 Part 1, 16).
func qualified(alg tpm2.TPMIAlgHash, parent, name []byte) []byte {
	if alg != tpm2.TPMAlgSHA256 {
		panic("qualified: SHA-256 only")
	}
	sum := sha256.Sum256(append(append([]byte{}, parent...), name...))
	return append([]byte{0x00, 0x0B}, sum[:]...)
}

// lyingFirmware sends a Hello whose firmware claim is claim.
func lyingFirmware(claim string) func(e *attestEnv) []byte {
	return func(e *attestEnv) []byte {
		honest := e.p.Props
		defer func() { e.p.Props = honest }()
		e.p.Props.Firmware = claim
		var parts [4]uint64
		if _, err := fmt.Sscanf(honest.Firmware, "%d.%d.%d.%d", &parts[0], &parts[1], &parts[2], &parts[3]); err != nil {
			e.t.Fatal(err)
		}
		e.vars["{firmware}"] = honest.Firmware
		e.vars["{firmware_hex}"] = fmt.Sprintf("%016X", parts[0]<<48|parts[1]<<32|parts[2]<<16|parts[3])
		return e.hello(testattest.HelloOptions{})
	}
}

// firmwareCases: the Hello's firmware claim against the one the TPM signs in the quote.
var firmwareCases = []attestCase{
	{
		name:  "hello claims another firmware",
		hello: lyingFirmware("7.85.4555.0"),
		check: verify.CheckFirmware,
		err:   `verify: firmware_mismatch: the hello claims firmware "7.85.4555.0", the TPM signed firmware "{firmware}" in the quote (TPMS_ATTEST.firmwareVersion 0x{firmware_hex})`,
	},
	{
		name:  "hello claims no firmware",
		hello: lyingFirmware(""),
		check: verify.CheckFirmware,
		err:   `verify: firmware_mismatch: the hello claims firmware "", the TPM signed firmware "{firmware}" in the quote (TPMS_ATTEST.firmwareVersion 0x{firmware_hex})`,
	},
}

// TestAttestFirmwareFromQuote: an accepted attestation reports the firmware the TPM signed.
func TestAttestFirmwareFromQuote(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{})
	s, ch, err := e.verifier(nil).Begin(e.hello(testattest.HelloOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Finish(must(e.p.Evidence(ch, testattest.EvidenceOptions{})))
	if err != nil {
		t.Fatal(err)
	}
	info := must(tpm.ReadInfo(e.sim))
	if res.Firmware != info.FirmwareVersion || res.Firmware == "" {
		t.Errorf("Result.Firmware = %q, the TPM reports %q", res.Firmware, info.FirmwareVersion)
	}
}

func TestAttestHashesAndStructure(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{})
	for _, g := range []struct {
		name  string
		cases []attestCase
	}{{"hash", hashCases}, {"structure", structureCases}, {"firmware", firmwareCases}} {
		for _, tc := range g.cases {
			t.Run(g.name+"/"+tc.name, func(t *testing.T) { runAttestCase(t, e, tc) })
		}
	}
}
