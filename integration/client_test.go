package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Protocol revisions the tests drive. defaultRevision is what the go-sdk
// v1.8.0 client speaks when not pinned.
const (
	defaultRevision = "2026-07-28"
	rev20251125     = "2025-11-25"
	rev20250618     = "2025-06-18"
	rev20250326     = "2025-03-26"
)

// loopbackClient is an http.Client that sends every request, whatever its
// host, to 127.0.0.1:port (so acme.test and globex.test reach the gateway
// with their own Host header), adds fixed headers, and can cut its TCP
// connections to simulate a client that goes away.
type loopbackClient struct {
	*http.Client
	mu    sync.Mutex
	conns []net.Conn
}

func newLoopbackClient(port int, header http.Header) *loopbackClient {
	lc := &loopbackClient{}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				lc.mu.Lock()
				lc.conns = append(lc.conns, c)
				lc.mu.Unlock()
			}
			return c, err
		},
		ForceAttemptHTTP2: false,
		MaxIdleConns:      10,
		IdleConnTimeout:   30 * time.Second,
	}
	lc.Client = &http.Client{Transport: &headerTransport{base: tr, header: header}}
	return lc
}

// CutConnections closes every TCP connection the client opened, without
// any MCP-level cancellation: the server sees the client vanish.
func (lc *loopbackClient) CutConnections() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, c := range lc.conns {
		c.Close()
	}
	lc.conns = nil
}

type headerTransport struct {
	base   http.RoundTripper
	header http.Header
}

func (h *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(h.header) > 0 {
		r = r.Clone(r.Context())
		for k, vs := range h.header {
			if strings.EqualFold(k, "Host") {
				r.Host = vs[0]
				continue
			}
			if r.Header.Get(k) == "" { // a request's own value wins
				r.Header[http.CanonicalHeaderKey(k)] = vs
			}
		}
	}
	return h.base.RoundTrip(r)
}

// clientOptions configure mcpConnect.
type clientOptions struct {
	// Revision pins ClientSessionOptions.ProtocolVersion; "" is the SDK's
	// default (2026-07-28).
	Revision string
	// Header is added to every request (e.g. Authorization, Origin,
	// X-Test-Client).
	Header http.Header
	// Client options (progress and logging handlers).
	Options *mcp.ClientOptions
	// DisableStandaloneSSE turns off the GET stream of session revisions.
	DisableStandaloneSSE bool
}

// mcpClient is a connected go-sdk client session through a loopbackClient.
type mcpClient struct {
	*mcp.ClientSession
	HTTP *loopbackClient
}

// mcpConnect connects the official go-sdk client to endpoint (any host;
// the TCP connection goes to 127.0.0.1:port) and closes it when the test
// ends.
func mcpConnect(ctx context.Context, t testing.TB, port int, endpoint string, o clientOptions) (*mcpClient, error) {
	t.Helper()
	hc := newLoopbackClient(port, o.Header)
	client := mcp.NewClient(&mcp.Implementation{Name: "integration-test", Version: "1.0.0"}, o.Options)
	tr := &mcp.StreamableClientTransport{
		Endpoint:             endpoint,
		HTTPClient:           hc.Client,
		MaxRetries:           -1,
		DisableStandaloneSSE: o.DisableStandaloneSSE,
	}
	var so *mcp.ClientSessionOptions
	if o.Revision != "" {
		so = &mcp.ClientSessionOptions{ProtocolVersion: o.Revision}
	}
	cs, err := client.Connect(ctx, tr, so)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = cs.Close() })
	return &mcpClient{ClientSession: cs, HTTP: hc}, nil
}

// mustConnect is mcpConnect that fails the test on error and checks the
// negotiated revision.
func mustConnect(ctx context.Context, t testing.TB, port int, endpoint string, o clientOptions) *mcpClient {
	t.Helper()
	c, err := mcpConnect(ctx, t, port, endpoint, o)
	if err != nil {
		t.Fatalf("connect %s (revision %q): %v", endpoint, revisionName(o.Revision), err)
	}
	want := o.Revision
	if want == "" {
		want = defaultRevision
	}
	if got := c.InitializeResult().ProtocolVersion; got != want {
		t.Fatalf("connect %s: negotiated revision %s, want %s", endpoint, got, want)
	}
	return c
}

func revisionName(r string) string {
	if r == "" {
		return "default " + defaultRevision
	}
	return r
}

// whoami calls the whoami tool and decodes its structured result.
func (c *mcpClient) whoami(ctx context.Context, args map[string]any) (*whoamiResult, error) {
	res, err := c.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: args})
	if err != nil {
		return nil, err
	}
	if res.IsError {
		return nil, fmt.Errorf("whoami returned a tool error: %s", contentText(res.Content))
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return nil, err
	}
	var w whoamiResult
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("whoami structured content %s: %v", raw, err)
	}
	if got := contentText(res.Content); got != "upstream="+w.Upstream {
		return nil, fmt.Errorf("whoami text %q does not match structured upstream %q", got, w.Upstream)
	}
	return &w, nil
}

func contentText(cs []mcp.Content) string {
	var parts []string
	for _, c := range cs {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// toolNames lists the tools' names.
func (c *mcpClient) toolNames(ctx context.Context) ([]string, error) {
	res, err := c.ListTools(ctx, nil)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names, nil
}

// testContext is a context bounded to secs seconds.
func testContext(t testing.TB, secs int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
}
