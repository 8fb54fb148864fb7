package ra

import "testing"

func TestRateKey(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"::ffff:192.0.2.7", "::ffff:192.0.2.7"},
		{"not an address", "not an address"},
	} {
		if got := rateKey(c.addr); got != c.want {
			t.Errorf("rateKey(%q) = %q, want %q", c.addr, got, c.want)
		}
	}
}
