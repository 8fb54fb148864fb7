package protocol_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"omens.dev/omens/protocol"
)

func b64(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, n)) }

// obj builds a message from its JSON fields, in order.
func obj(fields ...string) []byte { return []byte("{" + strings.Join(fields, ",") + "}") }

var (
	helloFields = []string{`"v":1`, `"type":"hello"`, `"mode":"ek_cert"`, `"ek_cert":"` + b64(900) + `"`,
		`"ek_public":"` + b64(314) + `"`, `"ak_public":"` + b64(88) + `"`, `"pcr_bank":"sha256"`, `"pcrs":[0,2,4,7]`,
		`"tpm":{"manufacturer":"MSFT","model":"omens-sim","firmware":"8217.4131.22.13878"}`}
	challengeFields = []string{`"v":1`, `"type":"challenge"`, `"credential_blob":"` + b64(68) + `"`,
		`"encrypted_secret":"` + b64(256) + `"`, `"nonce":"` + b64(32) + `"`}
	devidFields    = []string{`"mode":"devid"`, `"devid_cert":["` + b64(600) + `","` + b64(700) + `"]`, `"devid_public":"` + b64(88) + `"`}
	certifyFields  = []string{`"devid_certify":"` + b64(150) + `"`, `"devid_certify_signature":"` + b64(72) + `"`}
	evidenceFields = []string{`"v":1`, `"type":"evidence"`, `"secret":"` + b64(32) + `"`, `"quote":"` + b64(129) + `"`,
		`"signature":"` + b64(72) + `"`, `"pcr_values":["` + b64(32) + `","` + b64(32) + `","` + b64(32) + `","` + b64(32) + `"]`}
)

// with returns fields with the field named key replaced by kv, or kv appended; an empty
// value after the colon removes the field.
func with(fields []string, kv string) []string {
	key, _, _ := strings.Cut(kv, ":")
	out := make([]string, 0, len(fields)+1)
	found := false
	for _, f := range fields {
		if strings.HasPrefix(f, key+":") {
			found = true
			if !strings.HasSuffix(kv, ":") {
				out = append(out, kv)
			}
			continue
		}
		out = append(out, f)
	}
	if !found {
		out = append(out, kv)
	}
	return out
}

type decodeCase struct {
	name string
	in   []byte
	err  string // empty: accepted
}

func runDecodeCases[T any](t *testing.T, decode func([]byte) (*T, error), cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode(tc.in)
			if tc.err == "" {
				if err != nil || m == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v; want %q", m, tc.err)
			}
			if m != nil {
				t.Errorf("a message was returned with the error")
			}
			if err.Error() != tc.err {
				t.Errorf("error:\n got  %s\n want %s", err, tc.err)
			}
			if !errors.Is(err, protocol.ErrMalformed) {
				t.Errorf("error does not wrap ErrMalformed")
			}
		})
	}
}

const malformed = "protocol: malformed message: "

func TestDecodeHello(t *testing.T) {
	h := func(kv ...string) []byte {
		f := helloFields
		for _, x := range kv {
			f = with(f, x)
		}
		return obj(f...)
	}
	pcrs25 := `"pcrs":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,23]`
	runDecodeCases(t, protocol.DecodeHello, []decodeCase{
		{name: "honest", in: h()},
		{name: "honest without EK certificate", in: h(`"ek_cert":`)},
		{name: "devid mode", in: h(devidFields...)},
		{name: "devid mode, certificate alone", in: h(append(devidFields, `"devid_cert":["`+b64(600)+`"]`)...)},
		{name: "devid mode without DevID", in: h(`"mode":"devid"`), err: malformed + `hello: 0 DevID certificates, want 1 to 8 in mode "devid"`},
		{name: "devid mode without DevID public area", in: h(append(devidFields, `"devid_public":`)...), err: malformed + "hello: devid_public is missing"},
		{name: "devid mode with an empty certificate", in: h(append(devidFields, `"devid_cert":["`+b64(600)+`",""]`)...), err: malformed + "hello: devid_cert[1] is missing"},
		{name: "devid mode with 9 certificates", in: h(append(devidFields, `"devid_cert":[`+strings.TrimSuffix(strings.Repeat(`"`+b64(10)+`",`, 9), ",")+`]`)...),
			err: malformed + `hello: 9 DevID certificates, want 1 to 8 in mode "devid"`},
		{name: "devid certificate over 8 KiB", in: h(append(devidFields, `"devid_cert":["`+b64(8193)+`"]`)...), err: malformed + "hello: devid_cert[0] is 8193 bytes, limit 8192"},
		{name: "DevID public area over 8 KiB", in: h(append(devidFields, `"devid_public":"`+b64(8193)+`"`)...), err: malformed + "hello: devid_public is 8193 bytes, limit 8192"},
		{name: "DevID certificates not a list", in: h(append(devidFields, `"devid_cert":"`+b64(600)+`"`)...),
			err: malformed + "hello: json: cannot unmarshal string into Go struct field Hello.devid_cert of type [][]uint8"},
		{name: "ek_cert mode with a DevID certificate", in: h(devidFields[1]), err: malformed + `hello: devid_cert and devid_public are sent only in mode "devid"`},
		{name: "ek_cert mode with a DevID public area", in: h(devidFields[2]), err: malformed + `hello: devid_cert and devid_public are sent only in mode "devid"`},
		{name: "ek_cert mode with an empty DevID list", in: h(`"devid_cert":[]`)},
		{name: "all PCRs", in: h(`"pcrs":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23]`)},
		{name: "whitespace around", in: append(append([]byte(" \n"), h()...), "\n"...)},
		{name: "empty", in: nil, err: malformed + "hello: unexpected end of JSON input"},
		{name: "not JSON", in: []byte("hello"), err: malformed + "hello: invalid character 'h' looking for beginning of value"},
		{name: "array", in: []byte("[1]"), err: malformed + "hello: json: cannot unmarshal array into Go value of type protocol.header"},
		{name: "null", in: []byte("null"), err: malformed + "unknown protocol version 0 (this side speaks 1)"},
		{name: "truncated", in: h()[:200], err: malformed + "hello: unexpected end of JSON input"},
		{name: "no version", in: h(`"v":`), err: malformed + "unknown protocol version 0 (this side speaks 1)"},
		{name: "version 2", in: h(`"v":2`), err: malformed + "unknown protocol version 2 (this side speaks 1)"},
		{name: "version as a string", in: h(`"v":"1"`), err: malformed + "hello: json: cannot unmarshal string into Go struct field header.v of type int"},
		{name: "challenge in its place", in: obj(challengeFields...), err: malformed + `message out of order: got "challenge", want "hello"`},
		{name: "evidence in its place", in: obj(evidenceFields...), err: malformed + `message out of order: got "evidence", want "hello"`},
		{name: "no type", in: h(`"type":`), err: malformed + `message out of order: got "", want "hello"`},
		{name: "unknown field", in: h(`"devid_chain":"AA=="`), err: malformed + `hello: json: unknown field "devid_chain"`},
		{name: "unknown field in tpm", in: h(`"tpm":{"vendor":"x"}`), err: malformed + `hello: json: unknown field "vendor"`},
		{name: "data after the message", in: append(h(), "{}"...), err: malformed + "hello: invalid character '{' after top-level value"},
		{name: "oversized", in: append(h(), bytes.Repeat([]byte(" "), protocol.MaxMessageSize-len(h())+1)...), err: malformed + "hello is 1572865 bytes, limit 1572864"},
		{name: "bad base64", in: h(`"ek_public":"!!!!"`), err: malformed + "hello: illegal base64 data at input byte 0"},
		{name: "unknown mode", in: h(`"mode":"join_token"`), err: malformed + `hello: unknown mode "join_token" (want "ek_cert" or "devid")`},
		{name: "no EK public area", in: h(`"ek_public":`), err: malformed + "hello: ek_public is missing"},
		{name: "empty AK public area", in: h(`"ak_public":""`), err: malformed + "hello: ak_public is missing"},
		{name: "EK certificate over 8 KiB", in: h(`"ek_cert":"` + b64(8193) + `"`), err: malformed + "hello: ek_cert is 8193 bytes, limit 8192"},
		{name: "AK public area over 8 KiB", in: h(`"ak_public":"` + b64(8193) + `"`), err: malformed + "hello: ak_public is 8193 bytes, limit 8192"},
		{name: "no PCRs", in: h(`"pcrs":[]`), err: malformed + "hello: 0 PCRs selected, want 1 to 24"},
		{name: "25 PCRs", in: h(pcrs25), err: malformed + "hello: 25 PCRs selected, want 1 to 24"},
		{name: "PCR 24", in: h(`"pcrs":[0,24]`), err: malformed + "hello: PCR selection [0 24] is not ascending indices from 0 to 23"},
		{name: "negative PCR", in: h(`"pcrs":[-1]`), err: malformed + "hello: PCR selection [-1] is not ascending indices from 0 to 23"},
		{name: "PCRs out of order", in: h(`"pcrs":[7,0]`), err: malformed + "hello: PCR selection [7 0] is not ascending indices from 0 to 23"},
		{name: "PCR twice", in: h(`"pcrs":[0,0]`), err: malformed + "hello: PCR selection [0 0] is not ascending indices from 0 to 23"},
		{name: "long bank name", in: h(`"pcr_bank":"` + strings.Repeat("s", 17) + `"`), err: malformed + "hello: a text field is longer than its limit"},
		{name: "long model", in: h(`"tpm":{"model":"` + strings.Repeat("m", 65) + `"}`), err: malformed + "hello: a text field is longer than its limit"},
	})
}

func TestDecodeChallenge(t *testing.T) {
	c := func(kv ...string) []byte {
		f := challengeFields
		for _, x := range kv {
			f = with(f, x)
		}
		return obj(f...)
	}
	runDecodeCases(t, protocol.DecodeChallenge, []decodeCase{
		{name: "honest", in: c()},
		{name: "hello in its place", in: obj(helloFields...), err: malformed + `message out of order: got "hello", want "challenge"`},
		{name: "truncated", in: c()[:50], err: malformed + "challenge: unexpected end of JSON input"},
		{name: "version 0", in: c(`"v":0`), err: malformed + "unknown protocol version 0 (this side speaks 1)"},
		{name: "unknown field", in: c(`"ttl":30`), err: malformed + `challenge: json: unknown field "ttl"`},
		{name: "no credential blob", in: c(`"credential_blob":`), err: malformed + "challenge: credential_blob is missing"},
		{name: "no encrypted secret", in: c(`"encrypted_secret":""`), err: malformed + "challenge: encrypted_secret is missing"},
		{name: "no nonce", in: c(`"nonce":null`), err: malformed + "challenge: nonce is missing"},
		{name: "nonce of 65 bytes", in: c(`"nonce":"` + b64(65) + `"`), err: malformed + "challenge: nonce is 65 bytes, limit 64"},
		{name: "credential blob over 8 KiB", in: c(`"credential_blob":"` + b64(8193) + `"`), err: malformed + "challenge: credential_blob is 8193 bytes, limit 8192"},
	})
}

func TestDecodeEvidence(t *testing.T) {
	e := func(kv ...string) []byte {
		f := evidenceFields
		for _, x := range kv {
			f = with(f, x)
		}
		return obj(f...)
	}
	atLimit := e(`"event_log":"` + b64(protocol.MaxEventLogSize) + `"`)
	overLimit := e(`"event_log":"` + b64(protocol.MaxEventLogSize+1) + `"`)
	many := `"pcr_values":[` + strings.TrimSuffix(strings.Repeat(`"`+b64(32)+`",`, 25), ",") + `]`
	runDecodeCases(t, protocol.DecodeEvidence, []decodeCase{
		{name: "honest", in: e()},
		{name: "with an event log", in: e(`"event_log":"` + b64(64<<10) + `"`)},
		{name: "with a DevID Certify", in: e(certifyFields...)},
		{name: "DevID Certify without signature", in: e(certifyFields[0]),
			err: malformed + "evidence: devid_certify and devid_certify_signature are sent together or not at all"},
		{name: "DevID Certify signature alone", in: e(certifyFields[1]),
			err: malformed + "evidence: devid_certify and devid_certify_signature are sent together or not at all"},
		{name: "DevID Certify over 8 KiB", in: e(append(certifyFields, `"devid_certify":"`+b64(8193)+`"`)...), err: malformed + "evidence: devid_certify is 8193 bytes, limit 8192"},
		{name: "DevID Certify signature over 8 KiB", in: e(append(certifyFields, `"devid_certify_signature":"`+b64(8193)+`"`)...),
			err: malformed + "evidence: devid_certify_signature is 8193 bytes, limit 8192"},
		{name: "hello in its place", in: obj(helloFields...), err: malformed + `message out of order: got "hello", want "evidence"`},
		{name: "truncated", in: e()[:120], err: malformed + "evidence: unexpected end of JSON input"},
		{name: "version 2", in: e(`"v":2`), err: malformed + "unknown protocol version 2 (this side speaks 1)"},
		{name: "unknown field", in: e(`"selectors":[]`), err: malformed + `evidence: json: unknown field "selectors"`},
		{name: "no secret", in: e(`"secret":`), err: malformed + "evidence: secret is missing"},
		{name: "no quote", in: e(`"quote":""`), err: malformed + "evidence: quote is missing"},
		{name: "no signature", in: e(`"signature":`), err: malformed + "evidence: signature is missing"},
		{name: "quote over 8 KiB", in: e(`"quote":"` + b64(8193) + `"`), err: malformed + "evidence: quote is 8193 bytes, limit 8192"},
		{name: "no PCR values", in: e(`"pcr_values":[]`), err: malformed + "evidence: 0 PCR values, want 1 to 24"},
		{name: "25 PCR values", in: e(many), err: malformed + "evidence: 25 PCR values, want 1 to 24"},
		{name: "empty PCR value", in: e(`"pcr_values":[""]`), err: malformed + "evidence: PCR value 0 is 0 bytes, want 1 to 64"},
		{name: "PCR value of 65 bytes", in: e(`"pcr_values":["` + b64(32) + `","` + b64(65) + `"]`), err: malformed + "evidence: PCR value 1 is 65 bytes, want 1 to 64"},
		{name: "PCR values not a list", in: e(`"pcr_values":"` + b64(32) + `"`),
			err: malformed + "evidence: json: cannot unmarshal string into Go struct field Evidence.pcr_values of type [][]uint8"},
		// A log at MaxEventLogSize fits in MaxMessageSize once base64 has made it longer.
		{name: "event log at its limit", in: atLimit},
		{name: "event log over its limit", in: overLimit, err: malformed + "evidence: event_log is 786433 bytes, limit 786432"},
	})
}

// TestRoundTrip encodes each message and decodes it back.
func TestRoundTrip(t *testing.T) {
	hello := &protocol.Hello{
		Mode: protocol.ModeEKCert, EKCert: []byte{0x30, 0x82}, EKPublic: []byte{0, 1}, AKPublic: []byte{0, 0x23},
		PCRBank: "sha256", PCRs: []int{0, 2, 4, 7}, TPM: protocol.TPMProperties{Manufacturer: "MSFT", Model: "m", Firmware: "1.2"},
	}
	ch := &protocol.Challenge{CredentialBlob: []byte{1}, EncryptedSecret: []byte{2}, Nonce: bytes.Repeat([]byte{3}, 32)}
	ev := &protocol.Evidence{Secret: []byte{4}, Quote: []byte{5}, Signature: []byte{6}, PCRValues: [][]byte{make([]byte, 32)}, EventLog: []byte{7}}
	devidHello := *hello
	devidHello.Mode, devidHello.DevIDCert, devidHello.DevIDPublic = protocol.ModeDevID, [][]byte{{0x30, 1}, {0x30, 2}}, []byte{0, 0x23, 0}
	devidEv := *ev
	devidEv.DevIDCertify, devidEv.DevIDCertifySignature = []byte{8}, []byte{9}
	for _, c := range []struct {
		msg    any
		decode func([]byte) (any, error)
	}{
		{hello, func(b []byte) (any, error) { return protocol.DecodeHello(b) }},
		{&devidHello, func(b []byte) (any, error) { return protocol.DecodeHello(b) }},
		{ch, func(b []byte) (any, error) { return protocol.DecodeChallenge(b) }},
		{ev, func(b []byte) (any, error) { return protocol.DecodeEvidence(b) }},
		{&devidEv, func(b []byte) (any, error) { return protocol.DecodeEvidence(b) }},
	} {
		b, err := protocol.Encode(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(`{"v":1,"type":"`)) {
			t.Errorf("encoding does not start with version and type: %s", b)
		}
		got, err := c.decode(b)
		if err != nil {
			t.Fatalf("%T: %v", c.msg, err)
		}
		if !reflect.DeepEqual(got, c.msg) {
			t.Errorf("round trip of %T:\n got  %+v\n want %+v", c.msg, got, c.msg)
		}
	}
	// Without a certificate, the field is left out rather than sent empty.
	b, _ := protocol.Encode(&protocol.Hello{Mode: protocol.ModeEKCert, EKPublic: []byte{1}, AKPublic: []byte{1}, PCRs: []int{0}})
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"ek_cert", "devid_cert", "devid_public"} {
		if _, ok := m[field]; ok {
			t.Errorf("hello without certificate and DevID has %s: %s", field, b)
		}
	}
}

func TestEncodeRefusesOtherTypes(t *testing.T) {
	for _, m := range []any{protocol.Hello{}, "hello", nil} {
		if b, err := protocol.Encode(m); err == nil {
			t.Errorf("Encode(%T) = %s, want an error", m, b)
		}
	}
	if _, err := protocol.Encode(protocol.Hello{}); err == nil || err.Error() != "protocol: cannot encode protocol.Hello" {
		t.Errorf("Encode(Hello value) error = %v", err)
	}
}

// TestFirmwareVersion: the 64-bit firmwareVersion a TPM signs (TPM_PT_FIRMWARE_VERSION_1
// high, _2 low) reads as four 16-bit parts.
func TestFirmwareVersion(t *testing.T) {
	for v, want := range map[uint64]string{
		0x2017061900163636: "8215.1561.22.13878", // the reference simulator
		0x0007005500000000: "7.85.0.0",
		0:                  "0.0.0.0",
		^uint64(0):         "65535.65535.65535.65535",
	} {
		if got := protocol.FirmwareVersion(v); got != want {
			t.Errorf("FirmwareVersion(%#x) = %q, want %q", v, got, want)
		}
	}
}
