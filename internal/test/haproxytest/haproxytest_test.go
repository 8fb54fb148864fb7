package haproxytest_test

import (
	"net"
	"testing"

	"omens.dev/omens/internal/test/haproxytest"
)

// TestStart: a connection to the frontend reaches the backend.
func TestStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("backend\n"))
			c.Close()
		}
	}()
	p := haproxytest.Start(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 8)
	if _, err := c.Read(b); err != nil || string(b) != "backend\n" {
		t.Fatalf("read %q, %v through haproxy; want the backend's line", b, err)
	}
}
