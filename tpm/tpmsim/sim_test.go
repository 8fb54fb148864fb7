//go:build cgo

package tpmsim_test

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpmrules"
)

// A simulated host keeps its NV memory across process restarts, as a real TPM keeps it
// across power cuts: same EK, same persistent keys, PCRs back to the boot profile.
func TestRestartKeepsNV(t *testing.T) {
	dir := t.TempDir()
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ek, err := tpm.LoadEK(sim, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	ekPub, _ := ek.PublicKey()
	const akHandle = tpm2.TPMHandle(0x81010010)
	ak, err := tpm.LoadOrCreateAK(sim, ek, akHandle)
	if err != nil {
		t.Fatal(err)
	}
	akName := ak.Name
	ek.Close(sim)
	if err := tpm.ExtendPCR(sim, 16, []byte("before the power cut")); err != nil {
		t.Fatal(err)
	}
	bank, _ := tpm.ParseBank("sha256")
	before, err := tpm.ReadPCRs(sim, bank, []int{0, 16})
	if err != nil {
		t.Fatal(err)
	}
	// The process ends without a TPM2_Shutdown: a power cut.
	sim.Close()

	sim, err = tpmsim.Start(tpmsim.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	persistent, err := tpm.Handles(sim, tpm2.TPMHTPersistent)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(persistent, akHandle) {
		t.Fatalf("persistent handles after restart %v, want the AK at 0x%08X", persistent, uint32(akHandle))
	}
	ek2, err := tpm.LoadEK(sim, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	defer ek2.Close(sim)
	ekPub2, _ := ek2.PublicKey()
	if !ekPub2.(interface{ Equal(crypto.PublicKey) bool }).Equal(ekPub) {
		t.Error("EK changed across the restart")
	}
	ak2, err := tpm.LoadOrCreateAK(sim, ek2, akHandle)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ak2.Name.Buffer, akName.Buffer) {
		t.Error("the AK at its handle changed across the restart")
	}
	after, err := tpm.ReadPCRs(sim, bank, []int{0, 16})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[0], before[0]) {
		t.Errorf("PCR 0 after restart %x, want the boot profile's %x", after[0], before[0])
	}
	if bytes.Equal(after[16], before[16]) || !bytes.Equal(after[16], make([]byte, 32)) {
		t.Errorf("PCR 16 after restart %x, want its reset value", after[16])
	}
	if _, err := tpm.ReadEKCertificate(sim, tpmrules.EKRSA2048); err != nil {
		t.Errorf("EK certificate after restart: %v", err)
	}
}

func TestRestartRefusesBadNVImage(t *testing.T) {
	dir := t.TempDir()
	nv := filepath.Join(dir, "nv")
	if err := os.WriteFile(nv, []byte("not an NV image"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tpmsim.Start(tpmsim.Options{StateDir: dir})
	want := "tpmsim: " + nv + " holds 15 bytes, want an NV image of 16384 bytes; move it away to start this host afresh (new storage keys, same EK)"
	if err == nil || err.Error() != want {
		t.Fatalf("Start: %v\nwant %s", err, want)
	}
}

// WriteEKCert replaces the certificate in an EK certificate index, and the TPM keeps the
// new one across a restart: what the lab's ek-expired scenario writes and puts back.
func TestWriteEKCertReplaces(t *testing.T) {
	dir := t.TempDir()
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := tpm.ReadEKCertificate(sim, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	// Any bytes of another length do: the index is defined again at the new size.
	other := append(bytes.Clone(orig), "more than the factory wrote"...)
	if err := tpmsim.WriteEKCert(sim, tpmrules.EKRSA2048, other); err != nil {
		t.Fatal(err)
	}
	if got, err := tpm.ReadEKCertificate(sim, tpmrules.EKRSA2048); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("after WriteEKCert the index holds %d bytes (%v), want the %d written", len(got), err, len(other))
	}
	sim.Close()
	if sim, err = tpmsim.Start(tpmsim.Options{StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if got, err := tpm.ReadEKCertificate(sim, tpmrules.EKRSA2048); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("after a restart the index holds %d bytes (%v), want the %d written", len(got), err, len(other))
	}
	if err := tpmsim.WriteEKCert(sim, tpmrules.EKRSA2048, orig); err != nil {
		t.Fatal(err)
	}
	if got, _ := tpm.ReadEKCertificate(sim, tpmrules.EKRSA2048); !bytes.Equal(got, orig) {
		t.Error("the factory's certificate did not go back")
	}
}
