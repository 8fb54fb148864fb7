package protocol_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"omens.dev/omens/protocol"
)

func TestDecodeEnrollBeginRefusals(t *testing.T) {
	ok := `{"v":1,"type":"enroll_begin","host":"auth.funlab.casa","ek_public":"AQ==","ak_public":"Ag==","devid_public":"Aw=="}`
	for _, tc := range []struct{ name, in, err string }{
		{"accepted", ok, ""},
		{"unknown version", strings.Replace(ok, `"v":1`, `"v":2`, 1), "protocol: malformed message: unknown protocol version 2 (this side speaks 1)"},
		{"out of order", strings.Replace(ok, `"enroll_begin"`, `"enroll_finish"`, 1), `protocol: malformed message: message out of order: got "enroll_finish", want "enroll_begin"`},
		{"host with upper case", strings.Replace(ok, "auth.funlab.casa", "Auth.funlab.casa", 1), `protocol: malformed message: enroll_begin: host "Auth.funlab.casa": want a lower-case DNS name`},
		{"no host", strings.Replace(ok, `"host":"auth.funlab.casa",`, "", 1), `protocol: malformed message: enroll_begin: host "": want a DNS name of 1 to 253 characters`},
		{"no DevID key", strings.Replace(ok, `,"devid_public":"Aw=="`, "", 1), "protocol: malformed message: enroll_begin: devid_public is missing"},
		{"unknown field", strings.Replace(ok, `"host"`, `"extra":1,"host"`, 1), `protocol: malformed message: enroll_begin: json: unknown field "extra"`},
		{"oversized", ok + string(bytes.Repeat([]byte(" "), protocol.MaxEnrollMessageSize)), "protocol: malformed message: enroll_begin is 65651 bytes, limit 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := protocol.DecodeEnrollBegin([]byte(tc.in))
			if tc.err == "" {
				if err != nil || m.Host != "auth.funlab.casa" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.err || !errors.Is(err, protocol.ErrMalformed) {
				t.Fatalf("error %v\nwant %s", err, tc.err)
			}
		})
	}
}
