package tpm_test

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// swtpmEK is what swtpm_setup provisions for one EK kind (see testtpm.StartSwtpm).
type swtpmEK struct {
	kind    tpmrules.EKKind
	file    string // the certificate as swtpm_setup wrote it
	keyType string // verify.EKCertificate.KeyType
}

func swtpmEKs(s *testtpm.Swtpm) []swtpmEK {
	return []swtpmEK{
		{tpmrules.EKRSA2048, s.RSAEKCert, "RSA-2048"},
		{tpmrules.EKECCP384, s.ECCEKCert, "ECC-P384"},
	}
}

func openSwtpm(t *testing.T, s *testtpm.Swtpm) transport.TPMCloser {
	t.Helper()
	tp, err := tpm.Open(s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// requireNothingLoaded fails the test when a transient object or a session is left in the
// TPM: over a socket nothing flushes them for us (DESIGN.md, "Unlike /dev/tpmrm0").
func requireNothingLoaded(t *testing.T, tp transport.TPM, after string) {
	t.Helper()
	hs, err := tpm.TransientHandles(tp)
	if err != nil {
		t.Fatalf("after %s: %v", after, err)
	}
	if len(hs) != 0 {
		t.Errorf("after %s: transient objects left in the TPM: %s", after, handleList(hs))
	}
	// TPM_HT_LOADED_SESSION (0x02) lists loaded HMAC and policy sessions,
	// TPM_HT_SAVED_SESSION (0x03) the context-saved ones (TPM 2.0 Part 3, 30.2).
	for _, first := range []uint32{0x02000000, 0x03000000} {
		r, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(tp)
		if err != nil {
			t.Fatalf("after %s: GetCapability(HANDLES %#x): %v", after, first, err)
		}
		got, err := r.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatal(err)
		}
		var sessions []tpm2.TPMHandle
		for _, h := range got.Handle {
			if ht := uint32(h) >> 24; ht == 0x02 || ht == 0x03 {
				sessions = append(sessions, h)
			}
		}
		if len(sessions) != 0 {
			t.Errorf("after %s: sessions left in the TPM: %s", after, handleList(sessions))
		}
	}
}

func handleList(hs []tpm2.TPMHandle) string {
	var s []string
	for _, h := range hs {
		s = append(s, fmt.Sprintf("0x%08X", uint32(h)))
	}
	return strings.Join(s, " ")
}

// evictPersistent removes the key persisted at h (testtpm.Evict).
func evictPersistent(t *testing.T, tp transport.TPM, h tpm2.TPMHandle) {
	t.Helper()
	if err := testtpm.Evict(tp, h); err != nil {
		t.Fatal(err)
	}
}

func keysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// TestSwtpmEKCertificates reads swtpm's EK certificates (issued by swtpm_localca, a CA
// that owes nothing to omens) and checks each against the EK our code loads: first from
// the persistent handles swtpm_setup used, then, once they are evicted, recreated from
// the TCG templates.
func TestSwtpmEKCertificates(t *testing.T) {
	s := testtpm.StartSwtpm(t)
	tp := openSwtpm(t, s)
	bundle, problems, err := verify.LoadBundle(s.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 0 {
		t.Errorf("LoadBundle(%s) problems: %v", s.CABundle, problems)
	}

	check := func(t *testing.T, wantPersistent bool) []tpm.EndorsementKey {
		eks, err := tpm.EndorsementKeys(tp)
		if err != nil {
			t.Fatal(err)
		}
		requireNothingLoaded(t, tp, "EndorsementKeys")
		want := swtpmEKs(s)
		if len(eks) != len(want) {
			var got []string
			for _, ek := range eks {
				got = append(got, ek.Kind.Name)
			}
			t.Fatalf("EndorsementKeys returned %v, want RSA-2048 and ECC-P384", got)
		}
		for i, w := range want {
			ek := eks[i]
			t.Run(w.kind.Name, func(t *testing.T) {
				if ek.Kind.CertIndex != w.kind.CertIndex {
					t.Fatalf("EK %d is %s (NV 0x%08X), want %s (NV 0x%08X)", i, ek.Kind.Name, uint32(ek.Kind.CertIndex), w.kind.Name, uint32(w.kind.CertIndex))
				}
				if ek.Persistent != wantPersistent {
					t.Errorf("Persistent = %v, want %v", ek.Persistent, wantPersistent)
				}
				file, err := os.ReadFile(w.file)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ek.Certificate, file) {
					t.Errorf("NV 0x%08X holds %d bytes that differ from the %d bytes of %s", uint32(w.kind.CertIndex), len(ek.Certificate), len(file), filepath.Base(w.file))
				}
				raw, err := tpm.ReadEKCertificate(tp, w.kind)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, file) {
					t.Errorf("ReadEKCertificate(%s) differs from %s", w.kind.Name, filepath.Base(w.file))
				}

				c, err := verify.ParseEKCertificate(ek.Certificate)
				if err != nil {
					t.Fatalf("ParseEKCertificate: %v", err)
				}
				if c.KeyType != w.keyType {
					t.Errorf("KeyType = %q, want %q", c.KeyType, w.keyType)
				}
				if err := c.CheckPublicKey(ek.PublicKey); err != nil {
					t.Errorf("CheckPublicKey(EK from EndorsementKeys): %v", err)
				}

				// LoadEK on its own gives the same key.
				loaded, err := tpm.LoadEK(tp, w.kind)
				if err != nil {
					t.Fatal(err)
				}
				pub, err := loaded.PublicKey()
				if err := loaded.Close(tp); err != nil {
					t.Error(err)
				}
				if err != nil {
					t.Fatal(err)
				}
				requireNothingLoaded(t, tp, "LoadEK and Close")
				if err := c.CheckPublicKey(pub); err != nil {
					t.Errorf("CheckPublicKey(EK from LoadEK): %v", err)
				}

				chains, err := bundle.VerifyEKCertificate(c, time.Now())
				if err != nil {
					t.Fatalf("VerifyEKCertificate: %v", err)
				}
				if len(chains) == 0 || len(chains[0]) != 3 {
					t.Errorf("VerifyEKCertificate chains = %v, want one of EK, intermediate, root", chains)
				}
			})
		}
		return eks
	}

	var persisted []tpm.EndorsementKey
	t.Run("persistent", func(t *testing.T) { persisted = check(t, true) })
	if len(persisted) != 2 {
		t.FailNow()
	}
	// Without the persisted keys, EndorsementKeys recreates each EK from its template
	// (TPM2_CreatePrimary) and must flush it; the seed makes it the same key.
	for _, w := range swtpmEKs(s) {
		evictPersistent(t, tp, w.kind.PersistentHandle)
	}
	t.Run("recreated", func(t *testing.T) {
		recreated := check(t, false)
		for i := range recreated {
			if !keysEqual(recreated[i].PublicKey, persisted[i].PublicKey) {
				t.Errorf("%s: EK recreated from the template differs from the persisted one", recreated[i].Kind.Name)
			}
		}
	})
}

// TestSwtpmEKCertificateRejections checks that each way an EK certificate can be wrong is
// refused with its own error, naming the value at fault.
func TestSwtpmEKCertificateRejections(t *testing.T) {
	s := testtpm.StartSwtpm(t)
	tp := openSwtpm(t, s)
	eks, err := tpm.EndorsementKeys(tp)
	if err != nil {
		t.Fatal(err)
	}
	if len(eks) != 2 {
		t.Fatalf("EndorsementKeys returned %d EKs, want 2", len(eks))
	}
	bundle, _, err := verify.LoadBundle(s.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mfgca.NewEphemeral("Other Vendor")
	if err != nil {
		t.Fatal(err)
	}
	otherPath := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherPath, other.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	otherBundle, _, err := verify.LoadBundle(otherPath)
	if err != nil {
		t.Fatal(err)
	}

	for i, ek := range eks {
		// The other EK of the same TPM: a genuine, trusted certificate, for another key.
		otherEK := eks[1-i]
		c, err := verify.ParseEKCertificate(ek.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		issuer := c.Cert.Issuer.String()
		serial := fmt.Sprintf("%#x", c.Cert.SerialNumber)
		certHash, _ := verify.EKHash(c.PublicKey)
		otherHash, _ := verify.EKHash(otherEK.PublicKey)
		half := len(ek.Certificate) / 2

		tests := []struct {
			name     string
			run      func() error
			want     error
			notWant  error
			contains []string
		}{
			{
				name: "chain to another CA",
				run: func() error {
					_, err := otherBundle.VerifyEKCertificate(c, time.Now())
					return err
				},
				want:     verify.ErrUntrusted,
				contains: []string{fmt.Sprintf("issuer %q (serial %s) does not chain to the CA bundle", issuer, serial)},
			},
			{
				name: "truncated NV content",
				run: func() error {
					_, err := verify.ParseEKCertificate(ek.Certificate[:half])
					return err
				},
				want:     verify.ErrMalformed,
				contains: []string{fmt.Sprintf("truncated: DER SEQUENCE declares %d bytes, only %d present", len(ek.Certificate), half)},
			},
			{
				name:     "certificate for the other EK",
				run:      func() error { return c.CheckPublicKey(otherEK.PublicKey) },
				want:     verify.ErrKeyMismatch,
				contains: []string{"cert key sha256 " + certHash, "EK sha256 " + otherHash},
			},
			{
				name: "expired",
				run: func() error {
					_, err := bundle.VerifyEKCertificate(c, c.Cert.NotAfter.Add(time.Hour))
					return err
				},
				want:    verify.ErrExpired,
				notWant: verify.ErrUntrusted,
				contains: []string{
					"EK certificate serial " + serial,
					"notAfter " + c.Cert.NotAfter.UTC().Format(time.RFC3339),
				},
			},
		}
		for _, tc := range tests {
			t.Run(ek.Kind.Name+"/"+tc.name, func(t *testing.T) {
				err := tc.run()
				if !errors.Is(err, tc.want) {
					t.Fatalf("error = %v, want %v", err, tc.want)
				}
				if tc.notWant != nil && errors.Is(err, tc.notWant) {
					t.Errorf("error %q also matches %v", err, tc.notWant)
				}
				for _, sub := range tc.contains {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("error %q does not contain %q", err, sub)
					}
				}
			})
		}
	}
	requireNothingLoaded(t, tp, "EndorsementKeys")
}

// TestSwtpmAK creates an AK under each EK, persists it, and loads it again.
func TestSwtpmAK(t *testing.T) {
	s := testtpm.StartSwtpm(t)
	tp := openSwtpm(t, s)
	for i, kind := range []tpmrules.EKKind{tpmrules.EKRSA2048, tpmrules.EKECCP384} {
		t.Run(kind.Name, func(t *testing.T) {
			handle := tpmrules.DefaultAKHandle + tpm2.TPMHandle(i)
			ek, err := tpm.LoadEK(tp, kind)
			if err != nil {
				t.Fatal(err)
			}
			defer ek.Close(tp)

			ak, err := tpm.LoadOrCreateAK(tp, ek, handle)
			if err != nil {
				t.Fatalf("first LoadOrCreateAK: %v", err)
			}
			requireNothingLoaded(t, tp, "LoadOrCreateAK (create)")
			if !ak.Created || !ak.Persistent || ak.Handle != handle {
				t.Errorf("first call: Created=%v Persistent=%v Handle=0x%08X, want true, true, 0x%08X", ak.Created, ak.Persistent, uint32(ak.Handle), uint32(handle))
			}
			if err := tpm.IsAttestationKey(&ak.Public); err != nil {
				t.Error(err)
			}

			again, err := tpm.LoadOrCreateAK(tp, ek, handle)
			if err != nil {
				t.Fatalf("second LoadOrCreateAK: %v", err)
			}
			requireNothingLoaded(t, tp, "LoadOrCreateAK (load)")
			if again.Created || !again.Persistent || again.Handle != handle {
				t.Errorf("second call: Created=%v Persistent=%v Handle=0x%08X, want false, true, 0x%08X", again.Created, again.Persistent, uint32(again.Handle), uint32(handle))
			}
			if !bytes.Equal(again.Name.Buffer, ak.Name.Buffer) {
				t.Errorf("second call loaded AK %x, want the persisted %x", again.Name.Buffer, ak.Name.Buffer)
			}

			// A transient AK (handle 0) is the caller's to flush.
			tr, err := tpm.LoadOrCreateAK(tp, ek, 0)
			if err != nil {
				t.Fatalf("transient LoadOrCreateAK: %v", err)
			}
			if !tr.Created || tr.Persistent {
				t.Errorf("transient AK: Created=%v Persistent=%v, want true, false", tr.Created, tr.Persistent)
			}
			if err := tr.Close(tp); err != nil {
				t.Fatal(err)
			}
			requireNothingLoaded(t, tp, "LoadOrCreateAK(handle 0) and Close")

			if err := testtpm.Evict(tp, handle); err != nil {
				t.Fatal(err)
			}
			if _, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(tp); !errors.Is(err, tpm2.TPMRCHandle) {
				t.Errorf("ReadPublic(0x%08X) after Evict: %v, want TPM_RC_HANDLE", uint32(handle), err)
			}
		})
	}
}
