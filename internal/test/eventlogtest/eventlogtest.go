// Package eventlogtest builds TCG boot event logs for tests: crypto-agile logs (TCG PC
// Client Platform Firmware Profile, 10.2.2, TCG_PCR_EVENT2) with SHA-1 and SHA-256
// digests, the Secure Boot variables of PCR 7, separators and a boot chain in PCR 4, and
// the PCR values their replay gives. A test changes a Log's events to make a log that must
// be refused. The log format and the UEFI structures are bootlog's (tpm/tpmsim/bootlog);
// this kit adds the editable Log, its test layout and the PCR values it replays to.
package eventlogtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha1" // SHA-1 digests of the log's first bank
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384 digests
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpm/tpmsim/bootlog"
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

// Measured returns an event whose digests are the hash of data, as for separators,
// variables and actions.
func Measured(pcr int, typ uint32, data []byte) Event {
	return Event{PCR: pcr, Type: typ, Data: data}
}

// Separator returns the EV_SEPARATOR of pcr (data 0x00000000).
func Separator(pcr int) Event { return Measured(pcr, bootlog.EvSeparator, []byte{0, 0, 0, 0}) }

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

// microsoftOwner is Microsoft's SignatureOwner, which real db and dbx entries carry.
const microsoftOwner bootlog.GUID = "77fa9abd-0359-4d32-bd60-28f4e78f784b"

// VariableData encodes the UEFI_VARIABLE_DATA of Secure Boot variable name: db and dbx
// are in the image security database, the others global variables.
func VariableData(name string, data []byte) []byte {
	vendor := bootlog.EFIGlobalVariable
	if name == "db" || name == "dbx" {
		vendor = bootlog.EFIImageSecurityDatabaseGUID
	}
	return bootlog.VariableData(vendor, name, data)
}

// SignatureList encodes an EFI_SIGNATURE_LIST of X.509 certificates, one list per
// certificate.
func SignatureList(certs ...*x509.Certificate) []byte {
	der := make([][]byte, len(certs))
	for i, c := range certs {
		der[i] = c.Raw
	}
	return bootlog.X509Lists(microsoftOwner, der)
}

// HashList encodes an EFI_SIGNATURE_LIST of SHA-256 hashes, as dbx holds.
func HashList(sums ...[32]byte) []byte {
	sigs := make([][]byte, len(sums))
	for i := range sums {
		sigs[i] = sums[i][:]
	}
	return bootlog.SignatureList(bootlog.EFICertSHA256GUID, microsoftOwner, sigs)
}

// Variable returns the PCR 7 event of Secure Boot variable name.
func Variable(name string, data []byte) Event {
	return Measured(7, bootlog.EvEFIVariableDriverConfig, VariableData(name, data))
}

// Authority returns the PCR 7 event of the db certificate that verified an image.
func Authority(cert *x509.Certificate) Event {
	return Measured(7, bootlog.EvEFIVariableAuthority, VariableData("db", bootlog.SignatureData(microsoftOwner, cert.Raw)))
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
	add(Measured(0, bootlog.EvSCRTMVersion, append(bootlog.UCS2("omens test firmware 1.0"), 0, 0)),
		Image(0, bootlog.EvEFIPlatformFirmwareBlob, "firmware", sha256.Sum256([]byte("firmware"))),
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
	add(Measured(1, bootlog.EvEFIVariableBoot, VariableData("BootOrder", []byte{0, 0})))
	add(Measured(4, bootlog.EvEFIAction, []byte("Calling EFI Application from Boot Option")))
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
		add(Image(4, bootlog.EvEFIBootServicesApplication, name, d))
	}
	if sb.Enabled && len(sb.Chain) < 2 && sb.Authority != nil {
		add(Authority(sb.Authority))
	}
	add(Measured(5, bootlog.EvEFIAction, []byte("Exit Boot Services Invocation")),
		Measured(5, bootlog.EvEFIAction, []byte("Exit Boot Services Returned with Success")))
	return l
}

// bank returns the hash of bank alg.
func bank(alg tpm2.TPMIAlgHash) crypto.Hash {
	h, err := alg.Hash()
	if err != nil {
		panic(fmt.Sprintf("eventlogtest: bank %v: %v", alg, err))
	}
	return h
}

// encoded returns the log's banks and events in bootlog's terms.
func (l *Log) encoded() ([]crypto.Hash, []bootlog.Event) {
	banks := make([]crypto.Hash, len(l.Banks))
	for i, alg := range l.Banks {
		banks[i] = bank(alg)
	}
	events := make([]bootlog.Event, len(l.Events))
	for i, e := range l.Events {
		events[i] = bootlog.Event{PCR: e.PCR, Type: e.Type, Data: e.Data}
		if e.Digests != nil {
			events[i].Digests = map[crypto.Hash][]byte{}
			for alg, d := range e.Digests {
				events[i].Digests[bank(alg)] = d
			}
		}
	}
	return banks, events
}

// Bytes encodes the log (bootlog.Encode): a Spec ID event, then TCG_PCR_EVENT2s.
func (l *Log) Bytes() []byte {
	b, err := bootlog.Encode(l.encoded())
	if err != nil {
		panic(err)
	}
	return b
}

// PCRs returns the values of pcrs in bank alg after the log's events are extended.
func (l *Log) PCRs(alg tpm2.TPMIAlgHash, pcrs ...int) map[int][]byte {
	h := bank(alg)
	_, events := l.encoded()
	out := map[int][]byte{}
	for _, p := range pcrs {
		v := make([]byte, h.Size())
		for _, e := range events {
			if e.PCR != p || e.Type == bootlog.EvNoAction {
				continue
			}
			x := h.New()
			x.Write(v)
			x.Write(e.Digest(h))
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
