package spiretest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// FetchX509SVID fetches the calling process's default X.509-SVID from the Workload API on
// socket, retrying until timeout: an agent answers PermissionDenied until the entry that
// names the caller has reached it.
func FetchX509SVID(t testing.TB, socket string, timeout time.Duration) (*x509svid.SVID, error) {
	t.Helper()
	var svid *x509svid.SVID
	err := retryFetch(socket, timeout, func(ctx context.Context, c *workloadapi.Client) error {
		s, err := c.FetchX509SVID(ctx)
		svid = s
		return err
	})
	return svid, err
}

// WaitX509SVID fetches the calling process's X.509-SVIDs from the Workload API on socket
// until one has SPIFFE ID id, and returns it; it gives up after timeout.
func WaitX509SVID(t testing.TB, socket, id string, timeout time.Duration) (*x509svid.SVID, error) {
	t.Helper()
	var svid *x509svid.SVID
	err := retryFetch(socket, timeout, func(ctx context.Context, c *workloadapi.Client) error {
		svids, err := c.FetchX509SVIDs(ctx)
		if err != nil {
			return err
		}
		var ids []string
		for _, s := range svids {
			if s.ID.String() == id {
				svid = s
				return nil
			}
			ids = append(ids, s.ID.String())
		}
		return fmt.Errorf("spiretest: no X.509-SVID with ID %s among %v", id, ids)
	})
	return svid, err
}

// retryFetch calls fetch with a Workload API client of socket until it succeeds or timeout
// passes, and returns the last error.
func retryFetch(socket string, timeout time.Duration, fetch func(context.Context, *workloadapi.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		return fmt.Errorf("spiretest: workload API %s: %w", socket, err)
	}
	defer c.Close()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		err = fetch(attempt, c)
		cancelAttempt()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("spiretest: workload API %s: after %v: %w", socket, timeout, err)
		case <-time.After(4 * pollInterval):
		}
	}
}
