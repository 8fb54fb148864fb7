package demo

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"omens.dev/omens/internal/statefile"
)

// MaxSVIDFileSize bounds the SVID files ReadSVIDFile accepts; one is a few hundred bytes.
const MaxSVIDFileSize = 64 << 10

// SVIDStatus describes the X.509-SVID a workload holds. `omens-demo serve --svid-file` and
// `omens-demo call --svid-file` write it as JSON when they get their first SVID and again
// each time the agent renews it, so that another program (the lab's status table) can show
// which workloads hold SVIDs, and until when:
//
//	{
//	  "spiffe_id": "spiffe://funlab.casa/openbao",
//	  "serial": "7c0f…",
//	  "not_before": "2026-11-29T10:00:00Z",
//	  "not_after": "2026-11-29T11:00:00Z",
//	  "pid": 4242,
//	  "updated_at": "2026-11-29T10:00:01.5Z"
//	}
//
// The file is replaced atomically (a reader sees the old status or the new, never a
// mix), but it is not removed when the workload exits, whether by signal or by crash: it
// then describes an SVID that no running process holds. A holder is therefore considered
// to hold a valid SVID when both
//
//   - its process PID is alive (the reader's check, for instance kill(pid, 0) on Unix;
//     mind that the kernel reuses PIDs), and
//   - Valid(now) holds: now lies between NotBefore and NotAfter.
type SVIDStatus struct {
	SPIFFEID  string    `json:"spiffe_id"`  // the SVID's SPIFFE ID
	Serial    string    `json:"serial"`     // the certificate's serial number, in hex
	NotBefore time.Time `json:"not_before"` // RFC 3339
	NotAfter  time.Time `json:"not_after"`  // RFC 3339
	PID       int       `json:"pid"`        // the process holding the SVID
	UpdatedAt time.Time `json:"updated_at"` // RFC 3339: when the file was written
}

// Valid reports whether now lies in the SVID's validity period, NotBefore through NotAfter
// inclusive (RFC 5280, section 4.1.2.5). It says nothing about the process: see
// SVIDStatus for the PID check a reader adds.
func (s SVIDStatus) Valid(now time.Time) bool {
	return !now.Before(s.NotBefore) && !now.After(s.NotAfter)
}

// check reports the first field of s that is missing or malformed.
func (s SVIDStatus) check() error {
	switch {
	case s.SPIFFEID == "":
		return errors.New("spiffe_id is missing")
	case s.Serial == "":
		return errors.New("serial is missing")
	case s.NotBefore.IsZero():
		return errors.New("not_before is missing")
	case s.NotAfter.IsZero():
		return errors.New("not_after is missing")
	case s.NotAfter.Before(s.NotBefore):
		return fmt.Errorf("not_after %s is before not_before %s",
			s.NotAfter.Format(time.RFC3339), s.NotBefore.Format(time.RFC3339))
	case s.PID <= 0:
		return fmt.Errorf("pid %d is not a process ID", s.PID)
	case s.UpdatedAt.IsZero():
		return errors.New("updated_at is missing")
	}
	if _, err := spiffeid.FromString(s.SPIFFEID); err != nil {
		return fmt.Errorf("spiffe_id %q is not a SPIFFE ID: %v", s.SPIFFEID, err)
	}
	if _, err := hex.DecodeString(s.Serial); err != nil {
		return fmt.Errorf("serial %q is not hex: %v", s.Serial, err)
	}
	return nil
}

// ReadSVIDFile reads the SVIDStatus a workload wrote to path. The file is untrusted input:
// one larger than MaxSVIDFileSize, not a regular file (a symbolic link included), not JSON,
// or with a field missing or malformed is refused with an error naming path and the field. A missing file gives an
// error that matches fs.ErrNotExist. Fields it does not know are ignored.
func ReadSVIDFile(path string) (SVIDStatus, error) {
	// Lstat first: the file is written by another user, who could put a symbolic link to
	// a file they may not read, or a FIFO that would block the reader, in its place.
	fi, err := os.Lstat(path)
	if err != nil {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file %s: not a regular file (mode %v)", path, fi.Mode())
	}
	// O_NONBLOCK, and the same file as the one checked: a swap after Lstat is refused
	// rather than followed or waited on.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file: %w", err)
	}
	defer f.Close()
	if opened, err := f.Stat(); err != nil || !os.SameFile(fi, opened) {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file %s: replaced while being read", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSVIDFileSize+1))
	if err != nil {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file: %w", err)
	}
	if len(b) > MaxSVIDFileSize {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file %s: larger than %d bytes", path, MaxSVIDFileSize)
	}
	s, err := parseSVIDStatus(b)
	if err != nil {
		return SVIDStatus{}, fmt.Errorf("demo: SVID file %s: %v", path, err)
	}
	return s, nil
}

// svidStatusJSON is SVIDStatus as the file holds it, times as text, so that a malformed
// time is reported with the name of its field.
type svidStatusJSON struct {
	SPIFFEID  string `json:"spiffe_id"`
	Serial    string `json:"serial"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
	PID       int    `json:"pid"`
	UpdatedAt string `json:"updated_at"`
}

// parseSVIDStatus parses and checks the contents of an SVID file.
func parseSVIDStatus(b []byte) (SVIDStatus, error) {
	var j svidStatusJSON
	if err := json.Unmarshal(b, &j); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field == "" {
				return SVIDStatus{}, fmt.Errorf("malformed JSON: a JSON %s, not an object", typeErr.Value)
			}
			return SVIDStatus{}, fmt.Errorf("%s is a JSON %s, want %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return SVIDStatus{}, fmt.Errorf("malformed JSON: %v", err)
	}
	s := SVIDStatus{SPIFFEID: j.SPIFFEID, Serial: j.Serial, PID: j.PID}
	for _, f := range []struct {
		name, text string
		t          *time.Time
	}{
		{"not_before", j.NotBefore, &s.NotBefore},
		{"not_after", j.NotAfter, &s.NotAfter},
		{"updated_at", j.UpdatedAt, &s.UpdatedAt},
	} {
		if f.text == "" {
			continue // check reports it missing
		}
		t, err := time.Parse(time.RFC3339, f.text)
		if err != nil {
			return SVIDStatus{}, fmt.Errorf("%s %q is not an RFC 3339 time", f.name, f.text)
		}
		*f.t = t
	}
	if err := s.check(); err != nil {
		return SVIDStatus{}, err
	}
	return s, nil
}

// WriteSVIDFile writes s to path as JSON, mode 0644, atomically: it writes a temporary
// file in the same directory and renames it over path, so a reader never sees a partial
// file. It refuses a status that ReadSVIDFile would refuse.
func WriteSVIDFile(path string, s SVIDStatus) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("demo: SVID file %s: %v", path, err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("demo: SVID file %s: %v", path, err)
	}
	b = append(b, '\n')
	if err := statefile.WriteAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("demo: write SVID file %s: %w", path, err)
	}
	return nil
}

// statusOf describes svid as held by process pid at now.
func statusOf(svid *x509svid.SVID, pid int, now time.Time) SVIDStatus {
	leaf := svid.Certificates[0]
	return SVIDStatus{
		SPIFFEID:  svid.ID.String(),
		Serial:    serialHex(leaf),
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
		PID:       pid,
		UpdatedAt: now.UTC(),
	}
}

// writeSVIDStatus writes the SVID file at path for svid, held by this process now.
func writeSVIDStatus(path string, svid *x509svid.SVID) error {
	return WriteSVIDFile(path, statusOf(svid, os.Getpid(), time.Now()))
}

// serialHex renders a certificate's serial number in hex.
func serialHex(cert *x509.Certificate) string {
	return hex.EncodeToString(cert.SerialNumber.Bytes())
}

// describeSVID names an SVID's serial number and expiry.
func describeSVID(s *x509svid.SVID) string {
	leaf := s.Certificates[0]
	return fmt.Sprintf("SVID serial %s valid until %s", serialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
}

// watchRenewals follows a source that reports updates (as an X509Source does) in the
// background, until ctx ends or stop is called: it logs each new SVID and, when svidFile
// is not "", rewrites that SVID file to describe it. current is the SVID held when it
// starts. stop returns once the watching has ended.
func watchRenewals(ctx context.Context, src Source, current *x509svid.SVID, logger *log.Logger, svidFile string) (stop func()) {
	u, ok := src.(interface{ Updated() <-chan struct{} })
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-u.Updated():
			}
			s, err := src.GetX509SVID()
			if err != nil {
				logger.Printf("SVID update: %v", err)
				continue
			}
			if s.Certificates[0].Equal(current.Certificates[0]) {
				continue
			}
			logger.Printf("SVID renewed: %s %s", s.ID, describeSVID(s))
			current = s
			if svidFile != "" {
				if err := writeSVIDStatus(svidFile, s); err != nil {
					logger.Print(err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
