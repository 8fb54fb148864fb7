package ra

// What a client is told when the RA refuses, and what the RA's log keeps. A refusal body
// names the failed check and a request id, with a fixed sentence per check; the detail
// (the value that failed, step-ca's answer, a file's path, an internal error) goes only to
// the RA's log, on the decision line that carries the same request id. An unauthenticated
// client learns which rule it broke, never how the RA is built.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"omens.dev/omens/metrics"
	"omens.dev/omens/protocol"
	"omens.dev/omens/ra/stepca"
	"omens.dev/omens/verify"
)

// CheckInternal names a failure of the RA itself (its state file, its host): the client
// is not at fault and learns nothing more than the request id.
const CheckInternal = "internal"

// refusal is an error with its HTTP status and check.
type refusal struct {
	status int
	check  string
	err    error
	host   string
	ekHash string
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(status int, check string, format string, args ...any) *refusal {
	return &refusal{status: status, check: check, err: fmt.Errorf(format, args...)}
}

// answers are the fixed sentences of refusal bodies, one per check the RA adds; the
// verifier's checks share one.
var answers = map[string]string{
	CheckSession:                "the enrollment session is unknown, used or expired: start the enrollment again",
	CheckBinding:                "the host name is bound to another TPM, this TPM is bound to another host, or the host was decommissioned: ask the RA's operator",
	CheckPending:                "this TPM is not bound to the host name yet: the RA's operator approves it with `omens ra approve HOST`; enroll again once approved",
	CheckRate:                   "too many requests or open enrollments: wait a minute and retry",
	CheckSize:                   "the request is too large",
	CheckIssue:                  "the certificate authority did not issue the certificate: ask the RA's operator",
	CheckMethod:                 "this endpoint wants POST",
	CheckInternal:               "the RA failed: ask its operator, giving the request id",
	verify.CheckProtocol:        "the request is malformed",
	stepca.CheckDevIDCSRProfile: "the CSR asks for more than a DevID certificate (subject other than the host's common name, extensions, attributes or names): send a CSR with the host name only",
}

const verifierAnswer = "the TPM's evidence failed this check: the RA's operator has the detail under the request id"

// Answer is the fixed sentence a refusal body carries for check.
func Answer(check string) string {
	if a, ok := answers[check]; ok {
		return a
	}
	return verifierAnswer
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// classify returns the HTTP status and check of err, and fills the audit record from it.
func classify(err error, a *audit) (int, string) {
	var rf *refusal
	var ce *verify.CheckError
	switch {
	case errors.As(err, &rf):
		if rf.host != "" {
			a.host = rf.host
		}
		if rf.ekHash != "" {
			a.ekHash = rf.ekHash
		}
		return rf.status, rf.check
	case errors.As(err, &ce):
		if ce.EKHash != "" {
			a.ekHash = ce.EKHash
		}
		if ce.Check == verify.CheckProtocol {
			return http.StatusBadRequest, ce.Check
		}
		return http.StatusForbidden, ce.Check
	default:
		return http.StatusInternalServerError, CheckInternal
	}
}

func (s *Server) writeError(w http.ResponseWriter, err error, a *audit) {
	status, check := classify(err, a)
	level := s.cfg.Log.Warn
	if status >= 500 {
		level = s.cfg.Log.Error
	}
	level("ra decision", "request_id", a.id, "path", a.path, "source", a.source, "result", "refused", "check", check,
		"host", a.host, "ek_hash", a.ekHash, "reason", err.Error())
	s.cfg.Metrics.request(a, metrics.ResultRefused, check)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(protocol.EnrollError{Check: check, RequestID: a.id, Error: Answer(check)})
	w.Write(b)
}
