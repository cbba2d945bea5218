package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// startSingleGateway runs one anonymous server at /mcp in front of u.
func startSingleGateway(t *testing.T, u *upstream, extra string) (int, *caddyProc) {
	t.Helper()
	port := freePort(t)
	c := startCaddy(t, caddyConfig{
		Global: "mcp {\n\ttenant acme {\n\t}\n" + openPolicy + "}",
		Sites: fmt.Sprintf(`http://:%d {
	mcp_gateway {
		server acme-stream {
			tenant acme
			path /mcp
			upstream %s
			anonymous
			%s
		}
	}
}
`, port, u.URL, extra),
		WaitPorts: []int{port},
	})
	return port, c
}

// TestStreaming: progress notifications and log messages sent over SSE
// reach the client one by one while the tool is still running.
func TestStreaming(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "streamer")
	port, _ := startSingleGateway(t, u, "")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	for _, rev := range []string{"", rev20251125} {
		t.Run(revisionName(rev), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var mu sync.Mutex
			var progress, logs []time.Time
			cl := mustConnect(ctx, t, port, endpoint, clientOptions{
				Revision: rev,
				Options: &mcp.ClientOptions{
					ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
						mu.Lock()
						progress = append(progress, time.Now())
						mu.Unlock()
					},
					LoggingMessageHandler: func(context.Context, *mcp.LoggingMessageRequest) {
						mu.Lock()
						logs = append(logs, time.Now())
						mu.Unlock()
					},
				},
			})
			if rev != "" {
				// Session revisions send log messages only once a level is set.
				if err := cl.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
					t.Fatalf("logging/setLevel: %v", err)
				}
			}
			const steps, delay = 5, 400 * time.Millisecond
			params := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": steps, "delay_ms": delay.Milliseconds()}}
			params.SetProgressToken("countdown-1")
			if rev == "" {
				// 2026-07-28 asks for log messages per request.
				params.Meta[mcp.MetaKeyLogLevel] = "info"
			}
			start := time.Now()
			res, err := cl.CallTool(ctx, params)
			if err != nil {
				t.Fatalf("tools/call countdown: %v", err)
			}
			if res.IsError {
				t.Fatalf("countdown: tool error %s", contentText(res.Content))
			}
			var done time.Time
			select {
			case done = <-u.countdownDone:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream never reported the countdown finished")
			}
			// Notifications are handled asynchronously; give the last ones
			// a moment.
			time.Sleep(200 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if len(progress) != steps {
				t.Fatalf("received %d progress notifications, want %d", len(progress), steps)
			}
			if !progress[0].Before(done) {
				t.Errorf("first progress notification arrived %s after start, after the tool finished (%s): the stream was buffered",
					progress[0].Sub(start), done.Sub(start))
			}
			// Event by event: the notifications arrive spread over the
			// tool's run, not in one burst at its end.
			if spread := progress[steps-1].Sub(progress[0]); spread < (steps-1)*delay/2 {
				t.Errorf("progress notifications arrived within %s, want them spread over ~%s (event by event)", spread, (steps-1)*delay)
			}
			if len(logs) == 0 {
				t.Errorf("received no log message")
			} else if !logs[0].Before(done) {
				t.Errorf("first log message arrived after the tool finished: the stream was buffered")
			}
		})
	}
}

// TestHeaderPassThrough: the MCP transport headers reach the upstream.
func TestHeaderPassThrough(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "headers")
	port, _ := startSingleGateway(t, u, "")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	t.Run("2026-07-28 Mcp-Method Mcp-Name Mcp-Param", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl := mustConnect(ctx, t, port, endpoint, clientOptions{Header: http.Header{"X-Test-Client": {"hdr-2026"}}})
		if _, err := cl.toolNames(ctx); err != nil { // caches the x-mcp-header annotation
			t.Fatalf("tools/list: %v", err)
		}
		who, err := cl.whoami(ctx, map[string]any{"region": "eu-west"})
		if err != nil {
			t.Fatalf("whoami: %v", err)
		}
		if who.Region != "eu-west" {
			t.Errorf("whoami region = %q", who.Region)
		}
		var call *recordedRequest
		for _, r := range u.RequestsWith("X-Test-Client", "hdr-2026") {
			if r.RPCMethod == "tools/call" {
				call = &r
			}
		}
		if call == nil {
			t.Fatalf("no tools/call reached the upstream:\n%s", u.Summary())
		}
		for h, want := range map[string]string{
			"Mcp-Protocol-Version": defaultRevision,
			"Mcp-Method":           "tools/call",
			"Mcp-Name":             "whoami",
			"Mcp-Param-Region":     "eu-west",
		} {
			if got := call.Header.Get(h); got != want {
				t.Errorf("upstream got %s: %q, want %q", h, got, want)
			}
		}
		if got := call.Header.Get("Mcp-Session-Id"); got != "" {
			t.Errorf("upstream got Mcp-Session-Id %q under stateless 2026-07-28", got)
		}
	})

	t.Run("2025-11-25 Mcp-Session-Id Last-Event-ID", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl := mustConnect(ctx, t, port, endpoint, clientOptions{
			Revision:             rev20251125,
			Header:               http.Header{"X-Test-Client": {"hdr-2025"}},
			DisableStandaloneSSE: true,
		})
		if _, err := cl.whoami(ctx, nil); err != nil {
			t.Fatalf("whoami: %v", err)
		}
		var upstreamSID string
		var call *recordedRequest
		for _, r := range u.RequestsWith("X-Test-Client", "hdr-2025") {
			if r.RPCMethod == "initialize" {
				upstreamSID = r.RespSessionID
			}
			if r.RPCMethod == "tools/call" {
				call = &r
			}
		}
		if upstreamSID == "" || call == nil {
			t.Fatalf("upstream saw no initialize with a session or no tools/call:\n%s", u.Summary())
		}
		if got := call.Header.Get("Mcp-Session-Id"); got != upstreamSID {
			t.Errorf("upstream got Mcp-Session-Id %q on tools/call, want the session it created %q", got, upstreamSID)
		}
		if got := call.Header.Get("Mcp-Protocol-Version"); got != rev20251125 {
			t.Errorf("upstream got MCP-Protocol-Version %q, want %q", got, rev20251125)
		}
		if cl.ID() == "" {
			t.Errorf("the client got no Mcp-Session-Id from the gateway")
		}

		// A resuming GET stream carries Last-Event-ID.
		gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
		defer gcancel()
		req, _ := http.NewRequestWithContext(gctx, "GET", endpoint, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", cl.ID())
		req.Header.Set("Mcp-Protocol-Version", rev20251125)
		req.Header.Set("Last-Event-ID", "resume-42")
		req.Header.Set("X-Test-Client", "hdr-2025-get")
		if resp, err := cl.HTTP.Do(req); err == nil {
			resp.Body.Close()
		}
		deadline := time.Now().Add(3 * time.Second)
		var got []recordedRequest
		for time.Now().Before(deadline) {
			if got = u.RequestsWith("X-Test-Client", "hdr-2025-get"); len(got) > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(got) == 0 {
			t.Fatalf("the GET stream request did not reach the upstream:\n%s", u.Summary())
		}
		if v := got[0].Header.Get("Last-Event-ID"); v != "resume-42" {
			t.Errorf("upstream got Last-Event-ID %q, want resume-42", v)
		}
		if v := got[0].Header.Get("Mcp-Session-Id"); v != upstreamSID {
			t.Errorf("upstream got Mcp-Session-Id %q on GET, want %q", v, upstreamSID)
		}
	})
}

// TestClientDisconnectDoesNotCancelUpstream: a client whose connection
// drops mid-call does not cancel the upstream's tool call.
func TestClientDisconnectDoesNotCancelUpstream(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "sleeper")
	port, _ := startSingleGateway(t, u, "")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The default revision: stateless, so no session DELETE or
	// notifications/cancelled follows; the only signal is the dropped
	// connection.
	cl := mustConnect(ctx, t, port, endpoint, clientOptions{})
	callErr := make(chan error, 1)
	go func() {
		_, err := cl.CallTool(ctx, &mcp.CallToolParams{Name: "sleep", Arguments: map[string]any{"ms": 1500}})
		callErr <- err
	}()
	select {
	case <-u.sleepStarted:
	case <-time.After(10 * time.Second):
		t.Fatalf("the sleep call never reached the upstream:\n%s", u.Summary())
	}
	time.Sleep(100 * time.Millisecond)
	cl.HTTP.CutConnections()
	select {
	case err := <-callErr:
		if err == nil {
			t.Logf("the call returned without error although its connection was cut")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the client call did not end after its connection was cut")
	}
	select {
	case outcome := <-u.sleeps:
		if outcome != "completed" {
			t.Errorf("upstream tool call after client disconnect: %s, want completed", outcome)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the upstream tool call never finished")
	}
	if strings.Contains(u.Summary(), "notifications/cancelled") {
		t.Errorf("the upstream got notifications/cancelled:\n%s", u.Summary())
	}
}
