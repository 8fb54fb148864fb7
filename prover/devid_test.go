package prover_test

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testattest"
	"omens.dev/omens/protocol"
	"omens.dev/omens/prover"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// devidHost is a host with a DevID key made in its TPM and a certificate for it.
type devidHost struct {
	*host
	ca       *testattest.DevIDCA
	dir      string
	certPath string
	key      *tpm.DevIDKey
}

// newDevIDHost makes an ECC DevID key under the TCG SRK. With handle, it is persisted
// there; else its blobs are written to files. With persistSRK, the SRK is persisted at
// tpmrules.DefaultSRKHandle.
func newDevIDHost(t *testing.T, handle tpm2.TPMHandle, persistSRK bool) *devidHost {
	t.Helper()
	h := &devidHost{host: newHost(t), dir: t.TempDir()}
	srk, err := tpm.DeriveSRK(h.sim, tpm2.TPMAlgECC)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm.CreateDevID(h.sim, srk, tpm2.TPMAlgECC)
	if err == nil && persistSRK {
		_, err = tpm2.EvictControl{
			Auth:             tpm2.TPMRHOwner,
			ObjectHandle:     tpm2.NamedHandle{Handle: srk.Handle, Name: srk.Name},
			PersistentHandle: tpmrules.DefaultSRKHandle,
		}.Execute(h.sim)
	}
	srk.Close(h.sim)
	if err != nil {
		t.Fatal(err)
	}
	if handle != 0 {
		err = tpm.PersistDevID(h.sim, key, handle)
	} else {
		err = key.Close(h.sim)
		for _, f := range []struct {
			name string
			b    []byte
		}{{"devid.pub", key.PublicBlob}, {"devid.priv", key.PrivateBlob}} {
			if err == nil {
				err = os.WriteFile(filepath.Join(h.dir, f.name), f.b, 0o600)
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	h.key = key
	if h.ca, err = testattest.NewDevIDCA("omens prover test DevID"); err != nil {
		t.Fatal(err)
	}
	h.certPath = filepath.Join(h.dir, "devid.crt")
	h.issue(t, big.NewInt(0x1001))
	return h
}

// issue writes a new certificate for the key, as renewal does.
func (h *devidHost) issue(t *testing.T, serial *big.Int) {
	t.Helper()
	pub, err := h.key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := h.ca.Issue(pub, testattest.DevIDTemplate{Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.certPath, testattest.ChainPEM(chain), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *devidHost) prover(t *testing.T, c prover.DevIDConfig) *prover.Prover {
	t.Helper()
	c.CertPath = h.certPath
	p, err := prover.New(prover.Config{
		TPMPath: "sim",
		Open:    func(string) (transport.TPMCloser, error) { return nopCloser{h.counter}, nil },
		DevID:   &c,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *devidHost) verifier() *verify.Verifier {
	v := h.host.verifier()
	v.Mode = protocol.ModeDevID
	v.DevID.Bundle = h.ca.Bundle()
	return v
}

func TestDevIDAttestation(t *testing.T) {
	for _, c := range []struct {
		name       string
		handle     tpm2.TPMHandle
		persistSRK bool
		blobs      bool
		// max is the steady-state command count; keygen the keys it may generate.
		max, keygen int
	}{
		{name: "persistent handle", handle: 0x81010002, max: 9},
		{name: "blobs under a persisted SRK", persistSRK: true, blobs: true, max: 11},
		{name: "blobs, SRK derived each time", blobs: true, max: 13, keygen: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newDevIDHost(t, c.handle, c.persistSRK)
			cfg := prover.DevIDConfig{Handle: c.handle}
			if c.blobs {
				cfg.PrivPath, cfg.PubPath = filepath.Join(h.dir, "devid.priv"), filepath.Join(h.dir, "devid.pub")
			}
			p, v := h.prover(t, cfg), h.verifier()
			res := attest(t, p, v) // the first one creates and persists the AK
			if res.Mode != protocol.ModeDevID || res.DevID == nil || res.DevID.Cert.SerialNumber.Int64() != 0x1001 {
				t.Fatalf("result mode %q DevID %+v, want devid with serial 0x1001", res.Mode, res.DevID)
			}
			// Renewal: a new certificate in the file is the one sent next time.
			h.issue(t, big.NewInt(0x1002))
			h.counter.Reset()
			res = attest(t, p, v)
			if res.DevID.Cert.SerialNumber.Int64() != 0x1002 {
				t.Errorf("after renewal, serial %x, want 1002", res.DevID.Cert.SerialNumber)
			}
			n, _ := h.counter.Total()
			keygen := h.counter.Count(tpm2.TPMCCCreate) + h.counter.Count(tpm2.TPMCCCreatePrimary) + h.counter.Count(tpm2.TPMCCCreateLoaded)
			if n > c.max || keygen != c.keygen || h.counter.Count(tpm2.TPMCCCertify) != 1 {
				t.Errorf("steady state: %d commands (%s), want at most %d with %d key generations and one Certify", n, h.counter, c.max, c.keygen)
			}
			t.Logf("steady state: %d commands: %s", n, h.counter)
			if hs, err := tpm.TransientHandles(h.sim); err != nil || len(hs) != 0 {
				t.Errorf("transient handles left: %x %v", hs, err)
			}
		})
	}
}

func TestDevIDConfigAndFiles(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  prover.DevIDConfig
		want string
	}{
		{"no certificate", prover.DevIDConfig{Handle: 0x81010002}, "prover: DevID mode needs the DevID certificate chain (devid_cert_path)"},
		{"no key", prover.DevIDConfig{CertPath: "c"}, "prover: DevID mode needs the DevID key (devid_priv_path: a persistent handle such as 0x81010002, or the private blob)"},
		{"private blob alone", prover.DevIDConfig{CertPath: "c", PrivPath: "p"}, "prover: the DevID private blob (devid_priv_path) needs its public blob (devid_pub_path)"},
		{"transient handle", prover.DevIDConfig{CertPath: "c", Handle: 0x80000001}, "prover: DevID handle 0x80000001 is not a persistent handle (0x81000000 to 0x81FFFFFF)"},
	} {
		_, err := prover.New(prover.Config{DevID: &c.cfg})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}

	// A certificate for another key is refused before anything is sent.
	h := newDevIDHost(t, 0x81010002, false)
	other := must(testattest.NewDevIDCA("other")).Root // a certificate, not of the DevID key
	if err := os.WriteFile(h.certPath, testattest.ChainPEM([][]byte{other.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.prover(t, prover.DevIDConfig{Handle: 0x81010002})
	_, _, err := p.Begin()
	want := "prover: the DevID certificate is not for the DevID key: " + h.certPath + " (serial 1, CN=other Root CA) certifies another key than the DevID key (was the key renewed without its certificate?)"
	if err == nil || err.Error() != want {
		t.Errorf("certificate of another key: %v\nwant %s", err, want)
	}
	if err := os.WriteFile(h.certPath, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Begin(); err == nil || !strings.HasSuffix(err.Error(), "no PEM CERTIFICATE block") {
		t.Errorf("certificate file without PEM: %v", err)
	}
	if err := os.Truncate(h.certPath, 1<<20+1); err != nil { // sparse
		t.Fatal(err)
	}
	want = "prover: DevID certificate: limits: " + h.certPath + " is 1048577 bytes, over the 1048576-byte limit for a DevID certificate file"
	if _, _, err := p.Begin(); err == nil || err.Error() != want {
		t.Errorf("oversize certificate file: %v\nwant %s", err, want)
	}
	if hs, err := tpm.TransientHandles(h.sim); err != nil || len(hs) != 0 {
		t.Errorf("transient handles left: %x %v", hs, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
