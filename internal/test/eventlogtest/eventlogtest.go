// Package eventlogtest builds TCG boot event logs for tests: crypto-agile logs (TCG PC
// Client Platform Firmware Profile, 10.2.2, TCG_PCR_EVENT2) with SHA-1 and SHA-256
// digests, the Secure Boot variables of PCR 7, separators and a boot chain in PCR 4, and
// the PCR values their replay gives. A test changes a Log's events to make a log that must
// be refused.
package eventlogtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha1" // SHA-1 digests of the log's first bank
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384 digests
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"time"
	"unicode/utf16"

	"github.com/google/go-tpm/tpm2"
)

// Event types (TCG PC Client Platform Firmware Profile, 10.4.1).
const (
	EVNoAction                 uint32 = 0x00000003
	EVSeparator                uint32 = 0x00000004
	EVSCRTMVersion             uint32 = 0x00000008
	EVPostCode                 uint32 = 0x00000001
	EVEFIVariableDriverConfig  uint32 = 0x80000001
	EVEFIBootServicesApp       uint32 = 0x80000003
	EVEFIAction                uint32 = 0x80000007
	EVEFIPlatformFirmwareBlob  uint32 = 0x80000008
	EVEFIVariableAuthority     uint32 = 0x800000E0
	EVEFIVariableBoot          uint32 = 0x80000002
	EVIPL                      uint32 = 0x0000000D
	EVEFIGPTEvent              uint32 = 0x80000006
	EVEFIHandoffTables         uint32 = 0x80000009
	EVEFIBootServicesDriver    uint32 = 0x80000004
	EVEFIRuntimeServicesDriver uint32 = 0x80000005
)

// Event is one measured event. Digests holds the digest extended into each bank; a
// missing one is the hash of Data.
type Event struct {
	PCR     int
	Type    uint32
	Data    []byte
	Digests map[tpm2.TPMIAlgHash][]byte
}

// Log is a list of events, in order, and the banks they carry digests for (sha1, sha256,
// sha384).
type Log struct {
	Banks  []tpm2.TPMIAlgHash
	Events []Event
}

// Hashes of the banks.
var hashes = map[tpm2.TPMIAlgHash]crypto.Hash{tpm2.TPMAlgSHA1: crypto.SHA1, tpm2.TPMAlgSHA256: crypto.SHA256, tpm2.TPMAlgSHA384: crypto.SHA384}

// Measured returns an event whose digests are the hash of data, as for separators,
// variables and actions.
func Measured(pcr int, typ uint32, data []byte) Event {
	return Event{PCR: pcr, Type: typ, Data: data}
}

// Separator returns the EV_SEPARATOR of pcr (data 0x00000000).
func Separator(pcr int) Event { return Measured(pcr, EVSeparator, []byte{0, 0, 0, 0}) }

// Image returns a measurement of code, digest unrelated to data (an EFI image's
// Authenticode hash): digest is the SHA-256 digest, its SHA-1 digest is derived from it.
func Image(pcr int, typ uint32, name string, digest [32]byte) Event {
	s1 := crypto.SHA1.New()
	s1.Write(digest[:])
	return Event{PCR: pcr, Type: typ, Data: []byte(name), Digests: map[tpm2.TPMIAlgHash][]byte{
		tpm2.TPMAlgSHA256: digest[:],
		tpm2.TPMAlgSHA1:   s1.Sum(nil),
	}}
}

// EFI GUIDs (UEFI 2.10, 3.3 and 32.4.1), in their byte order on the wire.
var (
	globalVariableGUID  = guid(0x8BE4DF61, 0x93CA, 0x11D2, [8]byte{0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C})
	imageSecurityDBGUID = guid(0xD719B2CB, 0x3D3A, 0x4596, [8]byte{0xA3, 0xBC, 0xDA, 0xD0, 0x0E, 0x67, 0x65, 0x6F})
	certX509GUID        = guid(0xA5C059A1, 0x94E4, 0x4AA7, [8]byte{0x87, 0xB5, 0xAB, 0x15, 0x5C, 0x2B, 0xF0, 0x72})
	certSHA256GUID      = guid(0xC1C41626, 0x504C, 0x4092, [8]byte{0xAC, 0xA9, 0x41, 0xF9, 0x36, 0x93, 0x43, 0x28})
	ownerGUID           = guid(0x77FA9ABD, 0x0359, 0x4D32, [8]byte{0xBD, 0x60, 0x28, 0xF4, 0xE7, 0x8F, 0x78, 0x4B})
)

func guid(d1 uint32, d2, d3 uint16, d4 [8]byte) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, d1)
	binary.LittleEndian.PutUint16(b[4:], d2)
	binary.LittleEndian.PutUint16(b[6:], d3)
	copy(b[8:], d4[:])
	return b
}

// VariableData encodes a UEFI_VARIABLE_DATA (PC Client PFP, 10.3.3).
func VariableData(name string, data []byte) []byte {
	vendor := globalVariableGUID
	if name == "db" || name == "dbx" {
		vendor = imageSecurityDBGUID
	}
	u := utf16.Encode([]rune(name))
	var b bytes.Buffer
	b.Write(vendor)
	binary.Write(&b, binary.LittleEndian, uint64(len(u)))
	binary.Write(&b, binary.LittleEndian, uint64(len(data)))
	binary.Write(&b, binary.LittleEndian, u)
	b.Write(data)
	return b.Bytes()
}

// SignatureList encodes an EFI_SIGNATURE_LIST of X.509 certificates, one list per
// certificate (UEFI 2.10, 32.4.1).
func SignatureList(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(certX509GUID)
		binary.Write(&b, binary.LittleEndian, uint32(28+16+len(c.Raw)))
		binary.Write(&b, binary.LittleEndian, uint32(0))
		binary.Write(&b, binary.LittleEndian, uint32(16+len(c.Raw)))
		b.Write(ownerGUID)
		b.Write(c.Raw)
	}
	return b.Bytes()
}

// HashList encodes an EFI_SIGNATURE_LIST of SHA-256 hashes, as dbx holds.
func HashList(sums ...[32]byte) []byte {
	if len(sums) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.Write(certSHA256GUID)
	binary.Write(&b, binary.LittleEndian, uint32(28+len(sums)*(16+32)))
	binary.Write(&b, binary.LittleEndian, uint32(0))
	binary.Write(&b, binary.LittleEndian, uint32(16+32))
	for _, s := range sums {
		b.Write(ownerGUID)
		b.Write(s[:])
	}
	return b.Bytes()
}

// Variable returns the PCR 7 event of Secure Boot variable name.
func Variable(name string, data []byte) Event {
	return Measured(7, EVEFIVariableDriverConfig, VariableData(name, data))
}

// Authority returns the PCR 7 event of the db certificate that verified an image.
func Authority(cert *x509.Certificate) Event {
	return Measured(7, EVEFIVariableAuthority, VariableData("db", append(append([]byte{}, ownerGUID...), cert.Raw...)))
}

// SecureBoot describes a boot for Standard.
type SecureBoot struct {
	Enabled bool
	PK, KEK *x509.Certificate
	DB      []*x509.Certificate
	DBX     [][32]byte
	// Authority verified the boot chain (needed when Enabled).
	Authority *x509.Certificate
	// Chain holds the boot applications' digests, in order (shim, grub, kernel).
	Chain [][32]byte
}

// Standard builds a log as UEFI firmware writes it: firmware in PCR 0, the Secure Boot
// variables in PCR 7, a separator in each of PCRs 0-7, the authority and the boot chain.
func Standard(sb SecureBoot) *Log {
	on := byte(0)
	if sb.Enabled {
		on = 1
	}
	l := &Log{Banks: []tpm2.TPMIAlgHash{tpm2.TPMAlgSHA1, tpm2.TPMAlgSHA256}}
	add := func(e ...Event) { l.Events = append(l.Events, e...) }
	add(Measured(0, EVSCRTMVersion, utf16z("omens test firmware 1.0")),
		Image(0, EVEFIPlatformFirmwareBlob, "firmware", sha256.Sum256([]byte("firmware"))),
		Variable("SecureBoot", []byte{on}))
	var pk, kek, db []byte
	if sb.PK != nil {
		pk = SignatureList(sb.PK)
	}
	if sb.KEK != nil {
		kek = SignatureList(sb.KEK)
	}
	db = SignatureList(sb.DB...)
	add(Variable("PK", pk), Variable("KEK", kek), Variable("db", db), Variable("dbx", HashList(sb.DBX...)))
	add(Measured(1, EVEFIVariableBoot, VariableData("BootOrder", []byte{0, 0})))
	add(Measured(4, EVEFIAction, []byte("Calling EFI Application from Boot Option")))
	for pcr := 0; pcr <= 7; pcr++ {
		add(Separator(pcr))
	}
	names := []string{"shim", "grub", "kernel"}
	for i, d := range sb.Chain {
		name := "app"
		if i < len(names) {
			name = names[i]
		}
		if i == 1 && sb.Authority != nil && sb.Enabled {
			add(Authority(sb.Authority))
		}
		add(Image(4, EVEFIBootServicesApp, name, d))
	}
	if sb.Enabled && len(sb.Chain) < 2 && sb.Authority != nil {
		add(Authority(sb.Authority))
	}
	add(Measured(5, EVEFIAction, []byte("Exit Boot Services Invocation")),
		Measured(5, EVEFIAction, []byte("Exit Boot Services Returned with Success")))
	return l
}

func utf16z(s string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, append(utf16.Encode([]rune(s)), 0))
	return b.Bytes()
}

func (l *Log) digest(e Event, alg tpm2.TPMIAlgHash) []byte {
	if d, ok := e.Digests[alg]; ok {
		return d
	}
	h := hashes[alg].New()
	h.Write(e.Data)
	return h.Sum(nil)
}

// Bytes encodes the log: a Spec ID event in the SHA-1 format, then TCG_PCR_EVENT2s.
func (l *Log) Bytes() []byte {
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	binary.Write(&spec, binary.LittleEndian, uint32(0)) // platformClass
	spec.Write([]byte{0, 2, 0, 2})                      // minor, major, errata, uintnSize
	binary.Write(&spec, binary.LittleEndian, uint32(len(l.Banks)))
	for _, alg := range l.Banks {
		binary.Write(&spec, binary.LittleEndian, uint16(alg))
		binary.Write(&spec, binary.LittleEndian, uint16(hashes[alg].Size()))
	}
	spec.WriteByte(0) // vendorInfoSize
	w(uint32(0))
	w(EVNoAction)
	b.Write(make([]byte, 20))
	w(uint32(spec.Len()))
	b.Write(spec.Bytes())
	for _, e := range l.Events {
		w(uint32(e.PCR))
		w(e.Type)
		w(uint32(len(l.Banks)))
		for _, alg := range l.Banks {
			w(uint16(alg))
			b.Write(l.digest(e, alg))
		}
		w(uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes()
}

// PCRs returns the values of pcrs in bank alg after the log's events are extended.
func (l *Log) PCRs(alg tpm2.TPMIAlgHash, pcrs ...int) map[int][]byte {
	h := hashes[alg]
	out := map[int][]byte{}
	for _, p := range pcrs {
		v := make([]byte, h.Size())
		for _, e := range l.Events {
			if e.PCR != p || e.Type == EVNoAction {
				continue
			}
			x := h.New()
			x.Write(v)
			x.Write(l.digest(e, alg))
			v = x.Sum(nil)
		}
		out[p] = v
	}
	return out
}

// Clone returns a deep enough copy of l to change its events.
func (l *Log) Clone() *Log {
	c := &Log{Banks: append([]tpm2.TPMIAlgHash{}, l.Banks...), Events: make([]Event, len(l.Events))}
	copy(c.Events, l.Events)
	return c
}

// Find returns the index of the first event of pcr and type typ, or -1.
func (l *Log) Find(pcr int, typ uint32) int {
	for i, e := range l.Events {
		if e.PCR == pcr && e.Type == typ {
			return i
		}
	}
	return -1
}

// Certificate returns a self-signed ECDSA P-256 certificate named cn, valid for a day, as
// a PK, KEK or db entry.
func Certificate(cn string) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(23 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
