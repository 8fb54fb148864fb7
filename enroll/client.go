package enroll

// The RA's HTTP API (protocol's enrollment messages over HTTPS) and its refusals.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"omens.dev/omens/protocol"
)

// post sends msg to the RA at path and decodes the answer with decode.
func post[T any](ctx context.Context, cfg Config, path string, msg any, decode func([]byte) (*T, error)) (*T, error) {
	body, err := protocol.EncodeEnroll(msg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.RAURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cfg.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("enroll: RA %s: %w", cfg.RAURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxEnrollMessageSize+1))
	if err != nil {
		return nil, fmt.Errorf("enroll: RA %s: %w", cfg.RAURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e protocol.EnrollError
		if json.Unmarshal(b, &e) == nil && e.Check != "" {
			return nil, &RAError{Status: resp.StatusCode, Check: printable(e.Check, 64), RequestID: printable(e.RequestID, 64), Message: printable(e.Error, 512)}
		}
		return nil, &StatusError{URL: cfg.RAURL, Status: resp.StatusCode, Text: printable(resp.Status, 64)}
	}
	m, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("enroll: RA %s: %w", cfg.RAURL, err)
	}
	return m, nil
}

// RAError is a refusal by the RA: the check that failed and the request id under which
// the RA's operator finds the detail in the RA's log; Message is the RA's fixed sentence
// for the check.
type RAError struct {
	Status    int
	Check     string
	RequestID string
	Message   string
}

func (e *RAError) Error() string {
	return fmt.Sprintf("enroll: the RA refused (%d, check %s, request id %s): %s", e.Status, e.Check, e.RequestID, e.Message)
}

// StatusError is an RA answer that is not 200 and carries no refusal: a proxy or a
// server in trouble.
type StatusError struct {
	URL    string
	Status int
	Text   string
}

func (e *StatusError) Error() string { return fmt.Sprintf("enroll: RA %s: %s", e.URL, e.Text) }

// printable keeps at most max printable ASCII characters of what the RA said, so a
// hostile answer cannot drive the operator's terminal.
func printable(s string, max int) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= max {
			b.WriteString("…")
			break
		}
		if c >= 0x20 && c < 0x7f {
			b.WriteRune(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
