package haproxyproc_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"

	"omens.dev/omens/internal/haproxyproc"
	"omens.dev/omens/internal/test/enginetest"
)

// TestStartStop: a connection to the frontend reaches the backend; Stop ends haproxy and
// removes its directory.
func TestStartStop(t *testing.T) {
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
	p, err := haproxyproc.Start(context.Background(), ln.Addr().String())
	if errors.Is(err, haproxyproc.ErrMissing) {
		enginetest.Missing(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Address)
	if err != nil {
		_ = p.Stop()
		t.Fatal(err)
	}
	b := make([]byte, 8)
	_, err = c.Read(b)
	c.Close()
	if err != nil || string(b) != "backend\n" {
		t.Errorf("read %q, %v through haproxy; want the backend's line", b, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("%s after Stop: %v, want it removed", p.Dir, err)
	}
	if nc, err := net.Dial("tcp", p.Address); err == nil {
		nc.Close()
		t.Errorf("%s still accepts after Stop", p.Address)
	}
}
