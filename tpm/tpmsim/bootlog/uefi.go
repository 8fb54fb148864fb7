package bootlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf16"
)

// GUID is an EFI_GUID (UEFI 2.10, Appendix A), written as text in its usual form
// ("8be4df61-93ca-11d2-aa0d-00e098032b8c").
type GUID string

// GUIDs of the UEFI specification (UEFI 2.10, "Globally Defined Variables" and
// "Signature Database").
const (
	EFIGlobalVariable            GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
	EFIImageSecurityDatabaseGUID GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
	EFICertX509GUID              GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
	EFICertSHA256GUID            GUID = "c1c41626-504c-4092-aca9-41f936934328"
)

// encode returns the 16 bytes of the EFI_GUID: Data1 (UINT32), Data2 and Data3 (UINT16)
// little-endian, then Data4's 8 bytes as written.
func (g GUID) encode() ([]byte, error) {
	parts := strings.Split(string(g), "-")
	raw, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil || len(parts) != 5 || len(raw) != 16 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 {
		return nil, fmt.Errorf("bootlog: %q is not a GUID (want 8-4-4-4-12 hex digits)", string(g))
	}
	out := make([]byte, 16)
	binary.LittleEndian.PutUint32(out[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(out[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(out[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(out[8:], raw[8:])
	return out, nil
}

// mustGUID encodes g; the encoders below panic on a malformed GUID, as their GUIDs are
// the constants of this package or a caller's own, checked once (Boot.Write checks
// Keys.Owner).
func mustGUID(g GUID) []byte {
	b, err := g.encode()
	if err != nil {
		panic(err)
	}
	return b
}

// UCS2 is s in UCS-2 (UTF-16LE), with no terminator, as UEFI strings are written.
func UCS2(s string) []byte {
	var b bytes.Buffer
	for _, c := range utf16.Encode([]rune(s)) {
		le(&b, c)
	}
	return b.Bytes()
}

// VariableData is a UEFI_VARIABLE_DATA (PFP): the variable's vendor GUID, the
// lengths of its name (in characters, no terminator) and data, then both.
func VariableData(vendor GUID, name string, data []byte) []byte {
	var b bytes.Buffer
	b.Write(mustGUID(vendor))
	le(&b, uint64(len(utf16.Encode([]rune(name)))))
	le(&b, uint64(len(data)))
	b.Write(UCS2(name))
	b.Write(data)
	return b.Bytes()
}

// SignatureData is an EFI_SIGNATURE_DATA (UEFI 2.10, "Signature Database"): the owner's
// GUID, then the signature (a DER certificate, a SHA-256 digest).
func SignatureData(owner GUID, sig []byte) []byte {
	return append(mustGUID(owner), sig...)
}

// SignatureList is an EFI_SIGNATURE_LIST of signatures of one type and size, with no
// signature header.
func SignatureList(typ, owner GUID, sigs [][]byte) []byte {
	if len(sigs) == 0 {
		return nil
	}
	size := 16 + len(sigs[0])
	var b bytes.Buffer
	b.Write(mustGUID(typ))
	le(&b, uint32(28+size*len(sigs))) // SignatureListSize
	le(&b, uint32(0))                 // SignatureHeaderSize
	le(&b, uint32(size))              // SignatureSize
	for _, s := range sigs {
		b.Write(SignatureData(owner, s))
	}
	return b.Bytes()
}

// X509Lists is a Secure Boot variable's value holding certificates: one
// EFI_SIGNATURE_LIST of type EFI_CERT_X509_GUID per certificate, as their sizes differ.
func X509Lists(owner GUID, certs [][]byte) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, SignatureList(EFICertX509GUID, owner, [][]byte{c})...)
	}
	return b
}

// imageLoadEvent is a UEFI_IMAGE_LOAD_EVENT (PFP): where the image was loaded, its
// length, its link-time address and the device path it was loaded from.
func imageLoadEvent(addr, length uint64, devicePath []byte) []byte {
	var b bytes.Buffer
	le(&b, addr)
	le(&b, length)
	le(&b, uint64(0))
	le(&b, uint64(len(devicePath)))
	b.Write(devicePath)
	return b.Bytes()
}

// filePath is the device path of a file on a GPT partition (UEFI 2.10, "Media Device
// Path"): a hard drive media node, a file path media node, and the end node.
func filePath(partition GUID, path string) []byte {
	var b bytes.Buffer
	// Hard drive (type 4, subtype 1, 42 bytes): partition 1 from LBA 2048, 1 GiB, its
	// GPT unique partition GUID; MBR type 2 (GPT), signature type 2 (GUID).
	b.Write([]byte{4, 1})
	le(&b, uint16(42))
	le(&b, uint32(1))
	le(&b, uint64(2048))
	le(&b, uint64(2097152))
	b.Write(mustGUID(partition))
	b.Write([]byte{2, 2})
	// File path (type 4, subtype 4): the path in UCS-2 with a terminating NUL.
	name := append(UCS2(path), 0, 0)
	b.Write([]byte{4, 4})
	le(&b, uint16(4+len(name)))
	b.Write(name)
	// End of the entire device path (type 0x7f, subtype 0xff).
	b.Write([]byte{0x7f, 0xff, 4, 0})
	return b.Bytes()
}

// firmwareBlob is a UEFI_PLATFORM_FIRMWARE_BLOB (PFP): base and length of the
// firmware volume measured.
func firmwareBlob(base, length uint64) []byte {
	var b bytes.Buffer
	le(&b, base)
	le(&b, length)
	return b.Bytes()
}
