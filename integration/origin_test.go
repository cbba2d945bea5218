package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestOrigin: a foreign browser Origin gets 403 and never reaches the
// upstream; an allowed Origin, the endpoint's own origin and no Origin
// pass.
func TestOrigin(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "origin")
	port, _ := startSingleGateway(t, u, "allowed_origins https://app.acme.example https://other.acme.example")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	refused := func(t *testing.T, origin string) {
		t.Helper()
		id := "origin-refused-" + origin
		// A raw request, to see the status.
		hc := newLoopbackClient(port, nil)
		req, _ := http.NewRequest("POST", endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Origin", origin)
		req.Header.Set("X-Test-Client", id)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %s: status %d %s, want 403", origin, resp.StatusCode, b)
		}
		// And the go-sdk client, at the default revision.
		ctx, cancel := testContext(t, 15)
		defer cancel()
		if _, err := mcpConnect(ctx, t, port, endpoint, clientOptions{Header: http.Header{"Origin": {origin}, "X-Test-Client": {id}}}); err == nil {
			t.Errorf("Origin %s: the go-sdk client connected", origin)
		}
		if got := u.RequestsWith("X-Test-Client", id); len(got) != 0 {
			t.Errorf("Origin %s: the upstream received %d requests:\n%s", origin, len(got), u.Summary())
		}
	}
	accepted := func(t *testing.T, origin string) {
		t.Helper()
		ctx, cancel := testContext(t, 15)
		defer cancel()
		h := http.Header{"X-Test-Client": {"origin-ok-" + origin}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		for _, rev := range []string{"", rev20251125} {
			cl := mustConnect(ctx, t, port, endpoint, clientOptions{Revision: rev, Header: h})
			who, err := cl.whoami(ctx, nil)
			if err != nil {
				t.Fatalf("Origin %q, revision %s: whoami: %v", origin, revisionName(rev), err)
			}
			if who.Upstream != "origin" {
				t.Errorf("whoami = %q", who.Upstream)
			}
		}
	}

	t.Run("foreign", func(t *testing.T) { refused(t, "https://evil.example") })
	t.Run("foreign lookalike", func(t *testing.T) { refused(t, "https://app.acme.example.evil.example") })
	t.Run("foreign scheme", func(t *testing.T) { refused(t, "http://app.acme.example") })
	t.Run("null", func(t *testing.T) { refused(t, "null") })
	t.Run("allowed", func(t *testing.T) { accepted(t, "https://app.acme.example") })
	t.Run("allowed second", func(t *testing.T) { accepted(t, "https://other.acme.example") })
	t.Run("own origin", func(t *testing.T) { accepted(t, fmt.Sprintf("http://127.0.0.1:%d", port)) })
	t.Run("none", func(t *testing.T) { accepted(t, "") })
}
