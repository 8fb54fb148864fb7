//go:build unix

package verify_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// TestRememberedChainStaysChecked: once a bundle has verified an EK certificate, the
// certificate and its CAs are still held to their validity at every verification: at
// times outside them the remembered chain gives the error a bundle that never saw the
// certificate gives, and the certificate verifies again afterwards.
func TestRememberedChainStaysChecked(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	ca := must(mfgca.NewEphemeral("remembered",
		mfgca.WithRootValidity(now.Add(-20*year), now.Add(20*year)),
		mfgca.WithIntermediateValidity(now.Add(-10*year), now.Add(3*year))))
	fresh := func() *verify.Bundle {
		return verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate()})
	}
	ek := must(verify.ParseEKCertificate(must(ca.IssueEK(&p256().PublicKey, mfgca.EKTemplate{NotBefore: now.Add(-year), NotAfter: now.Add(year)}))))
	long := must(verify.ParseEKCertificate(must(ca.IssueEK(&p256().PublicKey, mfgca.EKTemplate{NotBefore: now.Add(-year), NotAfter: now.Add(10 * year)}))))

	warm := fresh()
	held := verify.RememberChains(warm, 8)
	for _, c := range []*verify.EKCertificate{ek, long} {
		if _, err := warm.VerifyEKCertificate(c, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := held(); n != 2 {
		t.Fatalf("the bundle holds %d chains, want 2", n)
	}
	for _, tc := range []struct {
		name string
		ek   *verify.EKCertificate
		at   time.Time
		want error
	}{
		{"EK certificate expired", ek, now.Add(2 * year), verify.ErrExpired},
		{"EK certificate not yet valid", ek, now.Add(-2 * year), verify.ErrNotYetValid},
		{"intermediate expired", long, now.Add(4 * year), verify.ErrExpired},
		{"valid again", ek, now, nil},
		{"valid later", long, now.Add(2 * year), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chains, err := warm.VerifyEKCertificate(tc.ek, tc.at)
			wantChains, wantErr := fresh().VerifyEKCertificate(tc.ek, tc.at)
			if !errors.Is(err, tc.want) || !errors.Is(wantErr, tc.want) {
				t.Fatalf("remembered: %v; fresh bundle: %v; want errors.Is %v", err, wantErr, tc.want)
			}
			if err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("remembered chain says\n  %v\na fresh bundle says\n  %v", err, wantErr)
			}
			if len(chains) != len(wantChains) {
				t.Fatalf("%d chains, a fresh bundle finds %d", len(chains), len(wantChains))
			}
			for i := range chains {
				if len(chains[i]) != len(wantChains[i]) || !chains[i][0].Equal(tc.ek.Cert) || !chains[i][len(chains[i])-1].Equal(ca.Root()) {
					t.Fatalf("chain %d is %v, want the EK certificate to the root (%d certificates)", i, chains[i], len(wantChains[i]))
				}
			}
		})
	}
}

// TestRememberedChainsBoundedAndConcurrent: the bundle holds at most its bound of chains,
// forgetting the oldest, and verifies from several goroutines at once (go test -race).
func TestRememberedChainsBoundedAndConcurrent(t *testing.T) {
	bundle := testBundle()
	held := verify.RememberChains(bundle, 3)
	var certs []*verify.EKCertificate
	for range 5 {
		certs = append(certs, must(verify.ParseEKCertificate(issue(t, &p256().PublicKey, mfgca.EKTemplate{}))))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(certs)*3)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				for _, c := range certs {
					if _, err := bundle.VerifyEKCertificate(c, time.Now()); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := held(); n != 3 {
		t.Fatalf("the bundle holds %d chains, want its bound, 3", n)
	}
}

// TestRememberedChainStillDenied: a TPM whose chain the bundle remembers is still refused
// once its EK is deny-listed, and still attests otherwise.
func TestRememberedChainStillDenied(t *testing.T) {
	v := verify.Verifier{PCRBank: tpm2.TPMAlgSHA256, PCRs: testattest.DefaultPCRs}
	tr, err := testattest.Record(openSimulator, testattest.Config{EKKind: tpmrules.EKRSA2048}, &v) // the bundle remembers its chain
	if err != nil {
		t.Fatal(err)
	}
	denied := v
	denied.EK.Deny = map[string]bool{tr.EKHash: true}
	if _, _, err := denied.Begin(tr.Hello); verify.FailedCheck(err) != verify.CheckEKDenylist {
		t.Fatalf("deny-listed EK with a remembered chain: %v, want check %s", err, verify.CheckEKDenylist)
	}
	s, _, err := v.Begin(tr.Hello)
	if err != nil {
		t.Fatal(err)
	}
	if s.Identity.CertStatus != "valid" {
		t.Fatalf("CertStatus %q, want valid", s.Identity.CertStatus)
	}
}

// TestRememberedIntermediate: once a bundle has verified an EK certificate from an
// intermediate, new EK certificates from it verify with the same chains a fresh bundle
// finds, and fail with the same errors: expired or not yet valid EK certificates, an
// expired intermediate, and a certificate from a different intermediate with the same
// name but another key, outside the bundle or in it without a chain to its root.
func TestRememberedIntermediate(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	opts := []mfgca.Option{mfgca.WithRootValidity(now.Add(-20*year), now.Add(20*year)),
		mfgca.WithIntermediateValidity(now.Add(-10*year), now.Add(3*year))}
	ca := must(mfgca.NewEphemeral("intermediate", opts...))
	other := must(mfgca.NewEphemeral("intermediate", opts...)) // the same names, other keys
	if !bytes.Equal(other.Intermediate().RawSubject, ca.Intermediate().RawSubject) {
		t.Fatal("the two intermediates do not share their name")
	}
	ek := func(ca *mfgca.CA, notBefore, notAfter time.Time) *verify.EKCertificate {
		return must(verify.ParseEKCertificate(must(ca.IssueEK(&p256().PublicKey, mfgca.EKTemplate{NotBefore: notBefore, NotAfter: notAfter}))))
	}
	bundles := map[string]func() *verify.Bundle{
		"bundle": func() *verify.Bundle {
			return verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate()})
		},
		"bundle with the other intermediate": func() *verify.Bundle {
			return verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate(), other.Intermediate()})
		},
	}
	for name, fresh := range bundles {
		t.Run(name, func(t *testing.T) {
			warm := fresh()
			if _, err := warm.VerifyEKCertificate(ek(ca, now.Add(-year), now.Add(year)), now); err != nil {
				t.Fatal(err)
			}
			if n := verify.RememberedIssuers(warm); n != 1 {
				t.Fatalf("the bundle remembers %d intermediates, want 1", n)
			}
			for _, tc := range []struct {
				name string
				ek   *verify.EKCertificate
				at   time.Time
				want error
			}{
				{"new EK certificate", ek(ca, now.Add(-year), now.Add(year)), now, nil},
				{"new EK certificate expired", ek(ca, now.Add(-2*year), now.Add(-year)), now, verify.ErrExpired},
				{"new EK certificate not yet valid", ek(ca, now.Add(year), now.Add(2*year)), now, verify.ErrNotYetValid},
				{"intermediate expired", ek(ca, now.Add(-year), now.Add(10*year)), now.Add(4 * year), verify.ErrExpired},
				{"other intermediate, same name", ek(other, now.Add(-year), now.Add(year)), now, verify.ErrUntrusted},
			} {
				t.Run(tc.name, func(t *testing.T) {
					chains, err := warm.VerifyEKCertificate(tc.ek, tc.at)
					wantChains, wantErr := fresh().VerifyEKCertificate(tc.ek, tc.at)
					if !errors.Is(err, tc.want) || !errors.Is(wantErr, tc.want) {
						t.Fatalf("warm bundle: %v; fresh bundle: %v; want errors.Is %v", err, wantErr, tc.want)
					}
					if err != nil && err.Error() != wantErr.Error() {
						t.Fatalf("warm bundle says\n  %v\na fresh bundle says\n  %v", err, wantErr)
					}
					if len(chains) != len(wantChains) {
						t.Fatalf("%d chains, a fresh bundle finds %d", len(chains), len(wantChains))
					}
					for i := range chains {
						if !slices.EqualFunc(chains[i], wantChains[i], (*x509.Certificate).Equal) {
							t.Fatalf("chain %d is %v, a fresh bundle finds %v", i, chains[i], wantChains[i])
						}
					}
				})
			}
			if n := verify.RememberedIssuers(warm); n != 1 {
				t.Fatalf("after the refusals the bundle remembers %d intermediates, want 1", n)
			}
		})
	}
}

// BenchmarkVerifyEKCertificate: one EK chain verification by a bundle that has verified
// nothing (cold), one that has verified another EK certificate from the same intermediate
// (known-intermediate, a new TPM of a known manufacturer), and one that has verified this
// certificate (warm, a re-attestation).
func BenchmarkVerifyEKCertificate(b *testing.B) {
	ca := must(mfgca.NewEphemeral("bench"))
	fresh := func() *verify.Bundle {
		return verify.NewBundle([]*x509.Certificate{ca.Root()}, []*x509.Certificate{ca.Intermediate()})
	}
	ek := must(verify.ParseEKCertificate(must(ca.IssueEK(&p256().PublicKey, mfgca.EKTemplate{}))))
	sibling := must(verify.ParseEKCertificate(must(ca.IssueEK(&p256().PublicKey, mfgca.EKTemplate{}))))
	now := time.Now()
	for _, tc := range []struct {
		name   string
		bundle func() *verify.Bundle
	}{
		{"cold", fresh},
		{"known-intermediate", func() *verify.Bundle {
			bu := fresh()
			must(bu.VerifyEKCertificate(sibling, now))
			return bu
		}},
		{"warm", func() *verify.Bundle {
			bu := fresh()
			must(bu.VerifyEKCertificate(ek, now))
			return bu
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				bu := tc.bundle()
				b.StartTimer()
				if _, err := bu.VerifyEKCertificate(ek, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
