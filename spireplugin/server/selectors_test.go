package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	"omens.dev/omens/protocol"
	"omens.dev/omens/tpm"
)

// lie returns a relay that rewrites the agent's Hello with change: the agent plugin runs
// on the real (simulated) TPM and answers the challenge honestly; only its unsigned claims
// are false.
func lie(t *testing.T, change func(h *protocol.Hello)) func([]byte) []byte {
	return func(b []byte) []byte {
		h, err := protocol.DecodeHello(b)
		if err != nil {
			t.Fatal(err)
		}
		change(h)
		out, err := protocol.Encode(h)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}

func selectorsWith(sel []string, prefix string) []string {
	var out []string
	for _, s := range sel {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// TestSelectorsFromProofsNotClaims: an agent claims another manufacturer, model and
// firmware in its Hello. Manufacturer and model come only from the verified EK
// certificate (none without one), firmware only from the quote, and a firmware claim that
// is not the signed one is refused.
func TestSelectorsFromProofsNotClaims(t *testing.T) {
	h := startSimHost(t)
	hash := h.ekHash(t)
	info, err := tpm.ReadInfo(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	allow := filepath.Join(t.TempDir(), "allow.txt")
	if err := os.WriteFile(allow, []byte(hash+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agentHCL := `tpm_path = "` + h.socket + `"`
	withCert := `ca_path = "` + h.sim.BundlePath() + `"`
	withoutCert := withCert + `
		ek_allowlist_path = "` + allow + `"`
	claims := func(hello *protocol.Hello) {
		hello.TPM.Manufacturer, hello.TPM.Model = "IFX", "SLB9670 TPM2.0"
	}
	for _, c := range []struct {
		name, server string
		change       func(*protocol.Hello)
		// want are the manufacturer:, model: and firmware: selectors, in order.
		want []string
		err  string
	}{
		{name: "honest agent", server: withCert,
			want: []string{"manufacturer:MSFT", "model:omens-sim", "firmware:" + info.FirmwareVersion}},
		{name: "claims another manufacturer and model, with its EK certificate", server: withCert, change: claims,
			want: []string{"manufacturer:MSFT", "model:omens-sim", "firmware:" + info.FirmwareVersion}},
		{name: "claims another manufacturer and model, without EK certificate", server: withoutCert,
			change: func(hello *protocol.Hello) { claims(hello); hello.EKCert = nil },
			want:   []string{"firmware:" + info.FirmwareVersion}},
		{name: "claims another firmware", server: withCert,
			change: func(hello *protocol.Hello) { hello.TPM.Firmware = "7.85.4555.0" },
			err: `rpc error: code = PermissionDenied desc = tpm: verify: firmware_mismatch: the hello claims firmware "7.85.4555.0", the TPM signed firmware "` +
				info.FirmwareVersion + `" in the quote (TPMS_ATTEST.firmwareVersion 0x` + firmwareHex(t, info.FirmwareVersion) + `)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := loadPlugins(t)
			p.configure(t, c.server, agentHCL)
			if c.change != nil {
				p.relay = lie(t, c.change)
			}
			attrs, err := p.attest(t)
			if c.err != "" {
				st, _ := status.FromError(err)
				if err == nil || err.Error() != c.err {
					t.Fatalf("attestation: %v (%s)\nwant %s", err, st.Code(), c.err)
				}
				if !strings.Contains(p.log.String(), "check=firmware_mismatch") {
					t.Errorf("the rejection is not logged with its check:\n%s", p.log)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, prefix := range []string{"manufacturer:", "model:", "firmware:"} {
				got = append(got, selectorsWith(attrs.SelectorValues, prefix)...)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("selectors %q, want %q (all: %q)", got, c.want, attrs.SelectorValues)
			}
			for _, s := range attrs.SelectorValues {
				if strings.Contains(s, "IFX") || strings.Contains(s, "SLB9670") {
					t.Errorf("selector %q copied from the agent's claim", s)
				}
			}
		})
	}
}

// firmwareHex is the 64-bit firmwareVersion a TPM signs, from its "a.b.c.d" form.
func firmwareHex(t *testing.T, v string) string {
	var p [4]uint64
	if _, err := fmt.Sscanf(v, "%d.%d.%d.%d", &p[0], &p[1], &p[2], &p[3]); err != nil {
		t.Fatalf("firmware %q: %v", v, err)
	}
	return fmt.Sprintf("%016X", p[0]<<48|p[1]<<32|p[2]<<16|p[3])
}
