// Package netport finds a free TCP port on loopback, for the processes the lab and the
// tests start (SPIRE, step-ca, Prometheus, PostgreSQL, haproxy, nginx). A port found free
// may be taken by another process before it is bound: callers start the process and
// check that it came up, as they would anyway.
package netport

import "net"

// Free returns a TCP port on 127.0.0.1 that nothing listened on a moment ago.
func Free() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
