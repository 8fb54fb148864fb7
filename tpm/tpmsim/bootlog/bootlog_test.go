//go:build cgo

package bootlog_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim"
	"omens.dev/omens/tpm/tpmsim/bootlog"
)

var banks = []crypto.Hash{crypto.SHA1, crypto.SHA256}

func chain(kernel string) (shim, grub, kern bootlog.Image) {
	return bootlog.Image{Path: `\EFI\BOOT\BOOTX64.EFI`, Digests: bootlog.ImageDigests([]byte("shim 15.8"), banks...)},
		bootlog.Image{Path: `\EFI\debian\grubx64.efi`, Digests: bootlog.ImageDigests([]byte("grub 2.12"), banks...)},
		bootlog.Image{Path: `\vmlinuz-` + kernel, Digests: bootlog.ImageDigests([]byte("linux "+kernel), banks...)}
}

func testBoot(t *testing.T, keys *bootlog.PlatformKeys, kernel string) bootlog.Boot {
	t.Helper()
	b := bootlog.Boot{SecureBoot: true, Keys: keys, KernelCommandLine: "root=/dev/vda2 ro quiet"}
	b.Shim, b.Grub, b.Kernel = chain(kernel)
	return b
}

// bootSim boots a simulated host from log and returns the events of the log that replay
// against its PCRs (sha256), with its PCRs 0-7.
func bootSim(t *testing.T, log []byte) ([]attest.Event, map[int][]byte) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "boot.log")
	if err := os.WriteFile(path, log, 0o644); err != nil {
		t.Fatal(err)
	}
	sim, err := tpmsim.Start(tpmsim.Options{StateDir: filepath.Join(dir, "host"), BootLog: path})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	bank, _ := tpm.ParseBank("sha256")
	events := testtpm.ReplayLog(t, sim, log, bank)
	pcrs, err := tpm.ReadPCRs(sim, bank, []int{0, 1, 2, 3, 4, 5, 6, 7})
	if err != nil {
		t.Fatal(err)
	}
	// The sha1 bank replays too.
	sha1, _ := tpm.ParseBank("sha1")
	testtpm.ReplayLog(t, sim, log, sha1)
	return events, pcrs
}

// A synthetic log parses with go-attestation, says Secure Boot is on with the db
// certificate as the authority that verified the boot chain, replays against a simulator
// booted from it, and records the kernel digest it was given in PCR 4.
func TestSyntheticBootLog(t *testing.T) {
	keys, err := bootlog.NewPlatformKeys("Example Platforms")
	if err != nil {
		t.Fatal(err)
	}
	b := testBoot(t, keys, "6.1.0-21")
	log, err := b.Write()
	if err != nil {
		t.Fatal(err)
	}
	el, err := attest.ParseEventLog(log)
	if err != nil {
		t.Fatalf("ParseEventLog: %v", err)
	}
	if len(el.Algs) != 2 || el.Algs[0] != attest.HashSHA1 || el.Algs[1] != attest.HashSHA256 {
		t.Errorf("log banks %v, want sha1 and sha256", el.Algs)
	}
	events, pcrs := bootSim(t, log)
	sb, err := attest.ParseSecurebootState(events)
	if err != nil {
		t.Fatalf("ParseSecurebootState: %v", err)
	}
	if !sb.Enabled {
		t.Error("Secure Boot reported off")
	}
	if len(sb.PostSeparatorAuthority) != 1 || !bytes.Equal(sb.PostSeparatorAuthority[0].Raw, keys.DB[0]) {
		t.Errorf("authorities %d, want the db certificate alone", len(sb.PostSeparatorAuthority))
	}
	if len(sb.PlatformKeys) != 1 || !bytes.Equal(sb.PlatformKeys[0].Raw, keys.PK) ||
		len(sb.ExchangeKeys) != 1 || !bytes.Equal(sb.ExchangeKeys[0].Raw, keys.KEK[0]) ||
		len(sb.PermittedKeys) != 1 || !bytes.Equal(sb.PermittedKeys[0].Raw, keys.DB[0]) {
		t.Error("PK, KEK or db differ from the enrolled certificates")
	}
	if len(sb.ForbiddenHashes) != len(keys.DBX) {
		t.Fatalf("dbx holds %d digests, want %d", len(sb.ForbiddenHashes), len(keys.DBX))
	}
	for i, d := range sb.ForbiddenHashes {
		if !bytes.Equal(d, keys.DBX[i]) {
			t.Errorf("dbx entry %d = %x, want %x", i, d, keys.DBX[i])
		}
	}
	var apps [][]byte
	separators := map[int]int{}
	for _, e := range events {
		switch uint32(e.Type) {
		case bootlog.EvEFIBootServicesApplication:
			if e.Index != 4 {
				t.Errorf("boot application in PCR %d", e.Index)
			}
			apps = append(apps, e.Digest)
		case bootlog.EvSeparator:
			separators[e.Index]++
		}
	}
	want := [][]byte{b.Shim.Digests[crypto.SHA256], b.Grub.Digests[crypto.SHA256], b.Kernel.Digests[crypto.SHA256]}
	if len(apps) != 3 || !bytes.Equal(apps[0], want[0]) || !bytes.Equal(apps[1], want[1]) || !bytes.Equal(apps[2], want[2]) {
		t.Errorf("boot applications %x, want shim, grub, kernel %x", apps, want)
	}
	for pcr := range 8 {
		if separators[pcr] != 1 {
			t.Errorf("PCR %d has %d separators, want 1", pcr, separators[pcr])
		}
	}

	// A kernel update changes PCR 4 and nothing else of PCRs 0-7.
	b2 := testBoot(t, keys, "6.1.0-22")
	log2, err := b2.Write()
	if err != nil {
		t.Fatal(err)
	}
	_, pcrs2 := bootSim(t, log2)
	for pcr := range 8 {
		if changed := !bytes.Equal(pcrs[pcr], pcrs2[pcr]); changed != (pcr == 4) {
			t.Errorf("kernel update: PCR %d changed=%v, want a change in PCR 4 only", pcr, changed)
		}
	}
}

// With Secure Boot off, the log says so and names no authority.
func TestSyntheticBootLogSecureBootOff(t *testing.T) {
	keys, err := bootlog.NewPlatformKeys("Example Platforms")
	if err != nil {
		t.Fatal(err)
	}
	b := testBoot(t, keys, "6.1.0-21")
	b.SecureBoot = false
	log, err := b.Write()
	if err != nil {
		t.Fatal(err)
	}
	events, _ := bootSim(t, log)
	sb, err := attest.ParseSecurebootState(events)
	if err != nil {
		t.Fatalf("ParseSecurebootState: %v", err)
	}
	if sb.Enabled || len(sb.PostSeparatorAuthority) != 0 {
		t.Errorf("Secure Boot enabled=%v with %d authorities, want off and none", sb.Enabled, len(sb.PostSeparatorAuthority))
	}
}

func TestSyntheticBootLogErrors(t *testing.T) {
	keys, err := bootlog.NewPlatformKeys("Example Platforms")
	if err != nil {
		t.Fatal(err)
	}
	dbxSum := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		name   string
		change func(*bootlog.Boot)
		want   string
	}{
		{"no keys", func(b *bootlog.Boot) { b.Keys = nil }, "bootlog: Keys with a PK, a KEK and a db certificate are required (NewPlatformKeys)"},
		{"no kernel digest", func(b *bootlog.Boot) { b.Kernel.Digests = nil }, "bootlog: kernel: no 20-byte digest for bank SHA-1"},
		{"short grub digest", func(b *bootlog.Boot) { b.Grub.Digests[crypto.SHA256] = []byte{1} }, "bootlog: grub: no 32-byte digest for bank SHA-256"},
		{"no shim path", func(b *bootlog.Boot) { b.Shim.Path = "" }, "bootlog: shim: a Path is required"},
		{"bad bank", func(b *bootlog.Boot) { b.Banks = []crypto.Hash{crypto.MD5} }, "bootlog: bank MD5 is not sha1, sha256, sha384 or sha512"},
		{"bad certificate", func(b *bootlog.Boot) { b.Authority = []byte("not DER") }, "bootlog: Secure Boot certificate: "},
		{"bad dbx", func(b *bootlog.Boot) {
			b.Keys = &bootlog.PlatformKeys{PK: keys.PK, KEK: keys.KEK, DB: keys.DB, DBX: [][]byte{dbxSum[:4]}}
		}, "bootlog: dbx entry of 4 bytes, want a SHA-256 digest"},
		{"bad owner", func(b *bootlog.Boot) {
			b.Keys = &bootlog.PlatformKeys{Owner: "owner", PK: keys.PK, KEK: keys.KEK, DB: keys.DB}
		}, `bootlog: "owner" is not a GUID (want 8-4-4-4-12 hex digits)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testBoot(t, keys, "6.1.0-21")
			tc.change(&b)
			_, err := b.Write()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Write: %v, want %s", err, tc.want)
			}
		})
	}
}
