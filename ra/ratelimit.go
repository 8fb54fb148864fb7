package ra

import (
	"net"
	"time"
)

// rateKey is the client that limits count: the IPv4 address, or the IPv6 /64 network,
// since one IPv6 host is commonly given a whole /64 to pick addresses from.
func rateKey(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// window counts the requests of one client address in a fixed one-minute window.
type window struct {
	start time.Time
	n     int
}

// maxRateEntries bounds the rate table's memory under a flood of addresses.
const maxRateEntries = 10000

// allow counts a request of addr and reports whether it is within Config.RatePerMinute.
func (s *Server) allow(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	w := s.rate[addr]
	if w == nil || now.Sub(w.start) >= time.Minute {
		if len(s.rate) >= maxRateEntries {
			for k, o := range s.rate {
				if now.Sub(o.start) >= time.Minute {
					delete(s.rate, k)
				}
			}
			if len(s.rate) >= maxRateEntries {
				s.rate = map[string]*window{}
			}
		}
		w = &window{start: now}
		s.rate[addr] = w
	}
	w.n++
	return w.n <= s.cfg.RatePerMinute
}
