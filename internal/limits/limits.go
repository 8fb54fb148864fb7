// Package limits is the one home of the caps on the files omens reads: every file an
// operator, another program or an attacker may have written is read through ReadFile,
// which refuses a file that is not a regular file, reads at most one byte past the
// kind's size cap, and, for a kind that nests (HCL, JSON), counts the nesting depth
// before the real parser runs. A parser that recurses (the HCL parser does, once per
// brace) is thereby never handed a file that could exhaust its stack: a Go stack overflow
// is fatal, no recover catches it, and a file of a million braces would kill the SPIRE
// server.
//
// The caps, far above any real file:
//
//	Kind          what                         size    depth  syntax
//	PolicyFile    PCR policy file              1 MiB   32     HCL
//	PolicyState   PCR policy state file        64 MiB  32     JSON
//	Inventory     inventory                    4 MiB   32     HCL
//	ServerConfig  SPIRE server configuration   1 MiB   32     HCL
//	PluginConfig  plugin_data, from SPIRE      1 MiB   32     HCL or JSON
//	HashList      EK allow or deny list        16 MiB  -      lines (250,000 hashes)
//	CABundle      CA bundle file               16 MiB  -      PEM or DER, each file of a directory
//	CRL           CRL                          8 MiB   -      PEM or DER, from a file or over HTTPS
//	DevIDMeta     DevID metadata file          64 KiB  32     JSON
//	DevIDCert     DevID certificate file       1 MiB   -      PEM
//	KeyBlob       TPM key blob                 64 KiB  -      TPM2B_PUBLIC, TPM2B_PRIVATE
//	StepCAConfig  step-ca configuration        16 MiB  32     JSON (ca.json or a JWK file)
//	PasswordFile  password file                64 KiB  -      bytes
//	RABindings    RA bindings file             16 MiB  32     JSON
//	HelperConfig  omens svid helper config     64 KiB  8      HCL
//	PIDFile       pid file of a process        4 KiB   -      one number
//	AgentConfig   SPIRE agent configuration    1 MiB   32     HCL or JSON
//	LUKS2Meta     LUKS2 metadata               4 MiB   32     JSON (cryptsetup luksDump --dump-json-metadata)
//	InstalledFile installed config file, unit  1 MiB   -      bytes (compared by omens config render)
//	EventLog      boot event log (a file)      768 KiB -      TCG binary log (protocol.MaxEventLogSize)
//	PCRFile       PCR values file              1 MiB   8      JSON (omens pcr read --json)
//	LabState      lab state file               64 KiB  8      JSON (the lab's network-partition)
//	SVIDPEM       SVID or trust bundle file    1 MiB   -      PEM (fetched by the lab from a Workload API)
//
// A directory of EK hashes (the server's hash_path, one empty file per hash) is read up to
// HashDirEntries entries, as many as a HashList holds.
//
// Nesting counts objects and lists ("{" and "["), not what only looks like them: for HCL
// the count is made on the tokens of HCL's own scanner (the one its parser reads), so a
// brace in a string, an interpolation, a comment or a heredoc is not counted, exactly as
// the parser does not see it; for JSON, outside strings, whose escapes are followed.
//
// Refusals name the file and the limit:
//
//	limits: policy.hcl is 2097152 bytes, over the 1048576-byte limit for a PCR policy file
//	limits: policy.hcl:1: nesting deeper than the 32-level limit for a PCR policy file
package limits

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Syntax is how a kind of file nests.
type Syntax int

const (
	Flat      Syntax = iota // no nesting (lines, PEM, DER, TPM structures)
	HCL                     // HCL native syntax, as hcl/parser reads it
	HCLOrJSON               // HCL or, when the first non-space character is "{", JSON, as hcl.Parse reads it
	JSON                    // JSON, as encoding/json reads it
)

// Kind is a kind of file and its caps.
type Kind struct {
	What     string // with its article, for errors: "over the limit for <What>"
	MaxBytes int64
	MaxDepth int // for a Syntax that nests
	Syntax   Syntax
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// The kinds of files omens reads.
var (
	PolicyFile   = Kind{What: "a PCR policy file", MaxBytes: 1 * mib, MaxDepth: 32, Syntax: HCL}
	PolicyState  = Kind{What: "a PCR policy state file", MaxBytes: 64 * mib, MaxDepth: 32, Syntax: JSON}
	Inventory    = Kind{What: "an inventory", MaxBytes: 4 * mib, MaxDepth: 32, Syntax: HCL}
	ServerConfig = Kind{What: "a SPIRE server configuration", MaxBytes: 1 * mib, MaxDepth: 32, Syntax: HCL}
	PluginConfig = Kind{What: "a plugin configuration", MaxBytes: 1 * mib, MaxDepth: 32, Syntax: HCLOrJSON}
	HashList     = Kind{What: "an EK hash list", MaxBytes: 16 * mib}
	CABundle     = Kind{What: "a CA bundle file", MaxBytes: 16 * mib}
	CRL          = Kind{What: "a CRL", MaxBytes: 8 * mib}
	DevIDMeta    = Kind{What: "a DevID metadata file", MaxBytes: 64 * kib, MaxDepth: 32, Syntax: JSON}
	DevIDCert    = Kind{What: "a DevID certificate file", MaxBytes: 1 * mib}
	KeyBlob      = Kind{What: "a TPM key blob", MaxBytes: 64 * kib}
	StepCAConfig = Kind{What: "a step-ca configuration", MaxBytes: 16 * mib, MaxDepth: 32, Syntax: JSON}
	PasswordFile = Kind{What: "a password file", MaxBytes: 64 * kib}
	RABindings   = Kind{What: "an RA bindings file", MaxBytes: 16 * mib, MaxDepth: 32, Syntax: JSON}
	HelperConfig = Kind{What: "an SVID helper configuration", MaxBytes: 64 * kib, MaxDepth: 8, Syntax: HCL}
	PIDFile      = Kind{What: "a pid file", MaxBytes: 4 * kib}
	AgentConfig  = Kind{What: "a SPIRE agent configuration", MaxBytes: 1 * mib, MaxDepth: 32, Syntax: HCLOrJSON}
	LUKS2Meta    = Kind{What: "LUKS2 metadata", MaxBytes: 4 * mib, MaxDepth: 32, Syntax: JSON}
	// InstalledFile is a configuration file or unit on a host, which `omens config
	// render` compares with what it renders.
	// EventLog is a boot event log read from a file by the operator's commands (omens
	// eventlog, pcr policy learn): the protocol's bound on the log an agent sends.
	EventLog = Kind{What: "a boot event log", MaxBytes: 768 * kib}
	// PCRFile is what `omens pcr read --json` prints, read back by `omens eventlog verify`.
	PCRFile       = Kind{What: "a PCR values file", MaxBytes: 1 * mib, MaxDepth: 8, Syntax: JSON}
	InstalledFile = Kind{What: "an installed configuration file", MaxBytes: 1 * mib}
	LabState      = Kind{What: "a lab state file", MaxBytes: 64 * kib, MaxDepth: 8, Syntax: JSON}
	SVIDPEM       = Kind{What: "an SVID or trust bundle PEM file", MaxBytes: 1 * mib}
)

// HashDirEntries caps the entries of a hash directory (spire-tpm-plugin's hash_path: one
// empty file per allowed EK hash), as many as HashList holds hashes.
const HashDirEntries = 250_000

// ErrTooLarge and ErrTooDeep match (errors.Is) the refusals of ReadFile and Check.
var (
	ErrTooLarge = errors.New("limits: over the size limit")
	ErrTooDeep  = errors.New("limits: over the nesting limit")
)

// Error is a refusal: File is over Limit bytes (Depth false) or nests deeper than Limit
// levels at Line (Depth true).
type Error struct {
	File  string
	Kind  Kind
	Depth bool
	Size  int64 // bytes, for a size refusal
	Line  int   // where the nesting passed the limit, for a depth refusal
}

func (e *Error) Error() string {
	if e.Depth {
		return fmt.Sprintf("limits: %s:%d: nesting deeper than the %d-level limit for %s", e.File, e.Line, e.Kind.MaxDepth, e.Kind.What)
	}
	return fmt.Sprintf("limits: %s is %d bytes, over the %d-byte limit for %s", e.File, e.Size, e.Kind.MaxBytes, e.Kind.What)
}

func (e *Error) Is(target error) bool {
	return (e.Depth && target == ErrTooDeep) || (!e.Depth && target == ErrTooLarge)
}

// ReadFile reads the file at path, a k: it refuses a file that is not a regular file (a
// FIFO or a device could block or never end) and a file over k.MaxBytes, reading no more
// than one byte past the cap whatever the file's size claims, then runs Check. A symbolic
// link is followed. Other errors are the os package's, unwrapped, so that errors.Is(err,
// fs.ErrNotExist) still works.
func ReadFile(path string, k Kind) ([]byte, error) {
	f, err := openNoBlock(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("limits: %s is not a regular file (%s): %s must be one", path, kindOf(info.Mode()), k.What)
	}
	if info.Size() > k.MaxBytes {
		return nil, &Error{File: path, Kind: k, Size: info.Size()}
	}
	// The size fstat gave may be stale or false (a file being appended to, procfs):
	// read one byte more than the cap to see whether there is more.
	b, err := io.ReadAll(io.LimitReader(f, k.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > k.MaxBytes {
		return nil, &Error{File: path, Kind: k, Size: max(info.Size(), int64(len(b)))}
	}
	if err := Check(path, b, k); err != nil {
		return nil, err
	}
	return b, nil
}

// Check applies k's caps to src, the content of name (a file, or what labels bytes
// that did not come from a file, such as "plugin_data"): its size, and its nesting depth
// for a k that nests.
func Check(name string, src []byte, k Kind) error {
	if int64(len(src)) > k.MaxBytes {
		return &Error{File: name, Kind: k, Size: int64(len(src))}
	}
	var depth, line int
	switch k.Syntax {
	case Flat:
		return nil
	case HCL:
		depth, line = DepthHCL(src, k.MaxDepth)
	case HCLOrJSON:
		if isHCLJSON(src) {
			depth, line = DepthHCLJSON(src, k.MaxDepth)
		} else {
			depth, line = DepthHCL(src, k.MaxDepth)
		}
	case JSON:
		depth, line = DepthJSON(src, k.MaxDepth)
	}
	if depth > k.MaxDepth {
		return &Error{File: name, Kind: k, Depth: true, Line: line}
	}
	return nil
}

func kindOf(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}
