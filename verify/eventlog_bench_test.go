//go:build unix

package verify_test

import (
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/policy"
	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
	"omens.dev/omens/verify"
)

// benchLogKinds are the attestations of benchKinds recorded again on a simulator that
// measured a Secure Boot event log (secureBootLog), whose Evidence carries that log, and a
// verifier that replays it (event_log = "require").
// The recording is made once per process.
var (
	benchLogMu    sync.Mutex
	benchLogCache []*benchKind
)

func recordBenchLogKinds(b *testing.B) ([]*benchKind, error) {
	ks, err := benchKinds()
	if err != nil {
		return nil, err
	}
	l := secureBootLog(newBootCerts(b), true)
	log := l.Bytes()
	open := func() (transport.TPMCloser, error) {
		t, err := openSimulator()
		if err != nil {
			return nil, err
		}
		for _, e := range l.Events {
			if err := tpm.ExtendPCR(t, e.PCR, e.Data); err != nil {
				t.Close()
				return nil, err
			}
		}
		return t, nil
	}
	var out []*benchKind
	for _, k := range ks {
		// Recorded without the log (the prover reads none), which is added after.
		v := verify.Verifier{PCRBank: k.v.PCRBank, PCRs: k.v.PCRs, Rand: testattest.FixedStream(benchStreamSeed)}
		tr, err := testattest.Record(open, testattest.Config{EKKind: k.kind}, &v)
		if err != nil {
			return nil, err
		}
		v.EventLog = verify.EventLogPolicy{Mode: verify.EventLogRequire}
		ev, err := protocol.DecodeEvidence(tr.Evidence)
		if err != nil {
			return nil, err
		}
		ev.EventLog = log
		if tr.Evidence, err = protocol.Encode(ev); err != nil {
			return nil, err
		}
		lk := *k
		lk.v, lk.hello, lk.evidence, lk.transcript = v, tr.Hello, tr.Evidence, tr
		lk.inter, lk.root = tr.CA.Intermediate(), tr.CA.Root()
		h, err := protocol.DecodeHello(tr.Hello)
		if err != nil {
			return nil, err
		}
		if lk.leaf, err = x509.ParseCertificate(h.EKCert); err != nil {
			return nil, err
		}
		out = append(out, &lk)
	}
	return out, nil
}

func loadBenchLogKinds(b *testing.B) []*benchKind {
	b.Helper()
	benchLogMu.Lock()
	defer benchLogMu.Unlock()
	if benchLogCache == nil {
		ks, err := recordBenchLogKinds(b)
		if err != nil {
			b.Fatal(err)
		}
		benchLogCache = ks
	}
	return benchLogCache
}

// bootPolicyStore is policyStore with the boot rules of a Secure Boot host in the group:
// Secure Boot required, and the authority that verified the boot chain allowed.
func (k *benchKind) bootPolicyStore(b *testing.B) *policy.Store {
	b.Helper()
	res := k.verify(b, &k.v, nil)
	if res.Boot == nil || res.Boot.SecureBoot == nil || len(res.Boot.SecureBoot.Authorities) == 0 {
		b.Fatalf("boot facts %+v: want Secure Boot on, verified by an authority", res.Boot)
	}
	return k.policyStore(b, fmt.Sprintf("  boot {\n    secure_boot = \"required\"\n    authorities = [%q]\n  }\n", res.Boot.SecureBoot.Authorities[0].SHA256))
}

// verifyWithLog is verify with the event log replayed, and the PCR policy and boot rules
// on the result (policy.Store.EvaluateBoot), as the SPIRE server plugin runs them.
func (k *benchKind) verifyWithLog(b *testing.B, v *verify.Verifier, store *policy.Store) {
	res := k.verify(b, v, nil)
	d, rule, err := store.EvaluateBoot(res.EKHash, res.PCRBank, res.PCRs, res.Boot, time.Now())
	if err != nil || !d.Allowed || !strings.Contains(rule, "secure_boot") {
		b.Fatalf("policy: %v (rule %q) %v", d, rule, err)
	}
}

// BenchmarkVerifyAttestationEventLog is BenchmarkVerifyAttestation's verification with a
// boot event log (about 3 KiB, 26 events, Secure Boot variables with certificates)
// replayed against the quote, its Secure Boot state read, and boot rules over it (Secure
// Boot required, the authority allowed), cold and warm.
func BenchmarkVerifyAttestationEventLog(b *testing.B) {
	for _, k := range loadBenchLogKinds(b) {
		for _, temp := range temperatures {
			b.Run(temp+"/"+k.kind.Name, func(b *testing.B) {
				store := k.bootPolicyStore(b)
				v := k.verifier(b, temp)
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					b.StopTimer()
					v.prepare()
					b.StartTimer()
					k.verifyWithLog(b, v.v, store)
				}
			})
		}
	}
}

// BenchmarkVerifyAttestationEventLogToFloor reports the ratio of a verification with the
// event log to the public-key floor (BenchmarkPublicKeyFloor), run in turn; the target is
// the cold one's, as in BenchmarkVerifyAttestationToFloor.
func BenchmarkVerifyAttestationEventLogToFloor(b *testing.B) {
	for _, k := range loadBenchLogKinds(b) {
		for _, temp := range temperatures {
			b.Run(temp+"/"+k.kind.Name, func(b *testing.B) {
				store := k.bootPolicyStore(b)
				v := k.verifier(b, temp)
				k.toFloor(b, v.prepare, func() { k.verifyWithLog(b, v.v, store) })
			})
		}
	}
}
