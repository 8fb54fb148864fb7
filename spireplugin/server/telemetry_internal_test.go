package server

import (
	"testing"
	"time"
)

// TestExpiryTracker: the soonest EK and DevID notAfter among the TPMs seen within
// expiryMemory; a TPM seen again replaces its entry; one not seen for longer is forgotten.
func TestExpiryTracker(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var tr expiryTracker
	if ek, devid := tr.soonest(now); !ek.IsZero() || !devid.IsZero() {
		t.Fatalf("empty tracker: %s %s", ek, devid)
	}
	day := 24 * time.Hour
	tr.seen("a", now.Add(300*day), now.Add(90*day), now.Add(-30*time.Hour)) // too old
	tr.seen("b", now.Add(100*day), now.Add(20*day), now.Add(-time.Hour))
	tr.seen("c", now.Add(-day), time.Time{}, now) // expired EK, no DevID
	ek, devid := tr.soonest(now)
	if !ek.Equal(now.Add(-day)) || !devid.Equal(now.Add(20*day)) {
		t.Errorf("soonest: EK %s, DevID %s", ek, devid)
	}
	if _, ok := tr.certs["a"]; ok {
		t.Error("a TPM not seen for 30 hours is still counted")
	}
	tr.seen("b", now.Add(100*day), now.Add(110*day), now) // renewed
	if _, devid = tr.soonest(now); !devid.Equal(now.Add(110 * day)) {
		t.Errorf("after the renewal, soonest DevID %s", devid)
	}
}
