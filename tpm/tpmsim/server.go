//go:build cgo

package tpmsim

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// maxCommandSize bounds a TPM command read from a client; the reference TPM's
// MAX_COMMAND_SIZE is 4096.
const maxCommandSize = 4096

// ControlPath returns the control socket that belongs to a TPM socket.
func ControlPath(socket string) string { return socket + ".omens" }

// Serve listens on socket (and its control socket) and serves TPM commands until ctx is
// done. Each connection may carry one command or many; clients are served one at a time,
// as go-tpm's linuxudstpm dials once per command. Stale socket files are replaced.
func (s *Sim) Serve(ctx context.Context, socket string) error {
	tpmL, err := listenUnix(socket)
	if err != nil {
		return err
	}
	defer os.Remove(socket)
	ctlL, err := listenUnix(ControlPath(socket))
	if err != nil {
		tpmL.Close()
		return err
	}
	defer os.Remove(ControlPath(socket))
	go func() {
		<-ctx.Done()
		tpmL.Close()
		ctlL.Close()
	}()
	errc := make(chan error, 2)
	go func() { errc <- acceptLoop(ctx, tpmL, s.serveTPM) }()
	go func() { errc <- acceptLoop(ctx, ctlL, s.serveControl) }()
	err = <-errc
	tpmL.Close()
	ctlL.Close()
	if err2 := <-errc; err == nil {
		err = err2
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("tpmsim: %s exists and is not a socket; remove it or choose another --socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("tpmsim: %s is in use by another process (is a simulator already running?)", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("tpmsim: listen %s: %w", path, err)
	}
	return l, nil
}

func acceptLoop(ctx context.Context, l net.Listener, handle func(net.Conn)) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("tpmsim: accept: %w", err)
		}
		// Connections are handled in turn; Send serializes commands anyway, and a client
		// that holds its connection open blocks no one for longer than one command.
		go handle(c)
	}
}

// serveTPM reads commands (TPM 2.0 Part 1, 18.2: tag, size, code) from c and answers each.
// A malformed or oversized command closes the connection: a TPM client never sends one.
func (s *Sim) serveTPM(c net.Conn) {
	defer c.Close()
	hdr := make([]byte, 10)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(hdr[2:6])
		if size < 10 || size > maxCommandSize {
			return
		}
		cmd := make([]byte, size)
		copy(cmd, hdr)
		if _, err := io.ReadFull(c, cmd[10:]); err != nil {
			return
		}
		rsp, err := s.Send(cmd)
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(rsp); err != nil {
			return
		}
	}
}

// ControlRequest is one request on the control socket.
type ControlRequest struct {
	Op  string              `json:"op"` // "reboot" or "status"
	Set map[string][]string `json:"set,omitempty"`
	// BootLog, with "reboot", is a TCG event log file to boot from (Sim.RebootFromLog).
	BootLog string `json:"boot_log,omitempty"`
}

// ControlResponse answers a ControlRequest.
type ControlResponse struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

func (s *Sim) serveControl(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	var req ControlRequest
	dec := json.NewDecoder(io.LimitReader(c, 64<<10))
	resp := ControlResponse{}
	if err := dec.Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("tpmsim: bad control request: %v", err)
	} else {
		switch req.Op {
		case "reboot":
			set := Profile{}
			for k, v := range req.Set {
				pcr, _, err := ParseProfileEntry(k + "=x")
				if err != nil {
					resp.Error = err.Error()
					break
				}
				set[pcr] = v
			}
			if resp.Error == "" && req.BootLog != "" && len(set) > 0 {
				resp.Error = "tpmsim: a reboot takes a boot log or boot profile entries (set), not both"
			}
			if resp.Error == "" {
				var err error
				if req.BootLog != "" {
					err = s.RebootFromLog(req.BootLog)
				} else {
					err = s.Reboot(set)
				}
				if err != nil {
					resp.Error = err.Error()
				}
			}
		case "status":
		default:
			resp.Error = fmt.Sprintf("tpmsim: unknown control op %q (want reboot or status)", req.Op)
		}
		if resp.Error == "" {
			st := s.Status()
			resp.Status = &st
		}
	}
	json.NewEncoder(c).Encode(resp)
}
