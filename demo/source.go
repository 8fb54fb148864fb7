// Package demo holds the lab's two demo workloads, stand-ins for OpenBao (on host spire,
// spiffe://funlab.casa/openbao) and step-ca (on host ca, spiffe://funlab.casa/step-ca).
// Each gets its X.509-SVID from its host's SPIRE agent through the Workload API and talks
// mutual TLS to the other, authorizing the peer by SPIFFE ID: Serve is the server side
// (GET /hello), Call the client side. Main is the omens-demo command line.
package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultTimeout bounds the wait for the first SVID, and each request.
const DefaultTimeout = 15 * time.Second

// Source gives a workload its own X.509-SVID and the trust bundles that verify its peers.
// A *workloadapi.X509Source is one, kept current by the agent (SVID renewal included).
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// SocketAddr turns a Workload API socket given as a path (relative or absolute) or as an
// address (unix:///path, tcp://host:port) into the address go-spiffe dials.
func SocketAddr(socket string) (string, error) {
	if socket == "" {
		return "", errors.New("no Workload API socket given (--socket, or SPIFFE_ENDPOINT_SOCKET)")
	}
	if strings.Contains(socket, "://") {
		return socket, nil
	}
	abs, err := filepath.Abs(socket)
	if err != nil {
		return "", err
	}
	return "unix://" + abs, nil
}

// NoSVIDError reports that the Workload API gave no X.509-SVID before the timeout.
type NoSVIDError struct {
	Socket  string        // as given
	Timeout time.Duration // how long it waited
	Cause   error         // the last error of the Workload API client, if any
}

func (e *NoSVIDError) Error() string {
	code := status.Code(e.Cause)
	if e.Cause != nil && code != codes.PermissionDenied {
		// The agent never answered: no socket, nobody listening, or not a Workload API.
		return fmt.Sprintf("no SVID from the Workload API at %s within %v: cannot reach it: is the SPIRE agent running there? (%s)",
			e.Socket, e.Timeout, describeStatus(e.Cause))
	}
	msg := fmt.Sprintf("no SVID from the Workload API at %s within %v: is there a registration entry for this process? (%s)",
		e.Socket, e.Timeout, processSelectors())
	if e.Cause != nil {
		msg += "; the agent answered: " + describeStatus(e.Cause)
	}
	return msg
}

func (e *NoSVIDError) Unwrap() error { return e.Cause }

// describeStatus renders a gRPC error as "Code: message".
func describeStatus(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

// processSelectors names this process the way SPIRE's unix workload attestor sees it.
func processSelectors() string {
	uid := os.Getuid()
	sel := fmt.Sprintf("unix:uid:%d", uid)
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil && u.Username != "" {
		sel += ", unix:user:" + u.Username
	}
	return sel
}

// OpenSource connects to the Workload API at socket and waits, at most timeout, for this
// process's first X.509-SVID. The source keeps following the agent until it is closed, so
// renewed SVIDs are used without a restart. A process the agent gives no SVID (no
// registration entry, or no agent) gets a *NoSVIDError once timeout has passed.
func OpenSource(ctx context.Context, socket string, timeout time.Duration) (*workloadapi.X509Source, error) {
	addr, err := SocketAddr(socket)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rec := &lastError{}
	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(wait,
		workloadapi.WithClientOptions(workloadapi.WithAddr(addr), workloadapi.WithLogger(rec)))
	if err == nil {
		return src, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, &NoSVIDError{Socket: socket, Timeout: timeout, Cause: rec.get()}
	}
	return nil, fmt.Errorf("Workload API at %s: %w", socket, err)
}

// lastError is a go-spiffe logger that keeps the last error the Workload API client
// reported while it retried.
type lastError struct {
	mu  sync.Mutex
	err error
}

func (l *lastError) get() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *lastError) Debugf(string, ...any) {}
func (l *lastError) Infof(string, ...any)  {}
func (l *lastError) Warnf(string, ...any)  {}

func (l *lastError) Errorf(format string, args ...any) {
	for _, a := range args {
		if err, ok := a.(error); ok {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
	}
}
