package enroll

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"omens.dev/omens/protocol"
)

// TestRARefusal: the device shows the RA's check and request id, and what the RA said
// reaches the operator's terminal only as printable characters.
func TestRARefusal(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"check":"host_binding","request_id":"0123456789abcdef","error":"bound elsewhere\u001b[2J\n"}`))
	}))
	defer hs.Close()
	_, err := post(context.Background(), Config{RAURL: hs.URL, HTTP: hs.Client()}, "/v1/enroll/begin", &protocol.EnrollBegin{}, protocol.DecodeEnrollChallenge)
	var re *RAError
	want := "enroll: the RA refused (403, check host_binding, request id 0123456789abcdef): bound elsewhere?[2J?"
	if !errors.As(err, &re) || err.Error() != want || re.Check != "host_binding" || re.RequestID != "0123456789abcdef" {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}
