package verify_test

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// Fixed serial numbers of the DevID certificates the tests issue.
var (
	serialDevID         = big.NewInt(0xD1)
	serialOtherDevID    = big.NewInt(0xD2)
	serialDevIDRenewed  = big.NewInt(0xD3)
	serialDevIDExpired  = big.NewInt(0xE1)
	serialDevIDUnknown  = big.NewInt(0xBAD1)
	serialDevIDSoftware = big.NewInt(0x50F7)
)

// crl is an empty CRL of ca, current at e.now.
func (e *attestEnv) crl(ca *testattest.DevIDCA, revoked ...x509.RevocationListEntry) *x509.RevocationList {
	e.t.Helper()
	return must(x509.ParseRevocationList(must(ca.CRL(1, e.now.Add(-time.Hour), e.now.Add(24*time.Hour), revoked...))))
}

// withCRL has the verifier check revocation in crl, or fail to get one with err.
func withCRL(crl func(e *attestEnv) *x509.RevocationList, err error) func(*attestEnv, *verify.Verifier) {
	return func(e *attestEnv, v *verify.Verifier) {
		var c *x509.RevocationList
		if crl != nil {
			c = crl(e)
		}
		v.DevID.CRL = func() (*x509.RevocationList, error) { return c, err }
	}
}

// devidIssue has ca certify pub and returns the chain.
func (e *attestEnv) devidIssue(ca *testattest.DevIDCA, pub any, tmpl testattest.DevIDTemplate) [][]byte {
	e.t.Helper()
	chain, err := ca.Issue(pub, tmpl)
	if err != nil {
		e.t.Fatal(err)
	}
	return chain
}

func (e *attestEnv) revokedSince() time.Time { return e.now.Add(-2 * time.Hour) }

const devidIntermediate = `CN=omens test DevID Intermediate CA,O=omens test`

// devidCases are the decisions on the DevID in DevID mode: certificate chain, expiry,
// revocation, certificate key, key attributes, and the AK's Certify of the key.
var devidCases = []attestCase{
	{
		name:        "valid DevID",
		certStatus:  "valid",
		devidSerial: serialDevID,
	},
	{
		name:       "valid DevID, the CRL lists an earlier certificate of the host",
		certStatus: "valid",
		verifier: withCRL(func(e *attestEnv) *x509.RevocationList {
			return e.crl(e.devidCA, x509.RevocationListEntry{SerialNumber: serialDevIDRenewed, RevocationTime: e.revokedSince()})
		}, nil),
		devidSerial: serialDevID,
	},
	{
		name:        "valid DevID, no revocation checking",
		certStatus:  "valid",
		verifier:    func(_ *attestEnv, v *verify.Verifier) { v.DevID.CRL = nil },
		devidSerial: serialDevID,
	},
	{
		name: "DevID certificate from another CA",
		hello: func(e *attestEnv) []byte {
			other := must(testattest.NewDevIDCA("omens unknown DevID"))
			return e.hello(testattest.HelloOptions{DevIDCert: e.devidIssue(other, e.p.DevIDPublicKey(), testattest.DevIDTemplate{Serial: serialDevIDUnknown})})
		},
		check: verify.CheckDevIDCertificate,
		err: `verify: devid_certificate: verify: certificate not trusted: issuer "CN=omens unknown DevID Intermediate CA,O=omens test" (serial 0xbad1) ` +
			`does not chain to the DevID CA bundle: x509: certificate signed by unknown authority`,
	},
	{
		name: "expired DevID certificate",
		hello: func(e *attestEnv) []byte {
			notAfter := e.now.Add(-10 * 24 * time.Hour)
			e.vars["{devid_expired}"] = notAfter.Format(time.RFC3339)
			return e.hello(testattest.HelloOptions{DevIDCert: e.devidIssue(e.devidCA, e.p.DevIDPublicKey(),
				testattest.DevIDTemplate{Serial: serialDevIDExpired, NotBefore: e.now.Add(-100 * 24 * time.Hour), NotAfter: notAfter})})
		},
		check: verify.CheckDevIDExpired,
		err:   "verify: devid_expired: verify: certificate expired: DevID certificate serial 0xe1: notAfter {devid_expired} is before the verification time {now} (the chain is otherwise trusted)",
	},
	{
		name: "revoked DevID certificate",
		verifier: withCRL(func(e *attestEnv) *x509.RevocationList {
			e.vars["{revoked}"] = e.revokedSince().Format(time.RFC3339)
			return e.crl(e.devidCA, x509.RevocationListEntry{SerialNumber: serialDevID, RevocationTime: e.revokedSince()})
		}, nil),
		check: verify.CheckDevIDRevoked,
		err:   "verify: devid_revoked: DevID certificate serial 0xd1 (CN=auth.funlab.casa) is revoked since {revoked}",
	},
	{
		name:  "certificate of another TPM's DevID key",
		hello: func(e *attestEnv) []byte { return e.hello(testattest.HelloOptions{DevIDCert: e.other.DevIDCert}) },
		check: verify.CheckDevIDKeyMatch,
		err:   "verify: devid_key_match: DevID certificate serial 0xd2 (CN=auth.funlab.casa) is for key {other_devid_key}, not the DevID key {devid_key} the agent presented",
	},
	{
		name: "software-importable key with a DevID certificate",
		hello: func(e *attestEnv) []byte {
			pub, key, err := e.p.SoftwareDevIDPublic()
			if err != nil {
				e.t.Fatal(err)
			}
			e.vars["{software_name}"] = devidName(pub)
			return e.hello(testattest.HelloOptions{DevIDPublic: pub,
				DevIDCert: e.devidIssue(e.devidCA, &key.PublicKey, testattest.DevIDTemplate{Serial: serialDevIDSoftware})})
		},
		check: verify.CheckDevIDAttributes,
		err: "verify: devid_attributes: DevID key attributes 0x00040440 lack [fixedTPM fixedParent sensitiveDataOrigin]: " +
			"a key made outside the TPM or able to leave it is no device identity (devid_name={software_name})",
	},
	{
		name: "DevID key of another TPM, certified by that TPM's AK",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{DevIDCert: e.other.DevIDCert, DevIDPublic: e.other.DevIDPublic})
		},
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
			ev.DevIDCertify, ev.DevIDCertifySignature = otherCertify[0], otherCertify[1]
		}}),
		check: verify.CheckCertify,
		err:   "verify: devid_certify: bad Certify signature: not made by this AK",
	},
	{
		name: "DevID key of another TPM, the AK certifies this TPM's DevID key",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{DevIDCert: e.other.DevIDCert, DevIDPublic: e.other.DevIDPublic})
		},
		check: verify.CheckCertifyKey,
		err:   "verify: devid_certify_key: Certify is about the key named {devid_name}, not the DevID key {other_devid_name}",
	},
	{
		name: "the AK certifies itself",
		evidence: func(e *attestEnv, ch *protocol.Challenge, _ map[string]string) []byte {
			ak := &tpm.DevIDKey{Handle: e.p.AK.Handle, Name: e.p.AK.Name}
			return answer(testattest.EvidenceOptions{CertifyKey: ak})(e, ch, nil)
		},
		check: verify.CheckCertifyKey,
		err:   "verify: devid_certify_key: Certify is about the key named {ak_name}, not the DevID key {devid_name}",
	},
	{
		name: "Certify of a previous attestation replayed",
		evidence: func(e *attestEnv, ch *protocol.Challenge, vars map[string]string) []byte {
			prior := must(protocol.DecodeEvidence(e.priorEvidence(vars)))
			return answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
				ev.DevIDCertify, ev.DevIDCertifySignature = prior.DevIDCertify, prior.DevIDCertifySignature
			}})(e, ch, nil)
		},
		check: verify.CheckCertifyNonce,
		err:   "verify: devid_certify_nonce: Certify qualifying data {stale_nonce} is not the nonce {nonce} (a replayed Certify?)",
	},
	{
		name: "Certify over another nonce",
		evidence: func(e *attestEnv, ch *protocol.Challenge, vars map[string]string) []byte {
			vars["{stale_nonce}"] = hex.EncodeToString(make([]byte, 32))
			return answer(testattest.EvidenceOptions{CertifyNonce: make([]byte, 32)})(e, ch, nil)
		},
		check: verify.CheckCertifyNonce,
		err:   "verify: devid_certify_nonce: Certify qualifying data {stale_nonce} is not the nonce {nonce} (a replayed Certify?)",
	},
	{
		name:     "no Certify",
		evidence: answer(testattest.EvidenceOptions{NoCertify: true}),
		check:    verify.CheckCertify,
		err:      `verify: devid_certify: the evidence carries no Certify of the DevID key, which mode "devid" requires`,
	},
	{
		name: "Certify signature with a byte changed",
		evidence: answer(testattest.EvidenceOptions{Mutate: func(ev *protocol.Evidence) {
			ev.DevIDCertifySignature[len(ev.DevIDCertifySignature)-1] ^= 1
		}}),
		check: verify.CheckCertify,
		err:   "verify: devid_certify: bad Certify signature: not made by this AK",
	},
	{
		name:  "DevID certificate that does not parse",
		hello: opts(testattest.HelloOptions{DevIDCert: [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}}}),
		check: verify.CheckDevIDCertificate,
		err:   "verify: devid_certificate: DevID certificate chain[0]: x509: malformed tbs certificate",
	},
	{
		name: "the DevID CA's certificate as the DevID certificate",
		hello: func(e *attestEnv) []byte {
			return e.hello(testattest.HelloOptions{DevIDCert: [][]byte{e.devidCA.Intermediate.Raw}})
		},
		check: verify.CheckDevIDCertificate,
		err:   `verify: devid_certificate: verify: certificate not trusted: serial 0x2 (` + devidIntermediate + `) is a CA certificate (basicConstraints cA=true), not a DevID`,
	},
	{
		name:        "DevID certificate without its intermediate",
		hello:       func(e *attestEnv) []byte { return e.hello(testattest.HelloOptions{DevIDCert: e.p.DevIDCert[:1]}) },
		certStatus:  "valid",
		devidSerial: serialDevID,
	},
	{
		name:     "no DevID CA bundle",
		verifier: func(_ *attestEnv, v *verify.Verifier) { v.DevID.Bundle = nil },
		check:    verify.CheckDevIDCertificate,
		err:      "verify: devid_certificate: no DevID CA bundle is configured (devid_ca_path) to verify DevID certificate serial 0xd1",
	},
	{
		name:     "CRL unavailable",
		verifier: withCRL(nil, errors.New("GET https://ca.funlab.casa/1.0/crl: connection refused")),
		check:    verify.CheckDevIDCRL,
		err:      "verify: devid_crl: no CRL to check DevID certificate serial 0xd1 against: GET https://ca.funlab.casa/1.0/crl: connection refused",
	},
	{
		name: "CRL out of date",
		verifier: withCRL(func(e *attestEnv) *x509.RevocationList {
			this, next := e.now.Add(-48*time.Hour), e.now.Add(-24*time.Hour)
			e.vars["{this}"], e.vars["{next}"] = this.Format(time.RFC3339), next.Format(time.RFC3339)
			return must(x509.ParseRevocationList(must(e.devidCA.CRL(1, this, next))))
		}, nil),
		check: verify.CheckDevIDCRL,
		err:   `verify: devid_crl: the CRL of "` + devidIntermediate + `" (thisUpdate {this}) is out of date: nextUpdate {next} is before {now}`,
	},
	{
		name: "CRL of another CA",
		verifier: withCRL(func(e *attestEnv) *x509.RevocationList {
			return e.crl(must(testattest.NewDevIDCA("omens unknown DevID")))
		}, nil),
		check: verify.CheckDevIDCRL,
		err: `verify: devid_crl: the CRL is issued by "CN=omens unknown DevID Intermediate CA,O=omens test", ` +
			`not by "` + devidIntermediate + `", the issuer of DevID certificate serial 0xd1`,
	},
	{
		name: "CRL signed by another key under the issuer's name",
		verifier: withCRL(func(e *attestEnv) *x509.RevocationList {
			return e.crl(must(testattest.NewDevIDCA("omens test DevID")))
		}, nil),
		check: verify.CheckDevIDCRL,
		err:   `verify: devid_crl: the CRL of "` + devidIntermediate + `" does not verify with the issuer's key: x509: ECDSA verification failure`,
	},
	{
		name:  "ek_cert Hello to a DevID verifier",
		hello: opts(testattest.HelloOptions{Mode: protocol.ModeEKCert}),
		check: verify.CheckProtocol,
		err:   `verify: protocol: mode "ek_cert" is not served by this verifier (want "devid")`,
	},
	{
		name:     "DevID Hello to an ek_cert verifier",
		verifier: func(_ *attestEnv, v *verify.Verifier) { v.Mode = protocol.ModeEKCert },
		check:    verify.CheckProtocol,
		err:      `verify: protocol: mode "devid" is not served by this verifier (want "ek_cert")`,
	},
	{
		name:     "ek_cert evidence with a Certify",
		verifier: func(_ *attestEnv, v *verify.Verifier) { v.Mode = "" },
		hello:    opts(testattest.HelloOptions{Mode: protocol.ModeEKCert}),
		check:    verify.CheckProtocol,
		err:      `verify: protocol: the evidence carries a DevID Certify, but this attestation is in mode "ek_cert"`,
	},
	{
		name:   "EK checks apply: deny-listed EK",
		policy: func(e *attestEnv, p *verify.EKPolicy) { p.Deny = map[string]bool{e.p.EKHash(): true} },
		check:  verify.CheckEKDenylist,
		err:    "verify: ek_denylist: EK {ek_hash} is deny-listed",
	},
}

// otherCertify is set by TestAttestDevID to the other TPM's Certify, for a Mutate that
// cannot reach the env.
var otherCertify [2][]byte

func TestAttestDevID(t *testing.T) {
	e := newAttestEnv(t, testattest.Config{DevID: tpm2.TPMAlgECC})
	otherCertify = e.otherCertify
	for _, tc := range devidCases {
		t.Run("devid/"+tc.name, func(t *testing.T) { runAttestCase(t, e, tc) })
	}
	// The quote checks apply in DevID mode as in EK mode.
	for _, tc := range evidenceCases {
		t.Run("evidence/"+tc.name, func(t *testing.T) { runAttestCase(t, e, tc) })
	}
	if t.Failed() {
		return
	}
	// A DevID-mode session reports the DevID; an RSA DevID key is certified as well.
	t.Run("RSA DevID", func(t *testing.T) {
		e.t = t
		if err := e.p.Close(); err != nil {
			t.Fatal(err)
		}
		p, err := testattest.New(e.sim, testattest.Config{CA: e.ca, DevID: tpm2.TPMAlgRSA, DevIDCA: e.devidCA, DevIDCert: testattest.DevIDTemplate{Serial: serialDevIDRenewed}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		e.p = p
		runAttestCase(t, e, attestCase{name: "RSA", certStatus: "valid", devidSerial: serialDevIDRenewed})
	})
}
