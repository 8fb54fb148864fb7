package ra

import (
	"testing"
	"time"
)

// FuzzParseBindings: no bindings file, of any version, crashes the RA, and what parses
// has its maps.
func FuzzParseBindings(f *testing.F) {
	f.Add([]byte(`{"version": 1, "hosts": {"a": {"host": "a", "ek_hash": "ab", "serial": "1f", "revoked": true}}, "pending": {"b": {"host": "b"}}}`))
	f.Add([]byte(`{"version": 2, "hosts": {"a": null}, "pending": {"b": [null, {"host": "b"}]}}`))
	f.Add([]byte(`{"version": 2, "hosts": {"a": {"certificates": [null]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBindings("bindings.json", data, time.Unix(0, 0))
		if err != nil {
			return
		}
		if b.Hosts == nil || b.Pending == nil {
			t.Fatal("parsed bindings without their maps")
		}
		now := time.Unix(0, 0)
		for _, h := range b.Hosts {
			h.Live(now)
			h.Latest()
		}
		b.PendingList()
		b.pendingCount()
	})
}
