package verify_test

// One test per published verifier vulnerability of the quote family, each played on the
// simulator by an agent that holds a genuine TPM, with the exact rejection.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// honestValues returns the PCR values of the required selection, in its order, as an
// agent that wants them believed sends them.
func honestValues(e *attestEnv) [][]byte {
	e.t.Helper()
	vals := must(tpm.ReadPCRs(e.sim, e.p.Bank, attestPCRs))
	var out [][]byte
	for _, i := range attestPCRs {
		out = append(out, vals[i])
	}
	return out
}

// runCVE runs the cases of one vulnerability and checks, beyond the error, that Finish
// returned no result.
func runCVE(t *testing.T, cases []attestCase) {
	e := newAttestEnv(t, testattest.Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runAttestCase(t, e, tc) })
	}
}

// TestCVE_2022_0317_QuoteOverPartialSelection: go-attestation before 0.4.0 believed PCR
// values the quote did not cover. A quote over none or only some of the required PCRs is
// refused, whatever values come with it.
func TestCVE_2022_0317_QuoteOverPartialSelection(t *testing.T) {
	runCVE(t, []attestCase{
		{
			name: "quote over no PCRs, values of all four sent",
			evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
				vals := honestValues(e)
				return answer(testattest.EvidenceOptions{QuotePCRs: []int{}, Mutate: func(ev *protocol.Evidence) { ev.PCRValues = vals }})(e, ch, nil)
			},
			check: verify.CheckQuoteSelection,
			err:   "verify: quote_selection: quote covers no PCRs, want sha256 [0 2 4 7]",
		},
		{
			name: "quote over PCR 0 only, values of all four sent",
			evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
				vals := honestValues(e)
				return answer(testattest.EvidenceOptions{QuotePCRs: []int{0}, Mutate: func(ev *protocol.Evidence) { ev.PCRValues = vals }})(e, ch, nil)
			},
			check: verify.CheckQuoteSelection,
			err:   "verify: quote_selection: quote covers sha256 [0], want sha256 [0 2 4 7]",
		},
		{
			name: "quote over PCRs 0, 2 and 4 without 7 (Secure Boot)",
			evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
				vals := honestValues(e)
				return answer(testattest.EvidenceOptions{QuotePCRs: []int{0, 2, 4}, Mutate: func(ev *protocol.Evidence) { ev.PCRValues = vals }})(e, ch, nil)
			},
			check: verify.CheckQuoteSelection,
			err:   "verify: quote_selection: quote covers sha256 [0 2 4], want sha256 [0 2 4 7]",
		},
	})
}

// forgeMagic replaces the magic of the TPM's quote, applies change, and has the AK sign
// the result through TPM2_Hash and TPM2_Sign, which a restricted key allows for data not
// starting with TPM_GENERATED_VALUE: the quote then says whatever its author wants.
func forgeMagic(e *attestEnv, magic tpm2.TPMGenerated, change func(*tpm2.TPMSAttest)) testattest.EvidenceOptions {
	return testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
		a := must(tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote))
		a.Magic = magic
		change(a)
		s := must(signExternal(e, tpm2.Marshal(a)))
		ev.Quote, ev.Signature = s[0], s[1]
	}}
}

// signExternal has the AK sign data that does not start with TPM_GENERATED_VALUE.
func signExternal(e *attestEnv, data []byte) ([2][]byte, error) {
	h, err := tpm2.Hash{Data: tpm2.TPM2BMaxBuffer{Buffer: data}, HashAlg: tpm2.TPMAlgSHA256, Hierarchy: tpm2.TPMRHOwner}.Execute(e.sim)
	if err != nil {
		return [2][]byte{}, err
	}
	sig, err := tpm2.Sign{KeyHandle: e.p.AK.AuthHandle(), Digest: h.OutHash, InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}, Validation: h.Validation}.Execute(e.sim)
	if err != nil {
		return [2][]byte{}, err
	}
	return [2][]byte{data, tpm2.Marshal(sig.Signature)}, nil
}

// TestCVE_2024_29038_QuoteMagicNotChecked: tpm2_checkquote (tpm2-tools before 5.7) did
// not check that the quote starts with TPM_GENERATED_VALUE, so a structure the AK signed
// through TPM2_Sign passed as a quote.
func TestCVE_2024_29038_QuoteMagicNotChecked(t *testing.T) {
	runCVE(t, []attestCase{
		{
			name:     "quote signed through TPM2_Sign (magic 0x00544347)",
			evidence: answer(testattest.EvidenceOptions{NotTPMGenerated: true}),
			check:    verify.CheckQuoteSignature,
			err:      "verify: quote_signature: quote magic 0x00544347 is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate (ek_hash={ek_hash})",
		},
	})
}

// TestCVE_2024_29040_AttestMagicNotChecked: the tpm2-tss FAPI (before 4.1) rebuilt
// TPMS_ATTEST from JSON without checking its magic. Each forged magic, with a PCR digest
// the forger chose, is refused.
func TestCVE_2024_29040_AttestMagicNotChecked(t *testing.T) {
	// Recorded on the simulator before runCVE opens it (one simulator per process).
	d := loadDevIDData(t)
	chosen := sha256.Sum256([]byte("the boot state the forger wants believed"))
	var cases []attestCase
	for _, m := range []struct {
		magic tpm2.TPMGenerated
		err   string
	}{
		{0x00000000, "verify: quote_signature: quote magic 0x00000000 is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate (ek_hash={ek_hash})"},
		{0xFF544346, "verify: quote_signature: quote magic 0xFF544346 is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate (ek_hash={ek_hash})"},
		{0x474354FF, "verify: quote_signature: quote magic 0x474354FF is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate (ek_hash={ek_hash})"},
	} {
		cases = append(cases, attestCase{
			name: "magic " + hex.EncodeToString([]byte{byte(m.magic >> 24), byte(m.magic >> 16), byte(m.magic >> 8), byte(m.magic)}),
			evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
				return answer(forgeMagic(e, m.magic, func(a *tpm2.TPMSAttest) {
					q := must(a.Attested.Quote())
					q.PCRDigest.Buffer = chosen[:]
					a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, q)
				}))(e, ch, nil)
			},
			check: verify.CheckQuoteSignature,
			err:   m.err,
		})
	}
	runCVE(t, cases)

	// The same for a Certify (DevID mode): the recorded Certify with its magic cleared,
	// signed by the AK through TPM2_Sign.
	err := verify.VerifyCertify(&d.ak, d.notGenerated[0], d.notGenerated[1], d.nonce, d.a)
	checkDevIDRejection(t, "Certify through TPM2_Sign", err, verify.CheckCertify,
		"verify: devid_certify: Certify magic 0x00000000 is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate")
}

// TestCVE_2024_29039_PCRSelectionNotCompared: tpm2_checkquote (tpm2-tools before 5.7)
// took the PCR selection from the PCR file the agent supplied and did not compare it with
// the one the TPM signed. Here the agent supplies only values, in the order of the
// selection the server requires; the signed selection must be that one, and the values
// must hash to the signed digest.
func TestCVE_2024_29039_PCRSelectionNotCompared(t *testing.T) {
	runCVE(t, []attestCase{
		{
			name:     "signed selection sha256 [0 1 2 3], its own values sent",
			evidence: answer(testattest.EvidenceOptions{QuotePCRs: []int{0, 1, 2, 3}}),
			check:    verify.CheckQuoteSelection,
			err:      "verify: quote_selection: quote covers sha256 [0 1 2 3], want sha256 [0 2 4 7]",
		},
		{
			name: "signed selection of the SHA-1 bank, SHA-256 values sent",
			evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
				sha1Bank := must(tpm.ParseBank("sha1"))
				q, sig := must2(tpm.Quote(e.sim, e.p.AK, sha1Bank, attestPCRs, ch.Nonce))
				return answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.Quote, ev.Signature = q, sig }})(e, ch, nil)
			},
			check: verify.CheckQuoteSelection,
			err:   "verify: quote_selection: quote covers sha1 [0 2 4 7], want sha256 [0 2 4 7]",
		},
		{
			name: "signed selection right, values of PCRs 1 3 5 6 sent for it",
			evidence: func(e *attestEnv, ch *protocol.Challenge, vars map[string]string) []byte {
				vals := must(tpm.ReadPCRs(e.sim, e.p.Bank, []int{1, 3, 5, 6}))
				other := [][]byte{vals[1], vals[3], vals[5], vals[6]}
				b := answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.PCRValues = other }})(e, ch, nil)
				ev := must(protocol.DecodeEvidence(b))
				sum := sha256.Sum256(bytes.Join(other, nil))
				vars["{sum}"] = hex.EncodeToString(sum[:])
				vars["{quoted}"] = hex.EncodeToString(must(must(tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote)).Attested.Quote()).PCRDigest.Buffer)
				return b
			},
			check: verify.CheckPCRDigest,
			err:   "verify: pcr_digest: PCR values hash to {sum}, the quote says {quoted}",
		},
	})
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// TestCVE_2023_3674_BadQuoteSignatureRefused: Keylime before 7.5 logged a quote whose
// signature did not verify and went on. Here a bad signature ends the attestation: Finish
// returns no result, only the rejection, and the session cannot be finished again.
func TestCVE_2023_3674_BadQuoteSignatureRefused(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{})
	otherAK := must(e.p.CreateKey(tpmrules.AKTemplate))
	defer otherAK.Close(e.sim)
	for _, c := range []struct {
		name string
		opts func(ch *protocol.Challenge) testattest.EvidenceOptions
	}{
		{"a bit of the signature flipped", func(*protocol.Challenge) testattest.EvidenceOptions {
			return testattest.EvidenceOptions{FlipSignature: true}
		}},
		{"a bit of the quote flipped", func(*protocol.Challenge) testattest.EvidenceOptions {
			return testattest.EvidenceOptions{FlipQuote: true}
		}},
		{"the signature of another AK of the same TPM over its own quote", func(ch *protocol.Challenge) testattest.EvidenceOptions {
			_, sig := must2(tpm.Quote(e.sim, otherAK, e.p.Bank, attestPCRs, ch.Nonce))
			return testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.Signature = sig }}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			s, ch, err := e.verifier(nil).Begin(e.hello(testattest.HelloOptions{}))
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Finish(must(e.p.Evidence(ch, c.opts(ch))))
			want := "verify: quote_signature: bad quote signature: not made by this AK (ek_hash=" + e.p.EKHash() + ")"
			if res != nil {
				t.Errorf("Finish returned a result %+v with a bad signature", res)
			}
			if err == nil || err.Error() != want || verify.FailedCheck(err) != verify.CheckQuoteSignature {
				t.Fatalf("error %v, want %s", err, want)
			}
			// Honest evidence cannot rescue the session.
			res, err = s.Finish(must(e.p.Evidence(ch, testattest.EvidenceOptions{})))
			if res != nil || verify.FailedCheck(err) != verify.CheckProtocol {
				t.Errorf("second Finish = %v, %v; want the session refused", res, err)
			}
		})
	}
}
