package tpm_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// openSim opens the in-process reference simulator; one test at a time holds it.
func openSim(t *testing.T) transport.TPM {
	t.Helper()
	s, err := tpm.Open(tpm.Simulator)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// noTransients fails the test when an object or session other than keep is left loaded.
func noTransients(t *testing.T, s transport.TPM, keep ...tpm2.TPMHandle) {
	t.Helper()
	hs, err := tpm.TransientHandles(s)
	if err != nil {
		t.Fatal(err)
	}
	hs = slices.DeleteFunc(hs, func(h tpm2.TPMHandle) bool { return slices.Contains(keep, h) })
	if len(hs) != 0 {
		t.Errorf("transient handles left loaded: %x", hs)
	}
}

func TestParsePCRSelection(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "0,2,4,7", want: []int{0, 2, 4, 7}},
		{in: "7,0,2,2", want: []int{0, 2, 7}},
		{in: "0-3,16", want: []int{0, 1, 2, 3, 16}},
		{in: "all", want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}},
		{in: "", wantErr: "tpm: empty PCR selection (want e.g. 0,2,4,7 or 0-7)"},
		{in: "0,24", wantErr: `tpm: PCR index "24" is not a number from 0 to 23`},
		{in: "-1", wantErr: `tpm: PCR index "" is not a number from 0 to 23`},
		{in: "5-2", wantErr: `tpm: PCR range "5-2" runs backwards`},
		{in: "x", wantErr: `tpm: PCR index "x" is not a number from 0 to 23`},
	} {
		got, err := tpm.ParsePCRSelection(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParsePCRSelection(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePCRSelection(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseBank(t *testing.T) {
	if b, err := tpm.ParseBank("SHA256"); err != nil || b.Alg != tpm2.TPMAlgSHA256 || b.Size != 32 {
		t.Errorf("ParseBank(SHA256) = %+v, %v", b, err)
	}
	if _, err := tpm.ParseBank("md5"); err == nil || err.Error() != `tpm: unknown PCR bank "md5" (want sha1, sha256 or sha384)` {
		t.Errorf("ParseBank(md5) error = %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	saved := tpm.DefaultDevices
	t.Cleanup(func() { tpm.DefaultDevices = saved })
	dir := t.TempDir()
	tpm.DefaultDevices = []string{dir + "/tpmrm0", dir + "/tpm0"}
	_, err := tpm.Open("")
	if !errors.Is(err, tpm.ErrNoTPM) {
		t.Fatalf("Open(\"\") error = %v, want ErrNoTPM", err)
	}
	want := "tpm: no TPM found (tried " + dir + "/tpmrm0, " + dir + "/tpm0): give --tpm PATH (a TPM device or a unix socket), or start a simulated TPM with `omens tpm simulate --state DIR --socket PATH`"
	if err.Error() != want {
		t.Errorf("Open(\"\") error =\n%s\nwant\n%s", err, want)
	}
	fi, _ := os.Stat(dir)
	if _, err := tpm.Open(dir); err == nil || err.Error() != "tpm: "+dir+" is neither a TPM device nor a unix socket (mode "+fi.Mode().String()+")" {
		t.Errorf("Open(dir) error = %v", err)
	}
}

func TestReadPCRsAllBanks(t *testing.T) {
	s := openSim(t)
	event := []byte("firmware 1.0")
	if err := tpm.ExtendPCR(s, 0, event); err != nil {
		t.Fatal(err)
	}
	all, _ := tpm.ParsePCRSelection("all")
	for _, bankName := range []string{"sha1", "sha256"} {
		bank, _ := tpm.ParseBank(bankName)
		got, err := tpm.ReadPCRs(s, bank, all)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 24 {
			t.Fatalf("%s: read %d PCRs, want 24", bankName, len(got))
		}
		if bankName == "sha256" {
			// PCR_Event extends the digest of the event: PCR0 = H(zeros || H(event)).
			h := sha256.Sum256(event)
			want := sha256.Sum256(append(make([]byte, 32), h[:]...))
			if string(got[0]) != string(want[:]) {
				t.Errorf("PCR 0 = %x, want %x", got[0], want)
			}
			if string(got[1]) != string(make([]byte, 32)) {
				t.Errorf("PCR 1 = %x, want zeros", got[1])
			}
		}
	}
	noTransients(t, s)
}

func TestExtendPCRErrors(t *testing.T) {
	s := openSim(t)
	if err := tpm.ExtendPCR(s, 24, []byte("x")); err == nil || err.Error() != "tpm: PCR index 24 is not from 0 to 23" {
		t.Errorf("ExtendPCR(24) error = %v", err)
	}
	if err := tpm.ExtendPCR(s, 0, nil); err == nil || err.Error() != "tpm: event data is 0 bytes, want 1 to 1024" {
		t.Errorf("ExtendPCR(empty) error = %v", err)
	}
}

func TestEndorsementKeysWithoutCertificate(t *testing.T) {
	s := openSim(t)
	eks, err := tpm.EndorsementKeys(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(eks) != 1 || eks[0].Kind.Name != "RSA-2048" || eks[0].Certificate != nil || eks[0].Persistent {
		t.Fatalf("EndorsementKeys on a TPM without certificates = %+v, want one created RSA-2048 EK without certificate", eks)
	}
	if _, err := tpm.ReadEKCertificate(s, tpmrules.EKRSA2048); !errors.Is(err, tpm.ErrNoEKCertificate) ||
		err.Error() != "tpm: no EK certificate in NV: RSA-2048 index 0x01C00002 is not defined" {
		t.Errorf("ReadEKCertificate error = %v", err)
	}
	noTransients(t, s)
}

func TestEKTemplatesAreDeterministic(t *testing.T) {
	s := openSim(t)
	for _, kind := range tpmrules.EKKinds {
		a, err := tpm.LoadEK(s, kind)
		if err != nil {
			t.Fatal(err)
		}
		a.Close(s)
		b, err := tpm.LoadEK(s, kind)
		if err != nil {
			t.Fatal(err)
		}
		b.Close(s)
		if string(tpm2.Marshal(a.Public)) != string(tpm2.Marshal(b.Public)) {
			t.Errorf("%s: two CreatePrimary from the template gave different keys", kind.Name)
		}
	}
	noTransients(t, s)
}

func TestPersistentEKIsLoaded(t *testing.T) {
	s := openSim(t)
	ek, err := tpm.LoadEK(s, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: ek.NamedHandle(), PersistentHandle: 0x81010001}).Execute(s); err != nil {
		t.Fatal(err)
	}
	ek.Close(s)
	c := tpm.NewCountingTPM(s)
	again, err := tpm.LoadEK(c, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Persistent || again.Handle != 0x81010001 || c.Count(tpm2.TPMCCCreatePrimary) != 0 {
		t.Errorf("LoadEK with a persisted EK: persistent=%v handle=%x commands=%s; want the persistent handle and no CreatePrimary", again.Persistent, again.Handle, c)
	}
	if string(tpm2.Marshal(again.Public)) != string(tpm2.Marshal(ek.Public)) {
		t.Error("persistent EK differs from the one created from the template")
	}
	noTransients(t, s)
}

func TestAKCreatePersistLoad(t *testing.T) {
	s := openSim(t)
	ek, err := tpm.LoadEK(s, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	defer ek.Close(s)
	ak, err := tpm.LoadOrCreateAK(s, ek, tpmrules.DefaultAKHandle)
	if err != nil {
		t.Fatal(err)
	}
	if !ak.Created || !ak.Persistent || ak.Handle != tpmrules.DefaultAKHandle {
		t.Errorf("first LoadOrCreateAK = created %v persistent %v handle %x", ak.Created, ak.Persistent, ak.Handle)
	}
	if err := tpm.IsAttestationKey(&ak.Public); err != nil {
		t.Error(err)
	}
	c := tpm.NewCountingTPM(s)
	again, err := tpm.LoadOrCreateAK(c, ek, tpmrules.DefaultAKHandle)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || c.Count(tpm2.TPMCCCreate) != 0 || c.Count(tpm2.TPMCCCreatePrimary) != 0 {
		t.Errorf("second LoadOrCreateAK created a key (commands %s)", c)
	}
	if n, _ := c.Total(); n != 1 {
		t.Errorf("loading a persisted AK sent %d commands (%s), want 1 ReadPublic", n, c)
	}
	if string(again.Name.Buffer) != string(ak.Name.Buffer) {
		t.Error("loaded AK has another name than the created one")
	}
	noTransients(t, s, ek.Handle)

	// A persistent handle that holds something else is refused, not overwritten.
	other, err := tpm.LoadEK(s, tpmrules.EKECCP256) // a decrypt key, not an AK
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: other.NamedHandle(), PersistentHandle: 0x81010020}).Execute(s); err != nil {
		t.Fatal(err)
	}
	other.Close(s)
	_, err = tpm.LoadOrCreateAK(s, ek, 0x81010020)
	want := "tpm: persistent handle holds another key: 0x81010020: tpm: not an attestation key: attributes lack [sign not decrypt]; choose another AK handle or evict it (tpm2_evictcontrol -c 0x81010020)"
	if !errors.Is(err, tpm.ErrHandleInUse) || err.Error() != want {
		t.Errorf("LoadOrCreateAK on an occupied handle: %v\nwant %s", err, want)
	}
	if err := testtpm.Evict(s, tpmrules.DefaultAKHandle); err != nil {
		t.Fatal(err)
	}
	noTransients(t, s, ek.Handle)
}

func TestAKUnderECCEK(t *testing.T) {
	s := openSim(t)
	for _, kind := range []tpmrules.EKKind{tpmrules.EKECCP256, tpmrules.EKECCP384} {
		ek, err := tpm.LoadEK(s, kind)
		if err != nil {
			t.Fatal(err)
		}
		ak, err := tpm.LoadOrCreateAK(s, ek, 0)
		if err != nil {
			t.Fatalf("AK under %s: %v", kind.Name, err)
		}
		ak.Close(s)
		ek.Close(s)
	}
	noTransients(t, s)
}

// TestAKOfAnotherEKReplaced: an AK persisted under the RSA EK is not used with the ECC
// EK (the verifier wants qualifiedSigner under the EK attested with): it is replaced by
// one created under the ECC EK, and kept from then on.
func TestAKOfAnotherEKReplaced(t *testing.T) {
	s := openSim(t)
	rsa, err := tpm.LoadEK(s, tpmrules.EKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	first, err := tpm.LoadOrCreateAK(s, rsa, tpmrules.DefaultAKHandle)
	rsa.Close(s)
	if err != nil {
		t.Fatal(err)
	}
	ecc, err := tpm.LoadEK(s, tpmrules.EKECCP256)
	if err != nil {
		t.Fatal(err)
	}
	second, err := tpm.LoadOrCreateAK(s, ecc, tpmrules.DefaultAKHandle)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Created || !second.Persistent || bytes.Equal(second.Name.Buffer, first.Name.Buffer) {
		t.Errorf("AK with the ECC EK: created %v persistent %v, same name as the RSA EK's AK %v", second.Created, second.Persistent, bytes.Equal(second.Name.Buffer, first.Name.Buffer))
	}
	third, err := tpm.LoadOrCreateAK(s, ecc, tpmrules.DefaultAKHandle)
	if err != nil {
		t.Fatal(err)
	}
	if third.Created || !bytes.Equal(third.Name.Buffer, second.Name.Buffer) {
		t.Errorf("AK with the ECC EK again: created %v", third.Created)
	}
	ecc.Close(s)
	noTransients(t, s)
}

func TestReadNVLargerThanOneChunk(t *testing.T) {
	s := openSim(t)
	data := make([]byte, 1900)
	for i := range data {
		data[i] = byte(i * 7)
	}
	const index = tpm2.TPMHandle(0x01500001)
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	_, err := tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: index, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(len(data)),
		Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, AuthWrite: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
	})}.Execute(s)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(s)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		if _, err := (tpm2.NVWrite{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]}, Offset: uint16(off)}).Execute(s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := tpm.ReadNV(s, index)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Error("ReadNV returned other bytes than were written")
	}
	if _, err := tpm.ReadNV(s, 0x01500099); !errors.Is(err, tpm.ErrNVIndexAbsent) || err.Error() != "tpm: NV index not defined: 0x01500099" {
		t.Errorf("ReadNV(absent) error = %v", err)
	}
}

func TestReadInfo(t *testing.T) {
	s := openSim(t)
	info, err := tpm.ReadInfo(s)
	if err != nil {
		t.Fatal(err)
	}
	if info.Manufacturer != "MSFT" || info.ManufacturerID != "id:4D534654" || info.Family != "2.0" {
		t.Errorf("ReadInfo = %+v; want the reference TPM's MSFT, family 2.0", info)
	}
}
