package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Client is a connection to a SPIRE server's API socket.
type Client struct {
	conn    *grpc.ClientConn
	agents  agentv1.AgentClient
	entries entryv1.EntryClient
}

// Dial connects to the SPIRE server API at socket (the server's socket_path).
func Dial(socket string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("registry: SPIRE server API %s: %w", socket, err)
	}
	return &Client{conn: conn, agents: agentv1.NewAgentClient(conn), entries: entryv1.NewEntryClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ParseID splits spiffe://td/path into the API's form.
func ParseID(id string) (*types.SPIFFEID, error) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	td, path, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || td == "" {
		return nil, fmt.Errorf("registry: %q is not a SPIFFE ID with a path", id)
	}
	return &types.SPIFFEID{TrustDomain: td, Path: "/" + path}, nil
}

// BanAgent evicts the agent and refuses its future attestations until an operator
// deletes the ban (`spire-server agent evict`).
func (c *Client) BanAgent(ctx context.Context, id string) error {
	sid, err := ParseID(id)
	if err != nil {
		return err
	}
	if _, err := c.agents.BanAgent(ctx, &agentv1.BanAgentRequest{Id: sid}); err != nil {
		return fmt.Errorf("registry: ban %s: %w", id, err)
	}
	return nil
}

// CreateJoinToken generates a join token valid for ttl (CreateJoinToken) whose agent gets
// the alias aliasID: the server creates the entry aliasID parented on the token's agent,
// spiffe://<td>/spire/agent/join_token/<token>, as `spire-server token generate
// -spiffeID` does, so the workloads parented on aliasID get their SVIDs through it.
func (c *Client) CreateJoinToken(ctx context.Context, ttl time.Duration, aliasID string) (string, error) {
	id, err := ParseID(aliasID)
	if err != nil {
		return "", err
	}
	resp, err := c.agents.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: int32(ttl / time.Second), AgentId: id})
	if err != nil {
		return "", fmt.Errorf("registry: create a join token for %s: %w", aliasID, err)
	}
	return resp.Value, nil
}
