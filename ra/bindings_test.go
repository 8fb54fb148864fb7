package ra_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/ra"
)

const ekA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const ekB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

// A version 1 file: one bound host with its one serial, one decommissioned host, one
// pending request.
const bindingsV1 = `{
  "version": 1,
  "hosts": {
    "auth.funlab.casa": {"host": "auth.funlab.casa", "ek_hash": "` + ekA + `", "approved": "2026-01-02T03:04:05Z",
      "serial": "1f", "not_after": "2026-04-02T03:04:05Z"},
    "old.funlab.casa": {"host": "old.funlab.casa", "ek_hash": "cc", "approved": "2025-01-02T03:04:05Z",
      "serial": "2e", "not_after": "2025-04-02T03:04:05Z", "revoked": true}
  },
  "pending": {
    "ca.funlab.casa": {"host": "ca.funlab.casa", "ek_hash": "` + ekB + `", "ek_issuer": "CN=Vendor EK CA",
      "first_seen": "2026-02-01T00:00:00Z", "last_seen": "2026-02-02T00:00:00Z", "requests": 3}
  }
}
`

func storeWith(t *testing.T, content string) *ra.Store {
	t.Helper()
	dir := t.TempDir()
	if content != "" {
		if err := os.WriteFile(filepath.Join(dir, "bindings.json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ra.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBindingsUpgradeFromVersion1(t *testing.T) {
	s := storeWith(t, bindingsV1)
	b, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	ts := func(v string) time.Time { x, _ := time.Parse(time.RFC3339, v); return x }
	auth := b.Hosts["auth.funlab.casa"]
	if b.Version != ra.BindingsVersion || auth == nil || auth.EKHash != ekA || !auth.Approved.Equal(ts("2026-01-02T03:04:05Z")) || auth.Decommissioned ||
		len(auth.Certificates) != 1 || auth.Certificates[0].Serial != "1f" || !auth.Certificates[0].NotAfter.Equal(ts("2026-04-02T03:04:05Z")) ||
		!auth.Certificates[0].Revoked.IsZero() {
		t.Errorf("upgraded binding %+v", auth)
	}
	old := b.Hosts["old.funlab.casa"]
	if old == nil || !old.Decommissioned || len(old.Certificates) != 1 || old.Certificates[0].Serial != "2e" || old.Certificates[0].Revoked.IsZero() {
		t.Errorf("upgraded decommissioned binding %+v", old)
	}
	ps := b.Pending["ca.funlab.casa"]
	if len(ps) != 1 || ps[0].EKHash != ekB || ps[0].EKIssuer != "CN=Vendor EK CA" || ps[0].Requests != 3 ||
		!ps[0].FirstSeen.Equal(ts("2026-02-01T00:00:00Z")) || !ps[0].LastSeen.Equal(ts("2026-02-02T00:00:00Z")) {
		t.Errorf("upgraded pending %+v", ps)
	}
	// The first change writes version 2, and the file reads back the same.
	if err := s.Update(func(*ra.Bindings) error { return nil }); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(s.Path())
	var head struct{ Version int }
	json.Unmarshal(raw, &head)
	b2, err := s.Read()
	if err != nil || head.Version != 2 {
		t.Fatalf("after a write: version %d, %v", head.Version, err)
	}
	// Version 1 did not record when a certificate was revoked: the upgrade says when it
	// read the file.
	if b2.Hosts["old.funlab.casa"].Certificates[0].Revoked.IsZero() {
		t.Error("the revoked certificate lost its revocation")
	}
	b.Hosts["old.funlab.casa"].Certificates[0].Revoked = time.Time{}
	b2.Hosts["old.funlab.casa"].Certificates[0].Revoked = time.Time{}
	j1, _ := json.Marshal(b)
	j2, _ := json.Marshal(b2)
	if string(j1) != string(j2) {
		t.Errorf("version 2 file reads back differently:\n%s\n%s", j1, j2)
	}
}

func TestBindingsFileRefused(t *testing.T) {
	for _, c := range []struct {
		name, content, want string
	}{
		{"unknown version", `{"version": 3}`, "unknown version 3 (this RA reads 1 and 2)"},
		{"not JSON", `{`, "is not a bindings file (unexpected end of JSON input); fix or remove it"},
		{"version 1 of the wrong shape", `{"version": 1, "pending": {"h": [1]}}`, "is not a version 1 bindings file (json: cannot unmarshal array into Go struct field bindingsV1.pending of type ra.Pending); fix or remove it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := storeWith(t, c.content)
			_, err := s.Read()
			if want := "ra: " + s.Path() + " " + c.want; err == nil || (err.Error() != want && err.Error() != "ra: "+s.Path()+": "+c.want) {
				t.Errorf("got %v\nwant %s", err, want)
			}
		})
	}
}

// TestBindingsFileTooLarge: the file is read through internal/limits, which names the
// file and the limit.
func TestBindingsFileTooLarge(t *testing.T) {
	content := `{"version": 2, "hosts": {}, "x": "` + strings.Repeat("a", int(limits.RABindings.MaxBytes)) + `"}`
	s := storeWith(t, content)
	_, err := s.Read()
	want := fmt.Sprintf("ra: limits: %s is %d bytes, over the 16777216-byte limit for an RA bindings file", s.Path(), len(content))
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestApproveContenders: with two TPMs asking for one host, approve without --ek binds
// neither and names both; with --ek it binds the one chosen.
func TestApproveContenders(t *testing.T) {
	s := storeWith(t, "")
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Update(func(b *ra.Bindings) error {
		b.Pending[host] = []*ra.Pending{
			{Host: host, EKHash: ekA, FirstSeen: now, LastSeen: now, Requests: 1},
			{Host: host, EKHash: ekB, FirstSeen: now.Add(time.Minute), LastSeen: now.Add(time.Minute), Requests: 1},
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Approve(host, "", now)
	want := "ra: 2 TPMs asked for auth.funlab.casa; choose one by its EK hash (omens ra pending shows each one's first request, address and EK issuer): --ek " + ekA + ", --ek " + ekB
	var ae *ra.ApprovalError
	if !errors.As(err, &ae) || err.Error() != want || len(ae.Contenders) != 2 {
		t.Fatalf("approve without --ek: %v\nwant %s", err, want)
	}
	if b, _ := s.Read(); len(b.Hosts) != 0 || len(b.Pending[host]) != 2 {
		t.Fatalf("a refused approval changed the state: %+v %+v", b.Hosts, b.Pending)
	}
	bd, err := s.Approve(host, ekA, now)
	if err != nil || bd.EKHash != ekA {
		t.Fatalf("approve --ek: %+v %v", bd, err)
	}
	b, _ := s.Read()
	if b.Hosts[host].EKHash != ekA || len(b.Pending[host]) != 0 {
		t.Errorf("after approval: %+v pending %+v", b.Hosts[host], b.Pending[host])
	}
	if _, err := s.Approve(host, ekB, now); err == nil || err.Error() != "ra: auth.funlab.casa is bound to EK "+ekA+"; remove that binding first (omens ra unbind auth.funlab.casa)" {
		t.Errorf("approve of the other contender after the binding: %v", err)
	}
	if _, err := s.Approve("other.funlab.casa", "", now); err == nil || err.Error() != "ra: no pending request for other.funlab.casa; give the EK hash with --ek to bind it ahead of time" {
		t.Errorf("approve of an unknown host: %v", err)
	}
	if err := s.Unbind("other.funlab.casa", now); err == nil || err.Error() != "ra: other.funlab.casa is not bound" {
		t.Errorf("unbind of an unknown host: %v", err)
	}
}
