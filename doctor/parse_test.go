package doctor_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"omens.dev/omens/doctor"
)

const agentHCL = `agent {
    data_dir = "/var/lib/spire/agent"
    log_level = "INFO"
    server_address = "spire.funlab.casa"
    server_port = "8081"
    trust_domain = "funlab.casa"
}

plugins {
    KeyManager "disk" {
        plugin_data {
            directory = "/var/lib/spire/agent"
        }
    }

    NodeAttestor "tpm" {
        plugin_cmd = "/usr/lib/omens/omens-attestor-agent"
        plugin_checksum = "aabb"
        plugin_data {
            tpm_path = "/dev/tpmrm0"
            pcr_selection = [0, 2, 4, 7]
        }
    }

    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`

func TestParseAgentConfig(t *testing.T) {
	c, err := doctor.ParseAgentConfig("agent.conf", []byte(agentHCL))
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain != "funlab.casa" || c.ServerAddress != "spire.funlab.casa" || c.ServerPort != 8081 ||
		!reflect.DeepEqual(c.NodeAttestors, []string{"tpm"}) || c.Attestor == nil {
		t.Fatalf("parsed %+v", c)
	}
	a := c.Attestor
	if a.Line != 16 || a.Cmd != "/usr/lib/omens/omens-attestor-agent" || a.Checksum != "aabb" ||
		!strings.Contains(a.Data, `tpm_path = "/dev/tpmrm0"`) || !strings.Contains(a.Data, "pcr_selection = [0, 2, 4, 7]") {
		t.Errorf("NodeAttestor tpm %+v", a)
	}

	// The same configuration as JSON, which SPIRE reads too.
	js := `{"agent": {"server_address": "spire.funlab.casa", "trust_domain": "funlab.casa"},
	  "plugins": {"NodeAttestor": {"tpm": {"plugin_cmd": "/usr/lib/omens/omens-attestor-agent",
	    "plugin_data": {"tpm_path": "/dev/tpmrm0"}}}}}`
	c, err = doctor.ParseAgentConfig("agent.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerPort != doctor.DefaultServerPort || c.Attestor == nil || c.Attestor.Cmd != "/usr/lib/omens/omens-attestor-agent" ||
		!strings.Contains(c.Attestor.Data, `tpm_path" = "/dev/tpmrm0"`) {
		t.Errorf("JSON config parsed %+v, attestor %+v", c, c.Attestor)
	}

	for _, tc := range []struct{ name, src, err string }{
		{"no agent block", `plugins {}`, "doctor: a.conf: no agent block (is this a SPIRE agent configuration?)"},
		{"not HCL", `agent {`, "doctor: a.conf: "},
		{"two tpm", "agent {}\nplugins {\nNodeAttestor \"tpm\" {}\nNodeAttestor \"tpm\" {}\n}", `doctor: a.conf:4: a second NodeAttestor "tpm" (the first is at line 3)`},
		{"plugin_data a number", "agent {}\nplugins {\nNodeAttestor \"tpm\" {\nplugin_data = 3\n}\n}", `doctor: a.conf:3: NodeAttestor "tpm": plugin_data is neither a block nor a string`},
		{"too deep", "agent {}\nx = " + strings.Repeat("[", 40), "doctor: limits: a.conf:2: nesting deeper than the 32-level limit for a SPIRE agent configuration"},
		{"too large", "agent {}\n#" + strings.Repeat("x", 1<<20), "doctor: limits: a.conf is 1048586 bytes, over the 1048576-byte limit for a SPIRE agent configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := doctor.ParseAgentConfig("a.conf", []byte(tc.src))
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// header is a JWE protected header (base64url, unpadded) of a clevis pin.
func header(t testing.TB, clevis any) string {
	b, err := json.Marshal(map[string]any{"alg": "dir", "enc": "A256GCM", "clevis": clevis})
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func luksMeta(t testing.TB, tokens map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keyslots": map[string]any{}, "tokens": tokens})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clevisToken(protected string, slots ...string) map[string]any {
	return map[string]any{"type": "clevis", "keyslots": slots, "jwe": map[string]any{"protected": protected, "ciphertext": "", "iv": "", "tag": ""}}
}

func TestParseLUKS2Metadata(t *testing.T) {
	tpm2 := func(cfg map[string]any) map[string]any { return map[string]any{"pin": "tpm2", "tpm2": cfg} }
	tang := map[string]any{"pin": "tang", "tang": map[string]any{"url": "http://tang"}}
	sss := map[string]any{"pin": "sss", "sss": map[string]any{"t": 1, "jwe": []string{
		header(t, tpm2(map[string]any{"pcr_bank": "sha256", "pcr_ids": []int{7, 0}})) + "..x.y",
		header(t, tang) + "..x.y",
	}}}
	meta := luksMeta(t, map[string]any{
		"10": clevisToken(header(t, tpm2(map[string]any{"pcr_bank": "sha1", "pcr_ids": "7"})), "3"),
		"2":  clevisToken(header(t, sss), "2"),
		"0":  map[string]any{"type": "systemd-tpm2", "keyslots": []string{"1"}},
		"1":  clevisToken(header(t, tpm2(map[string]any{"pcr_bank": "sha256", "pcr_ids": "0, 2,4,7"})), "1"),
	})
	got, err := doctor.ParseLUKS2Metadata(meta)
	if err != nil {
		t.Fatal(err)
	}
	want := []doctor.ClevisToken{
		{ID: "1", Keyslots: []string{"1"}, Pins: []string{"tpm2"}, TPM2: []doctor.TPM2Pin{{Bank: "sha256", PCRs: []int{0, 2, 4, 7}}}},
		{ID: "2", Keyslots: []string{"2"}, Pins: []string{"tpm2", "tang"}, TPM2: []doctor.TPM2Pin{{Bank: "sha256", PCRs: []int{0, 7}}}},
		{ID: "10", Keyslots: []string{"3"}, Pins: []string{"tpm2"}, TPM2: []doctor.TPM2Pin{{Bank: "sha1", PCRs: []int{7}}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tokens\n got %+v\nwant %+v", got, want)
	}

	nested := tpm2(map[string]any{})
	for range 9 {
		nested = map[string]any{"pin": "sss", "sss": map[string]any{"jwe": []string{header(t, nested) + ".."}}}
	}
	for _, tc := range []struct {
		name string
		meta []byte
		err  string
	}{
		{"not JSON", []byte("{"), "doctor: LUKS2 metadata: unexpected end of JSON input"},
		{"bad base64", luksMeta(t, map[string]any{"0": clevisToken("!!")}), "doctor: LUKS2 token 0 (clevis): JWE protected header: illegal base64 data at input byte 0"},
		{"no pin", luksMeta(t, map[string]any{"0": clevisToken(header(t, map[string]any{}))}), "doctor: LUKS2 token 0 (clevis): JWE protected header names no clevis pin"},
		{"bad PCR", luksMeta(t, map[string]any{"0": clevisToken(header(t, tpm2(map[string]any{"pcr_ids": "0,x"})))}), `doctor: LUKS2 token 0 (clevis): tpm2 pin: pcr_ids "0,x": "x" is not a PCR number`},
		{"PCR 24", luksMeta(t, map[string]any{"0": clevisToken(header(t, tpm2(map[string]any{"pcr_ids": []int{24}})))}), "doctor: LUKS2 token 0 (clevis): tpm2 pin: PCR 24 in pcr_ids is not from 0 to 23"},
		{"sss too deep", luksMeta(t, map[string]any{"0": clevisToken(header(t, nested))}), "doctor: LUKS2 token 0 (clevis): sss pins nest deeper than 8 levels"},
		{"too deep", []byte(strings.Repeat("[", 33)), "doctor: limits: LUKS2 metadata:1: nesting deeper than the 32-level limit for LUKS2 metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := doctor.ParseLUKS2Metadata(tc.meta)
			if err == nil || err.Error() != tc.err {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// FuzzParseAgentConfig: no configuration file makes the parser panic or hang.
func FuzzParseAgentConfig(f *testing.F) {
	f.Add([]byte(agentHCL))
	f.Add([]byte(`{"agent": {}, "plugins": {"NodeAttestor": {"tpm": {"plugin_data": {"a": 1}}}}}`))
	f.Add([]byte("agent {}\nplugins { NodeAttestor \"tpm\" { plugin_data = \"x = 1\" } }"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := doctor.ParseAgentConfig("fuzz.conf", src)
		if err == nil && c.ServerPort == 0 {
			t.Fatalf("parsed without a server port: %+v", c)
		}
	})
}

// FuzzParseLUKS2Metadata: no LUKS2 metadata (the JSON cryptsetup prints from a header
// anyone may have written) makes the parser panic or hang.
func FuzzParseLUKS2Metadata(f *testing.F) {
	f.Add(luksMeta(f, map[string]any{"0": clevisToken(header(f, map[string]any{"pin": "tpm2", "tpm2": map[string]any{"pcr_ids": "0,7"}}), "1")}))
	f.Add(luksMeta(f, map[string]any{"0": clevisToken(header(f, map[string]any{"pin": "sss", "sss": map[string]any{"jwe": []string{"e30.."}}}))}))
	f.Add([]byte(`{"tokens":{"0":{"type":"clevis","jwe":{"protected":"eyJjbGV2aXMiOnsicGluIjoidHBtMiJ9fQ"}}}}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		tokens, err := doctor.ParseLUKS2Metadata(src)
		for _, tok := range tokens {
			for _, pin := range tok.TPM2 {
				for _, p := range pin.PCRs {
					if p < 0 || p > 23 {
						t.Fatalf("PCR %d accepted", p)
					}
				}
			}
		}
		_ = fmt.Sprint(err)
	})
}
