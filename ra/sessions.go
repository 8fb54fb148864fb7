package ra

// The table of open enrollments, between EnrollBegin and EnrollFinish. Opening one needs
// only public data (an EK certificate is public), so the table is built to resist a flood:
//
//   - a session is created only after the EK chain and the AK and DevID key were checked
//     (verify.Enroller.BeginEnrollment), so only EKs of trusted manufacturers take a place;
//   - one open session per EK: a new begin for the same EK replaces the old session,
//     whose finish is then refused (check session). Refusing instead would let anyone
//     who knows a TPM's public EK hold its place and lock it out; replacing means such an
//     attacker must win a race against each finish, within the per-address rate limit;
//   - each client address (an IPv6 client: its /64) holds at most MaxSessionsPerAddress
//     open sessions; more are refused with check rate_limit (HTTP 429);
//   - when the whole table is full, the oldest session is dropped for the new one: a
//     flood from many addresses must then open MaxSessions sessions within one device's
//     begin-to-finish time (about a second) to cut it off, instead of once per SessionTTL.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"omens.dev/omens/verify"
)

type session struct {
	id string
	// e is the enrollment; a session taken from the database has saved instead, which
	// the finishing Server resumes (verify.Enroller.ResumeEnrollment).
	e     *verify.Enrollment
	saved *verify.SavedEnrollment
	// begin is the EnrollBegin message, which a session in the database keeps.
	begin   []byte
	addr    string
	ekHash  string
	opened  time.Time
	expires time.Time
}

type sessionTable struct {
	byID   map[string]*session
	byEK   map[string]*session
	byAddr map[string]int
}

func newSessionTable() *sessionTable {
	return &sessionTable{byID: map[string]*session{}, byEK: map[string]*session{}, byAddr: map[string]int{}}
}

func (t *sessionTable) remove(s *session) {
	if t.byID[s.id] != s {
		return
	}
	delete(t.byID, s.id)
	if t.byEK[s.ekHash] == s {
		delete(t.byEK, s.ekHash)
	}
	if t.byAddr[s.addr]--; t.byAddr[s.addr] <= 0 {
		delete(t.byAddr, s.addr)
	}
}

// open adds s, under the rules above; the caller holds the server's lock.
func (t *sessionTable) open(s *session, now time.Time, max, perAddr int) error {
	for _, o := range t.byID {
		if now.After(o.expires) {
			t.remove(o)
		}
	}
	if old := t.byEK[s.ekHash]; old != nil {
		t.remove(old)
	}
	if t.byAddr[s.addr] >= perAddr {
		return &refusal{status: http.StatusTooManyRequests, check: CheckRate, ekHash: s.ekHash,
			err: fmt.Errorf("ra: %s has %d enrollments open, the most one address may have; retry once they finish or expire", s.addr, t.byAddr[s.addr])}
	}
	for len(t.byID) >= max {
		var oldest *session
		for _, o := range t.byID {
			if oldest == nil || o.opened.Before(oldest.opened) {
				oldest = o
			}
		}
		t.remove(oldest)
	}
	t.byID[s.id] = s
	t.byEK[s.ekHash] = s
	t.byAddr[s.addr]++
	return nil
}

// take removes and returns the session id names, if it is open at now: a session is used
// once, whatever happens next.
func (t *sessionTable) take(id string, now time.Time) *session {
	s := t.byID[id]
	if s == nil {
		return nil
	}
	t.remove(s)
	if now.After(s.expires) {
		return nil
	}
	return s
}

func (t *sessionTable) len() int { return len(t.byID) }

func newSessionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
