package verify_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"omens.dev/omens/verify"
)

func TestScratch(t *testing.T) {
	b, probs, err := verify.LoadBundle("/work/shared/realworld/manufacturer-ca")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("roots %d inter %d problems %d", len(b.Roots()), len(b.Intermediates()), len(probs))
	for _, p := range probs {
		t.Log(p)
	}
	files, _ := filepath.Glob("/work/shared/realworld/ek-certs/*")
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		ek, err := verify.ParseEKCertificate(raw)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		t.Logf("%s: %s %+v quirks=%v eku=%v unhandled=%v", filepath.Base(f), ek.KeyType, ek.TPM, ek.Quirks, ek.HasEKU, ek.Cert.UnhandledCriticalExtensions)
		for _, when := range []time.Time{time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)} {
			ch, err := b.VerifyEKCertificate(ek, when)
			if err != nil {
				t.Logf("   %s: %v", when.Format("2006"), err)
			} else {
				var names []string
				for _, c := range ch[0] {
					names = append(names, c.Subject.CommonName)
				}
				t.Logf("   %s: OK %q", when.Format("2006"), names)
			}
		}
	}
}
