package server_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"omens.dev/omens/tpm/tpmsim/mfgca"
)

func tpmDelay() { time.Sleep(10 * time.Millisecond) }

// startOtherCA writes the bundle of a manufacturer that did not make the test's TPM.
func startOtherCA(t *testing.T) string {
	ca, err := mfgca.NewEphemeral("Other Vendor")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(p, ca.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
