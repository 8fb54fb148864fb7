package verify_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"omens.dev/omens/internal/test/realworld"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/verify"
)

// fuzzSeeds returns EK certificates to seed the fuzzers: real ones when the real-world
// data is present, and generated ones (RSA, ECC P-256, P-384), raw, padded, in PEM.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	if rw := realworld.Lookup(); rw != "" {
		files, _ := filepath.Glob(filepath.Join(rw, "ek-certs", "*"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				seeds = append(seeds, b)
			}
		}
	}
	for _, pub := range []any{&rsaKey().PublicKey, &p256().PublicKey, &p384().PublicKey} {
		der, err := testCA().IssueEK(pub, mfgca.EKTemplate{})
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, der, pemCert(der), append(bytes.Clone(der), make([]byte, 16)...), der[:len(der)/2])
	}
	return seeds
}

func FuzzParseEKCertificate(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{0x10, 0x01, 0x00, 0x00, 0x02, 0x10, 0x02})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	bundle := testBundle()
	empty := verify.NewBundle(nil, nil)
	at := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		ek, err := verify.ParseEKCertificate(b)
		if err != nil {
			if !errors.Is(err, verify.ErrMalformed) && !errors.Is(err, verify.ErrUnsupportedKey) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrUnsupportedKey", err)
			}
			if ek != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if ek.KeyType == "" || ek.PublicKey == nil {
			t.Fatalf("parsed without key: %q %v", ek.KeyType, ek.PublicKey)
		}
		if err := ek.CheckPublicKey(ek.PublicKey); err != nil {
			t.Fatalf("certificate key does not match itself: %v", err)
		}
		if _, err := empty.VerifyEKCertificate(ek, at); err == nil {
			t.Fatal("verified against an empty bundle")
		}
		// Must not panic; may succeed only for a certificate the test CA issued.
		if chains, err := bundle.VerifyEKCertificate(ek, at); err == nil {
			if len(chains) == 0 || !chains[0][len(chains[0])-1].Equal(testCA().Root()) {
				t.Fatalf("verified with chains %v", chains)
			}
		}
	})
}

func FuzzParseTPMSpecSAN(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		ek, err := verify.ParseEKCertificate(s)
		if err != nil {
			continue
		}
		for _, e := range ek.Cert.Extensions {
			if e.Id.String() == "2.5.29.17" {
				f.Add(e.Value)
			}
		}
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		spec, found, err := verify.ParseTPMSpecSAN(b)
		if err != nil {
			if !errors.Is(err, verify.ErrMalformed) || found || spec != (verify.TPMSpec{}) {
				t.Fatalf("error %v with found=%v spec=%+v", err, found, spec)
			}
			return
		}
		if spec.ManufacturerName != "" && spec.ManufacturerID == "" {
			t.Fatalf("vendor name %q without vendor ID", spec.ManufacturerName)
		}
		if !found && spec != (verify.TPMSpec{}) {
			t.Fatalf("spec %+v without found", spec)
		}
	})
}
