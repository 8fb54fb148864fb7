package verify_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// attestPCRs is the selection the verifier requires in these tests, and the prover's.
var attestPCRs = []int{0, 2, 4, 7}

// Fixed serial numbers of the EK certificates the tests issue, so that rejections can be
// compared whole.
var (
	serialHonest  = big.NewInt(0x5E1)
	serialUnknown = big.NewInt(0xBAD)
	serialExpired = big.NewInt(0xE0)
)

// attestEnv is one simulated TPM with its prover, another TPM's Hello, and the values the
// expected messages name.
type attestEnv struct {
	t       *testing.T
	sim     transport.TPM
	p       *testattest.Prover
	ca      *mfgca.CA
	unknown *mfgca.CA // a manufacturer the verifier does not trust
	other   *protocol.Hello
	now     time.Time
	vars    map[string]string
	// In DevID mode (newAttestEnv with cfg.DevID): the DevID CA, and another TPM's Certify
	// of its DevID key (other holds its DevID chain and public area).
	devidCA      *testattest.DevIDCA
	otherCertify [2][]byte
	// extraAK is a key a case loaded in the TPM to use as the AK (flushed by the case).
	extraAK *tpm.AK
}

func openSimulator() (transport.TPMCloser, error) { return tpm.Open(tpm.Simulator) }

// newAttestEnv opens the simulator for the whole test; tests that call it must not be
// parallel (one simulator per process).
func newAttestEnv(t *testing.T, cfg testattest.Config) *attestEnv {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	// Long-lived CAs, as a real manufacturer's: an expired EK certificate is then
	// expired on its own account.
	ca := must(mfgca.NewEphemeral("omens attest test",
		mfgca.WithRootValidity(now.Add(-20*year), now.Add(30*year)),
		mfgca.WithIntermediateValidity(now.Add(-10*year), now.Add(20*year))))
	unknown := must(mfgca.NewEphemeral("omens unknown manufacturer"))
	cfg.CA = ca
	if cfg.Cert.Serial == nil {
		cfg.Cert.Serial = serialHonest
	}
	// Another TPM: a simulator opened and closed before this one, with other seeds.
	otherCfg := testattest.Config{CA: ca}
	if cfg.DevID != 0 {
		if cfg.DevIDCA == nil {
			cfg.DevIDCA = must(testattest.NewDevIDCA("omens test DevID"))
		}
		if cfg.DevIDCert.Serial == nil {
			cfg.DevIDCert.Serial = serialDevID
		}
		otherCfg.DevID, otherCfg.DevIDCA, otherCfg.DevIDCert = cfg.DevID, cfg.DevIDCA, testattest.DevIDTemplate{Serial: serialOtherDevID}
	}
	rec, err := testattest.RecordOther(openSimulator, otherCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := rec.Hello
	sim, err := openSimulator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	// PCRs as a measured boot leaves them: not all zero.
	for _, pcr := range []int{0, 4, 7} {
		if err := tpm.ExtendPCR(sim, pcr, []byte("omens attest test boot component")); err != nil {
			t.Fatal(err)
		}
	}
	p, err := testattest.New(sim, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if hs, err := tpm.TransientHandles(sim); err != nil || len(hs) != 0 {
			t.Errorf("transient handles left loaded: %x %v", hs, err)
		}
	})
	otherKey := must(tpm2.Unmarshal[tpm2.TPMTPublic](other.EKPublic))
	e := &attestEnv{t: t, sim: sim, p: p, ca: ca, unknown: unknown, other: other, now: now, devidCA: cfg.DevIDCA,
		otherCertify: [2][]byte{rec.Certify, rec.CertifySignature}}
	e.vars = map[string]string{
		"{ek_hash}":       p.EKHash(),
		"{other_ek_hash}": must(verify.EKHash(must(tpm2.Pub(*otherKey)))),
		"{now}":           now.Format(time.RFC3339),
	}
	if p.DevID != nil {
		e.vars["{devid_name}"] = devidName(p.DevID.PublicBlob)
		e.vars["{other_devid_name}"] = devidName(other.DevIDPublic)
		e.vars["{devid_key}"] = devidKeyID(p.DevID.PublicBlob)
		e.vars["{other_devid_key}"] = devidKeyID(other.DevIDPublic)
		e.vars["{ak_name}"] = hex.EncodeToString(p.AK.Name.Buffer)
	}
	if e.vars["{ek_hash}"] == e.vars["{other_ek_hash}"] {
		t.Fatal("the other simulated TPM has the same EK: the simulator did not re-seed")
	}
	return e
}

// verifier is the verifier of the env's mode: in DevID mode it trusts the DevID CA and
// checks revocation in an empty CRL of it.
func (e *attestEnv) verifier(policy func(*verify.EKPolicy)) *verify.Verifier {
	v := &verify.Verifier{
		EK:      verify.EKPolicy{Bundle: e.p.Bundle()},
		PCRBank: tpm2.TPMAlgSHA256,
		PCRs:    attestPCRs,
		Now:     func() time.Time { return e.now },
	}
	if e.devidCA != nil {
		v.Mode = protocol.ModeDevID
		crl := e.crl(e.devidCA)
		v.DevID = verify.DevIDPolicy{Bundle: e.devidCA.Bundle(), CRL: func() (*x509.RevocationList, error) { return crl, nil }}
	}
	if policy != nil {
		policy(&v.EK)
	}
	return v
}

func (e *attestEnv) hello(o testattest.HelloOptions) []byte {
	e.t.Helper()
	b, err := e.p.Hello(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// issue has ca certify pub with serial.
func (e *attestEnv) issue(ca *mfgca.CA, pub any, tmpl mfgca.EKTemplate) []byte {
	e.t.Helper()
	der, err := ca.IssueEK(pub, tmpl)
	if err != nil {
		e.t.Fatal(err)
	}
	return der
}

// akPublic returns the prover's AK public area changed by f, marshalled.
func (e *attestEnv) akPublic(f func(*tpm2.TPMTPublic)) []byte {
	pub := e.p.AK.Public
	f(&pub)
	return tpm2.Marshal(pub)
}

// priorEvidence runs a complete honest attestation and returns its evidence, for replays.
func (e *attestEnv) priorEvidence(vars map[string]string) []byte {
	e.t.Helper()
	_, ch, err := e.verifier(nil).Begin(e.hello(testattest.HelloOptions{}))
	if err != nil {
		e.t.Fatal(err)
	}
	vars["{stale_nonce}"] = hex.EncodeToString(ch.Nonce)
	ev, err := e.p.Evidence(ch, testattest.EvidenceOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

type attestCase struct {
	name   string
	policy func(e *attestEnv, p *verify.EKPolicy)
	// hello is the agent's first message; nil sends an honest one.
	hello func(e *attestEnv) []byte
	// evidence answers the challenge; nil answers honestly. It may add values to vars.
	evidence func(e *attestEnv, ch *protocol.Challenge, vars map[string]string) []byte
	// check and err are the rejection expected, err with {placeholders}; both empty
	// when the attestation is accepted.
	check, err string
	// certStatus and warnings are what an accepted attestation reports.
	certStatus string
	warnings   []string
	// verifier changes the verifier last.
	verifier func(e *attestEnv, v *verify.Verifier)
	// devidSerial is the DevID certificate serial an accepted DevID attestation reports.
	devidSerial *big.Int
}

func opts(o testattest.HelloOptions) func(e *attestEnv) []byte {
	return func(e *attestEnv) []byte { return e.hello(o) }
}

func answer(o testattest.EvidenceOptions) func(*attestEnv, *protocol.Challenge, map[string]string) []byte {
	return func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
		e.t.Helper()
		b, err := e.p.Evidence(ch, o)
		if err != nil {
			e.t.Fatal(err)
		}
		return b
	}
}

func allow(e *attestEnv, p *verify.EKPolicy) { p.Allow = map[string]bool{e.p.EKHash(): true} }

const untrustedReason = `verify: certificate not trusted: issuer "CN=omens unknown manufacturer EK Intermediate CA,O=omens" (serial 0xbad) does not chain to the CA bundle: x509: certificate signed by unknown authority (ek_hash={ek_hash})`

// ekCases are the decisions on the EK: certificate chain, certificate key, allowlist,
// denylist, allow_insecure, expiry.
var ekCases = []attestCase{
	{
		name:       "valid certificate",
		certStatus: "valid",
	},
	{
		name: "certificate from an unknown manufacturer CA",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{EKCert: e.issue(e.unknown, e.p.EKPublicKey(), mfgca.EKTemplate{Serial: serialUnknown})})
		},
		check: verify.CheckEKCertificate,
		err:   "verify: ek_certificate: " + untrustedReason,
	},
	{
		name:  "valid certificate of another TPM's EK",
		hello: func(e *attestEnv) []byte { return e.hello(testattest.HelloOptions{EKCert: e.other.EKCert}) },
		check: verify.CheckEKKeyMatch,
		err:   "verify: ek_key_match: verify: certificate public key does not match the EK (cert key sha256 {other_ek_hash}, EK sha256 {ek_hash}) (ek_hash={ek_hash})",
	},
	{
		name:   "valid certificate of another TPM's EK, EK allow-listed",
		policy: allow,
		hello:  func(e *attestEnv) []byte { return e.hello(testattest.HelloOptions{EKCert: e.other.EKCert}) },
		check:  verify.CheckEKKeyMatch,
		err:    "verify: ek_key_match: verify: certificate public key does not match the EK (cert key sha256 {other_ek_hash}, EK sha256 {ek_hash}) (ek_hash={ek_hash})",
	},
	{
		name:   "valid certificate of another TPM's EK under allow_insecure",
		policy: func(_ *attestEnv, p *verify.EKPolicy) { p.AllowInsecure = true },
		hello:  func(e *attestEnv) []byte { return e.hello(testattest.HelloOptions{EKCert: e.other.EKCert}) },
		check:  verify.CheckEKKeyMatch,
		err:    "verify: ek_key_match: verify: certificate public key does not match the EK (cert key sha256 {other_ek_hash}, EK sha256 {ek_hash}) (ek_hash={ek_hash})",
	},
	{
		name:  "another TPM's EK public area with this TPM's certificate",
		hello: func(e *attestEnv) []byte { return e.hello(testattest.HelloOptions{EKPublic: e.other.EKPublic}) },
		check: verify.CheckEKKeyMatch,
		err:   "verify: ek_key_match: verify: certificate public key does not match the EK (cert key sha256 {ek_hash}, EK sha256 {other_ek_hash}) (ek_hash={other_ek_hash})",
	},
	{
		name:  "no certificate, not allow-listed",
		hello: opts(testattest.HelloOptions{NoEKCert: true}),
		check: verify.CheckEKAllowlist,
		err:   "verify: ek_allowlist: TPM sent no EK certificate and EK {ek_hash} is not allow-listed",
	},
	{
		name:       "no certificate, allow-listed",
		policy:     allow,
		hello:      opts(testattest.HelloOptions{NoEKCert: true}),
		certStatus: "none",
	},
	{
		name:       "untrusted certificate, allow-listed",
		policy:     allow,
		hello:      func(e *attestEnv) []byte { return ekCaseHelloUnknownCA(e) },
		certStatus: "none",
		warnings:   []string{"EK certificate did not verify, EK accepted by the allowlist: verify: ek_certificate: " + untrustedReason},
	},
	{
		name:   "EK of another type than the one served",
		policy: func(_ *attestEnv, p *verify.EKPolicy) { p.Type = tpmrules.EKTypeECCP256 },
		check:  verify.CheckEKType,
		err:    `verify: ek_type: EK type RSA-2048 is not the one this server accepts, ECC-P256 (ek_hash={ek_hash}): each EK of a TPM is another agent ID, so one type is served; set the agent's ek_type = "ECC-P256"`,
	},
	{
		name:       "EK of the type served",
		policy:     func(_ *attestEnv, p *verify.EKPolicy) { p.Type = tpmrules.EKTypeRSA2048 },
		certStatus: "valid",
	},
	{
		name:   "deny-listed EK with a valid certificate",
		policy: func(e *attestEnv, p *verify.EKPolicy) { p.Deny = map[string]bool{e.p.EKHash(): true} },
		check:  verify.CheckEKDenylist,
		err:    "verify: ek_denylist: EK {ek_hash} is deny-listed",
	},
	{
		name: "deny-listed EK, also allow-listed, under allow_insecure",
		policy: func(e *attestEnv, p *verify.EKPolicy) {
			allow(e, p)
			p.Deny, p.AllowInsecure = map[string]bool{e.p.EKHash(): true}, true
		},
		hello: opts(testattest.HelloOptions{NoEKCert: true}),
		check: verify.CheckEKDenylist,
		err:   "verify: ek_denylist: EK {ek_hash} is deny-listed",
	},
	{
		name:       "no certificate under allow_insecure",
		policy:     func(_ *attestEnv, p *verify.EKPolicy) { p.AllowInsecure = true },
		hello:      opts(testattest.HelloOptions{NoEKCert: true}),
		certStatus: "none",
		warnings:   []string{"TPM has no EK certificate, accepted by allow_insecure"},
	},
	{
		name:       "untrusted certificate under allow_insecure",
		policy:     func(_ *attestEnv, p *verify.EKPolicy) { p.AllowInsecure = true },
		hello:      func(e *attestEnv) []byte { return ekCaseHelloUnknownCA(e) },
		certStatus: "insecure",
		warnings:   []string{"EK certificate did not verify, accepted by allow_insecure: verify: ek_certificate: " + untrustedReason},
	},
	{
		name:   "certificate without a CA bundle",
		policy: func(_ *attestEnv, p *verify.EKPolicy) { p.Bundle = nil },
		check:  verify.CheckEKCertificate,
		err:    "verify: ek_certificate: no manufacturer CA bundle is configured (ca_path) to verify the EK certificate (ek_hash={ek_hash})",
	},
	{
		name:   "require cert and allow: valid certificate, not allow-listed",
		policy: func(_ *attestEnv, p *verify.EKPolicy) { p.RequireCertAndAllow = true },
		check:  verify.CheckEKAllowlist,
		err:    "verify: ek_allowlist: EK {ek_hash} has a valid certificate but is not allow-listed; both are required",
	},
	{
		name:   "require cert and allow: allow-listed, no certificate",
		policy: func(e *attestEnv, p *verify.EKPolicy) { allow(e, p); p.RequireCertAndAllow = true },
		hello:  opts(testattest.HelloOptions{NoEKCert: true}),
		check:  verify.CheckEKCertificate,
		err:    "verify: ek_certificate: no EK certificate (ek_hash={ek_hash}); both a valid certificate and an allow-listed hash are required",
	},
	{
		name:   "require cert and allow: allow-listed, untrusted certificate",
		policy: func(e *attestEnv, p *verify.EKPolicy) { allow(e, p); p.RequireCertAndAllow = true },
		hello:  func(e *attestEnv) []byte { return ekCaseHelloUnknownCA(e) },
		check:  verify.CheckEKCertificate,
		err:    "verify: ek_certificate: " + untrustedReason,
	},
	{
		name: "require cert and allow: allow_insecure does not lift it",
		policy: func(_ *attestEnv, p *verify.EKPolicy) {
			p.RequireCertAndAllow, p.AllowInsecure = true, true
		},
		hello: opts(testattest.HelloOptions{NoEKCert: true}),
		check: verify.CheckEKCertificate,
		err:   "verify: ek_certificate: no EK certificate (ek_hash={ek_hash}); both a valid certificate and an allow-listed hash are required",
	},
	{
		name:       "require cert and allow: both",
		policy:     func(e *attestEnv, p *verify.EKPolicy) { allow(e, p); p.RequireCertAndAllow = true },
		certStatus: "valid",
	},
	{
		name:  "expired certificate",
		hello: func(e *attestEnv) []byte { return ekCaseHelloExpired(e) },
		check: verify.CheckEKExpired,
		err:   "verify: ek_cert_expired: verify: certificate expired: EK certificate serial 0xe0: notAfter {expired} is before the verification time {now} (the chain is otherwise trusted) (ek_hash={ek_hash}); expired_ek_cert = \"warn\" accepts it with the selector ek_cert:expired",
	},
	{
		name:       "expired certificate under expired_ek_cert = warn",
		policy:     func(_ *attestEnv, p *verify.EKPolicy) { p.Expired = verify.ExpiredWarn },
		hello:      func(e *attestEnv) []byte { return ekCaseHelloExpired(e) },
		certStatus: "expired",
		warnings:   []string{`EK certificate expired on {expired}, accepted by expired_ek_cert = "warn"`},
	},
	{
		name: "EK public area of a signing key",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{EKPublic: tpm2.Marshal(e.p.AK.Public)})
		},
		check: verify.CheckEKPublic,
		err:   "verify: ek_public: not an endorsement key: want a restricted decryption key fixed to its TPM",
	},
	{
		name: "EK public area with a trailing byte",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{EKPublic: append(tpm2.Marshal(e.p.EK.Public), 0)})
		},
		check: verify.CheckEKPublic,
		err:   "verify: ek_public: EK public area: not in canonical TPM encoding (trailing or extra bytes)",
	},
}

func ekCaseHelloUnknownCA(e *attestEnv) []byte {
	return e.hello(testattest.HelloOptions{EKCert: e.issue(e.unknown, e.p.EKPublicKey(), mfgca.EKTemplate{Serial: serialUnknown})})
}

func ekCaseHelloExpired(e *attestEnv) []byte {
	notAfter := e.now.Add(-30 * 24 * time.Hour)
	e.vars["{expired}"] = notAfter.Format(time.RFC3339)
	return e.hello(testattest.HelloOptions{EKCert: e.issue(e.ca, e.p.EKPublicKey(),
		mfgca.EKTemplate{Serial: serialExpired, NotBefore: e.now.Add(-2 * year), NotAfter: notAfter})})
}

// akCases announce AKs that are not restricted signing keys fixed to the TPM.
var akCases = []attestCase{
	{
		name: "software key loaded with TPM2_LoadExternal (not fixedTPM)",
		hello: func(e *attestEnv) []byte {
			ak, _, err := e.p.LoadSoftwareAK()
			if err != nil {
				e.t.Fatal(err)
			}
			defer ak.Close(e.sim)
			return e.hello(testattest.HelloOptions{AK: ak})
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK attributes lack [fixedTPM fixedParent sensitiveDataOrigin restricted]",
	},
	{
		name: "unrestricted signing key of the TPM",
		hello: func(e *attestEnv) []byte {
			tmpl := tpmrules.AKTemplate
			tmpl.ObjectAttributes.Restricted = false
			return e.helloWithKey(tmpl)
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK attributes lack [restricted]",
	},
	{
		name: "decrypt set",
		hello: func(e *attestEnv) []byte {
			return e.helloAK(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true })
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK attributes lack [not decrypt]",
	},
	{
		name: "ECDSA with SHA-384, made by the TPM",
		hello: func(e *attestEnv) []byte {
			tmpl := tpmrules.AKTemplate
			tmpl.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Scheme: tpm2.TPMTECCScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA384}),
				},
				CurveID: tpm2.TPMECCNistP256,
			})
			return e.helloWithKey(tmpl)
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK ECDSA scheme hash is not SHA-256",
	},
	{
		name: "ECDAA scheme",
		hello: func(e *attestEnv) []byte {
			return e.helloAK(func(p *tpm2.TPMTPublic) {
				p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
					Scheme: tpm2.TPMTECCScheme{
						Scheme:  tpm2.TPMAlgECDAA,
						Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDAA, &tpm2.TPMSSchemeECDAA{HashAlg: tpm2.TPMAlgSHA256}),
					},
					CurveID: tpm2.TPMECCNistP256,
				})
			})
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK scheme 0x001A, want ECDSA",
	},
	{
		name:  "SHA-1 name algorithm",
		hello: func(e *attestEnv) []byte { return e.helloAK(func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 }) },
		check: verify.CheckWeakHash,
		err:   "verify: weak_hash: AK name algorithm is SHA-1 (0x0004), want SHA-256 or stronger: SHA-1 admits chosen-prefix collisions",
	},
	{
		name: "keyed-hash object",
		hello: func(e *attestEnv) []byte {
			return e.helloAK(func(p *tpm2.TPMTPublic) {
				p.Type = tpm2.TPMAlgKeyedHash
				p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
					Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
				})
				p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: make([]byte, 32)})
			})
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK type 0x0008, want RSA or ECC",
	},
	{
		name: "AK public area with a trailing byte",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{AKPublic: append(tpm2.Marshal(e.p.AK.Public), 0)})
		},
		check: verify.CheckAKAttributes,
		err:   "verify: ak_attributes: AK public area: not in canonical TPM encoding (trailing or extra bytes)",
	},
}

// helloAK sends the prover's AK public area changed by f.
func (e *attestEnv) helloAK(f func(*tpm2.TPMTPublic)) []byte {
	return e.hello(testattest.HelloOptions{AKPublic: e.akPublic(f)})
}

// helloWithKey has the TPM create a key of tmpl under the EK and announces it as the AK.
func (e *attestEnv) helloWithKey(tmpl tpm2.TPMTPublic) []byte {
	e.t.Helper()
	k, err := e.p.CreateKey(tmpl)
	if err != nil {
		e.t.Fatal(err)
	}
	defer k.Close(e.sim)
	return e.hello(testattest.HelloOptions{AK: k})
}

// evidenceCases answer the challenge wrongly.
var evidenceCases = []attestCase{
	{
		name: "AK of another TPM: the credential cannot be activated",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{AKPublic: e.other.AKPublic})
		},
		evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
			// The TPM refuses: the credential is bound to a name none of its keys has.
			if _, err := e.p.Activate(ch, nil); err == nil {
				e.t.Fatal("ActivateCredential succeeded for another TPM's AK")
			}
			return answer(testattest.EvidenceOptions{WrongSecret: true})(e, ch, nil)
		},
		check: verify.CheckCredential,
		err:   "verify: credential_activation: activated secret is wrong: the AK is not in the TPM that holds this EK (ek_hash={ek_hash})",
	},
	{
		name:     "secret truncated",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.Secret = ev.Secret[:16] }}),
		check:    verify.CheckCredential,
		err:      "verify: credential_activation: activated secret is wrong: the AK is not in the TPM that holds this EK (ek_hash={ek_hash})",
	},
	{
		name:     "quote signature with a byte changed",
		evidence: answer(testattest.EvidenceOptions{FlipSignature: true}),
		check:    verify.CheckQuoteSignature,
		err:      "verify: quote_signature: bad quote signature: not made by this AK (ek_hash={ek_hash})",
	},
	{
		name:     "quote with a byte changed",
		evidence: answer(testattest.EvidenceOptions{FlipQuote: true}),
		check:    verify.CheckQuoteSignature,
		err:      "verify: quote_signature: bad quote signature: not made by this AK (ek_hash={ek_hash})",
	},
	{
		name:     "quote not generated by the TPM, signed by the AK through TPM2_Sign",
		evidence: answer(testattest.EvidenceOptions{NotTPMGenerated: true}),
		check:    verify.CheckQuoteSignature,
		err:      "verify: quote_signature: quote magic 0x00544347 is not TPM_GENERATED_VALUE: the AK signed data the TPM did not generate (ek_hash={ek_hash})",
	},
	{
		name:     "signature truncated",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.Signature = ev.Signature[:len(ev.Signature)-1] }}),
		check:    verify.CheckQuoteSignature,
		err:      "verify: quote_signature: signature: truncated: a field at byte 40 needs 32 bytes, 31 are left",
	},
	{
		name:     "quote with a trailing byte",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.Quote = append(ev.Quote, 0) }}),
		check:    verify.CheckQuoteSignature,
		err:      "verify: quote_signature: quote: not in canonical TPM encoding (trailing or extra bytes)",
	},
	{
		name: "quote of a previous attestation replayed",
		evidence: func(e *attestEnv, ch *protocol.Challenge, vars map[string]string) []byte {
			return answer(testattest.EvidenceOptions{Replay: e.priorEvidence(vars)})(e, ch, nil)
		},
		check: verify.CheckQuoteNonce,
		err:   "verify: quote_nonce: quote qualifying data {stale_nonce} is not this attestation's nonce {nonce} (a replayed quote?)",
	},
	{
		name:     "quote with an empty nonce",
		evidence: answer(testattest.EvidenceOptions{Nonce: []byte{}}),
		check:    verify.CheckQuoteNonce,
		err:      "verify: quote_nonce: quote qualifying data  is not this attestation's nonce {nonce} (a replayed quote?)",
	},
	{
		name:     "quote over PCRs 0-7 when 0,2,4,7 are required",
		evidence: answer(testattest.EvidenceOptions{QuotePCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}}),
		check:    verify.CheckQuoteSelection,
		err:      "verify: quote_selection: quote covers sha256 [0 1 2 3 4 5 6 7], want sha256 [0 2 4 7]",
	},
	{
		name:     "quote over PCRs 0,2,4 when 0,2,4,7 are required",
		evidence: answer(testattest.EvidenceOptions{QuotePCRs: []int{0, 2, 4}}),
		check:    verify.CheckQuoteSelection,
		err:      "verify: quote_selection: quote covers sha256 [0 2 4], want sha256 [0 2 4 7]",
	},
	{
		name: "a PCR value changed",
		evidence: func(e *attestEnv, ch *protocol.Challenge, vars map[string]string) []byte {
			b := answer(testattest.EvidenceOptions{ChangePCRValue: true})(e, ch, nil)
			ev := must(protocol.DecodeEvidence(b))
			sum := sha256.Sum256(bytes.Join(ev.PCRValues, nil))
			quoted := must(must(tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote)).Attested.Quote())
			vars["{sum}"], vars["{quoted}"] = hex.EncodeToString(sum[:]), hex.EncodeToString(quoted.PCRDigest.Buffer)
			return b
		},
		check: verify.CheckPCRDigest,
		err:   "verify: pcr_digest: PCR values hash to {sum}, the quote says {quoted}",
	},
	{
		name:     "a PCR value missing",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.PCRValues = ev.PCRValues[:3] }}),
		check:    verify.CheckPCRDigest,
		err:      "verify: pcr_digest: 3 PCR values for 4 quoted PCRs",
	},
	{
		name:     "a PCR value of the wrong size",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) { ev.PCRValues[2] = ev.PCRValues[2][:20] }}),
		check:    verify.CheckPCRDigest,
		err:      "verify: pcr_digest: PCR 4 value is 20 bytes, want 32 for sha256",
	},
}

// protocolCases send what is not a well-formed message in its place.
var protocolCases = []attestCase{
	{
		name:  "hello truncated",
		hello: func(e *attestEnv) []byte { b := e.hello(testattest.HelloOptions{}); return b[:len(b)/2] },
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: hello: unexpected end of JSON input",
	},
	{
		name: "hello oversized",
		hello: func(e *attestEnv) []byte {
			return append(e.hello(testattest.HelloOptions{}), bytes.Repeat([]byte(" "), protocol.MaxMessageSize)...)
		},
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: hello is {oversized_hello} bytes, limit 1572864",
	},
	{
		name:  "hello with an EK certificate over the field limit",
		hello: opts(testattest.HelloOptions{EKCert: make([]byte, 8<<10+1)}),
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: hello: ek_cert is 8193 bytes, limit 8192",
	},
	{
		name:  "unknown protocol version",
		hello: opts(testattest.HelloOptions{Version: 2}),
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: unknown protocol version 2 (this side speaks 1)",
	},
	{
		name: "unknown field",
		hello: func(e *attestEnv) []byte {
			b := e.hello(testattest.HelloOptions{})
			return append(b[:len(b)-1], []byte(`,"ek_cert_url":"http://example.com/ek.cer"}`)...)
		},
		check: verify.CheckProtocol,
		err:   `verify: protocol: protocol: malformed message: hello: json: unknown field "ek_cert_url"`,
	},
	{
		name:  "data after the hello",
		hello: func(e *attestEnv) []byte { return append(e.hello(testattest.HelloOptions{}), []byte(`{}`)...) },
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: hello: invalid character '{' after top-level value",
	},
	{
		name:  "evidence sent as the first message",
		hello: func(e *attestEnv) []byte { return e.priorEvidence(map[string]string{}) },
		check: verify.CheckProtocol,
		err:   `verify: protocol: protocol: malformed message: message out of order: got "evidence", want "hello"`,
	},
	{
		name:  "DevID mode without a DevID",
		hello: opts(testattest.HelloOptions{Mode: protocol.ModeDevID}),
		check: verify.CheckProtocol,
		err:   `verify: protocol: protocol: malformed message: hello: 0 DevID certificates, want 1 to 8 in mode "devid"`,
	},
	{
		name:  "PCR selection differs from the server's",
		hello: opts(testattest.HelloOptions{PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}}),
		check: verify.CheckPCRSelection,
		err:   "verify: pcr_selection: agent selects sha256 [0 1 2 3 4 5 6 7], server requires sha256 [0 2 4 7] (set pcr_bank and pcr_selection alike on both sides)",
	},
	{
		name:  "PCR bank differs from the server's",
		hello: opts(testattest.HelloOptions{PCRBank: "sha1"}),
		check: verify.CheckPCRSelection,
		err:   "verify: pcr_selection: agent selects sha1 [0 2 4 7], server requires sha256 [0 2 4 7] (set pcr_bank and pcr_selection alike on both sides)",
	},
	{
		name:  "unknown PCR bank",
		hello: opts(testattest.HelloOptions{PCRBank: "md5"}),
		check: verify.CheckPCRSelection,
		err:   `verify: pcr_selection: unknown PCR bank "md5" (want sha1, sha256 or sha384)`,
	},
	{
		name: "evidence truncated",
		evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
			return answer(testattest.EvidenceOptions{})(e, ch, nil)[:100]
		},
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: evidence: unexpected end of JSON input",
	},
	{
		name: "evidence oversized",
		evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
			return append(answer(testattest.EvidenceOptions{})(e, ch, nil), bytes.Repeat([]byte("\n"), protocol.MaxMessageSize)...)
		},
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: evidence is {oversized_evidence} bytes, limit 1572864",
	},
	{
		name: "hello sent in place of the evidence",
		evidence: func(e *attestEnv, _ *protocol.Challenge, _ map[string]string) []byte {
			return e.hello(testattest.HelloOptions{})
		},
		check: verify.CheckProtocol,
		err:   `verify: protocol: protocol: malformed message: message out of order: got "hello", want "evidence"`,
	},
	{
		name: "evidence of another version",
		evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
			return []byte(`{"v":0,"type":"evidence"}`)
		},
		check: verify.CheckProtocol,
		err:   "verify: protocol: protocol: malformed message: unknown protocol version 0 (this side speaks 1)",
	},
}

func TestAttest(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{})
	groups := []struct {
		name  string
		cases []attestCase
	}{{"ek", ekCases}, {"ak", akCases}, {"evidence", evidenceCases}, {"protocol", protocolCases}}
	for _, g := range groups {
		for _, tc := range g.cases {
			t.Run(g.name+"/"+tc.name, func(t *testing.T) { runAttestCase(t, e, tc) })
		}
	}
}

func runAttestCase(t *testing.T, e *attestEnv, tc attestCase) {
	e.t = t
	vars := map[string]string{}
	var policy func(*verify.EKPolicy)
	if tc.policy != nil {
		policy = func(p *verify.EKPolicy) { tc.policy(e, p) }
	}
	v := e.verifier(policy)
	if tc.verifier != nil {
		tc.verifier(e, v)
	}
	hello := e.hello(testattest.HelloOptions{})
	if tc.hello != nil {
		hello = tc.hello(e)
	}
	vars["{oversized_hello}"] = itoa(len(hello))
	expand := func(s string) string {
		for k, val := range e.vars {
			s = strings.ReplaceAll(s, k, val)
		}
		for k, val := range vars {
			s = strings.ReplaceAll(s, k, val)
		}
		return s
	}
	wantErr := func(err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("accepted; want rejection %q", expand(tc.err))
		}
		if got, want := err.Error(), expand(tc.err); got != want {
			t.Errorf("error:\n got  %s\n want %s", got, want)
		}
		if got := verify.FailedCheck(err); got != tc.check {
			t.Errorf("FailedCheck = %q, want %q", got, tc.check)
		}
		var ce *verify.CheckError
		if !errors.As(err, &ce) {
			t.Errorf("error %T is not a *verify.CheckError", err)
		}
	}

	s, ch, err := v.Begin(hello)
	if err != nil {
		if s != nil || ch != nil {
			t.Errorf("Begin returned a session or a challenge with its error")
		}
		wantErr(err)
		return
	}
	vars["{nonce}"] = hex.EncodeToString(ch.Nonce)
	var evidence []byte
	if tc.evidence != nil {
		evidence = tc.evidence(e, ch, vars)
	} else {
		evidence = answer(testattest.EvidenceOptions{})(e, ch, nil)
	}
	vars["{oversized_evidence}"] = itoa(len(evidence))
	res, err := s.Finish(evidence)
	if tc.err != "" {
		if res != nil {
			t.Errorf("Finish returned a result with its error")
		}
		wantErr(err)
		// The session is spent: honest evidence cannot follow a rejected one (nor the
		// same evidence, when the TPM cannot make honest evidence for this Hello).
		honest, err := e.p.Evidence(ch, testattest.EvidenceOptions{})
		if err != nil {
			honest = evidence
		}
		if res, err := s.Finish(honest); res != nil || verify.FailedCheck(err) != verify.CheckProtocol {
			t.Errorf("Finish after a rejection = %v, %v; want the session refused", res, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("rejected: %v", err)
	}
	if res.EKHash != e.p.EKHash() {
		t.Errorf("EKHash = %s, want %s", res.EKHash, e.p.EKHash())
	}
	if res.CertStatus != tc.certStatus {
		t.Errorf("CertStatus = %q, want %q", res.CertStatus, tc.certStatus)
	}
	var want []string
	for _, w := range tc.warnings {
		want = append(want, expand(w))
	}
	if !slices.Equal(res.Warnings, want) {
		t.Errorf("Warnings:\n got  %q\n want %q", res.Warnings, want)
	}
	if (res.EKCert != nil) != (tc.certStatus == "valid" || tc.certStatus == "expired") {
		t.Errorf("EKCert = %v with CertStatus %q", res.EKCert, res.CertStatus)
	}
	if res.Mode != v.Mode && !(v.Mode == "" && res.Mode == protocol.ModeEKCert) {
		t.Errorf("Mode = %q, verifier's %q", res.Mode, v.Mode)
	}
	switch {
	case res.Mode == protocol.ModeDevID && (res.DevID == nil || res.DevID.Cert.SerialNumber.Cmp(tc.devidSerial) != 0 ||
		!bytes.Equal(res.DevID.Public, e.p.DevID.PublicBlob) || len(res.DevID.Chain) != 3):
		t.Errorf("DevID = %+v, want the certificate of serial %v, the prover's DevID key, a chain of 3", res.DevID, tc.devidSerial)
	case res.Mode == protocol.ModeEKCert && res.DevID != nil:
		t.Errorf("DevID = %+v in mode ek_cert", res.DevID)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestAttestHonest runs honest attestations with each EK kind and checks what the
// verifier learned against what the TPM holds.
func TestAttestHonest(t *testing.T) {
	now := time.Now()
	ca := must(mfgca.NewEphemeral("omens attest honest"))
	sim, err := openSimulator()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if err := tpm.ExtendPCR(sim, 7, []byte("secure boot state")); err != nil {
		t.Fatal(err)
	}
	for _, kind := range tpmrules.EKKinds {
		t.Run(kind.Name, func(t *testing.T) {
			p, err := testattest.New(sim, testattest.Config{CA: ca, EKKind: kind})
			if err != nil {
				t.Fatal(err)
			}
			v := &verify.Verifier{
				EK:      verify.EKPolicy{Bundle: p.Bundle()},
				PCRBank: tpm2.TPMAlgSHA256,
				PCRs:    attestPCRs,
				Now:     func() time.Time { return now },
			}
			hello := must(p.Hello(testattest.HelloOptions{}))
			s, ch, err := v.Begin(hello)
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.Nonce) != 32 {
				t.Errorf("nonce is %d bytes, want 32", len(ch.Nonce))
			}
			// The challenge travels as bytes.
			ch = must(protocol.DecodeChallenge(must(protocol.Encode(ch))))
			res, err := s.Finish(must(p.Evidence(ch, testattest.EvidenceOptions{})))
			if err != nil {
				t.Fatal(err)
			}
			wantHash := must(verify.EKHash(p.EKPublicKey()))
			if res.EKHash != wantHash {
				t.Errorf("EKHash = %s, want %s", res.EKHash, wantHash)
			}
			if !p.EKPublicKey().(interface{ Equal(crypto.PublicKey) bool }).Equal(res.EKPublicKey) {
				t.Errorf("EKPublicKey is not the EK's")
			}
			if res.CertStatus != "valid" || res.EKCert == nil || len(res.Warnings) != 0 {
				t.Errorf("CertStatus %q, EKCert %v, Warnings %q; want valid, the certificate, none", res.CertStatus, res.EKCert != nil, res.Warnings)
			}
			if res.EKCert != nil && res.EKCert.TPM.Model != mfgca.DefaultModel {
				t.Errorf("EK certificate TPM model %q, want %q", res.EKCert.TPM.Model, mfgca.DefaultModel)
			}
			if res.TPM != p.Props || res.TPM.Manufacturer != "MSFT" {
				t.Errorf("TPM properties %+v, want %+v (manufacturer MSFT)", res.TPM, p.Props)
			}
			pcrs := must(tpm.ReadPCRs(sim, p.Bank, attestPCRs))
			if len(res.PCRs) != len(pcrs) {
				t.Errorf("%d PCRs in the result, want %d", len(res.PCRs), len(pcrs))
			}
			for i, val := range pcrs {
				if !bytes.Equal(res.PCRs[i], val) {
					t.Errorf("PCR %d = %x, TPM says %x", i, res.PCRs[i], val)
				}
			}
			if res.PCRBank != "sha256" || res.EventLog != nil {
				t.Errorf("PCRBank %q, EventLog %v", res.PCRBank, res.EventLog)
			}
			if bytes.Equal(res.PCRs[7], make([]byte, 32)) {
				t.Errorf("PCR 7 is zero after an extend")
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if hs, err := tpm.TransientHandles(sim); err != nil || len(hs) != 0 {
				t.Errorf("transient handles left loaded: %x %v", hs, err)
			}
		})
	}
}

// TestFinishTwice sends the honest evidence twice to the same session.
func TestFinishTwice(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{})
	s, ch, err := e.verifier(nil).Begin(e.hello(testattest.HelloOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	ev := must(e.p.Evidence(ch, testattest.EvidenceOptions{}))
	if _, err := s.Finish(ev); err != nil {
		t.Fatal(err)
	}
	res, err := s.Finish(ev)
	const want = "verify: protocol: message out of order: this attestation already received its evidence"
	if res != nil || err == nil || err.Error() != want || verify.FailedCheck(err) != verify.CheckProtocol {
		t.Errorf("second Finish = %v, %v; want %q", res, err, want)
	}
	// The same evidence in a new session, with a new nonce and secret, is refused too.
	s2, _, err := e.verifier(nil).Begin(e.hello(testattest.HelloOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s2.Finish(ev); res != nil || verify.FailedCheck(err) != verify.CheckCredential {
		t.Errorf("evidence replayed into a new session = %v, %v; want a credential_activation rejection", res, err)
	}
}

// TestEKTypeNames: the verifier names each EK template of the prover by the name the
// agent's ek_type uses, so that the server's ek_type and the agent's cannot drift.
func TestEKTypeNames(t *testing.T) {
	for _, kind := range tpmrules.EKKinds {
		if got := tpmrules.EKType(&kind.Template); got != kind.Name {
			t.Errorf("EKType(%s template) = %q", kind.Name, got)
		}
	}
}
