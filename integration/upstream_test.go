package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// recordedRequest is one HTTP request an upstream received.
type recordedRequest struct {
	Method string
	Path   string
	Host   string
	Header http.Header
	Body   []byte
	// RPCMethod is the JSON-RPC method of a POST body ("" otherwise).
	RPCMethod string
	// RespSessionID is the Mcp-Session-Id the upstream answered with.
	RespSessionID string
	Status        int
}

// upstream is an MCP server written with the go-sdk, on a 127.0.0.1
// listener, that records every HTTP request it receives and exposes tools
// that reveal which upstream answered:
//
//   - whoami {region?}: text "upstream=<name>", structured content with the
//     name and the headers of the request; `region` is annotated with
//     x-mcp-header "Region" (sent as Mcp-Param-Region under 2026-07-28).
//   - countdown {steps, delay_ms}: sends `steps` progress notifications
//     (and log messages) `delay_ms` apart, then returns.
//   - sleep {ms}: waits and reports on u.sleeps whether it completed or its
//     context was cancelled first.
type upstream struct {
	Name string
	URL  string // the MCP endpoint: http://127.0.0.1:PORT<path>

	srv *httptest.Server

	mu   sync.Mutex
	reqs []recordedRequest

	// countdownDone receives the time each countdown call finished.
	countdownDone chan time.Time
	// sleeps receives the outcome of each sleep call: "completed" or
	// "cancelled: <err>".
	sleeps chan string
	// sleepStarted receives a value when a sleep call starts.
	sleepStarted chan struct{}
}

const upstreamPath = "/upstream/mcp"

// newUpstream starts a recording upstream serving at upstreamPath. Like a
// server that supports every revision, it serves 2026-07-28 requests
// statelessly (a go-sdk handler with Stateless) and the session revisions
// with sessions (a stateful handler), both on the same mcp.Server.
func newUpstream(t testing.TB, name string) *upstream {
	t.Helper()
	u := &upstream{
		Name:          name,
		countdownDone: make(chan time.Time, 16),
		sleeps:        make(chan string, 16),
		sleepStarted:  make(chan struct{}, 16),
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "upstream-" + name, Version: "1.0.0"}, nil)
	u.addTools(server)
	getServer := func(*http.Request) *mcp.Server { return server }
	stateful := mcp.NewStreamableHTTPHandler(getServer, nil)
	stateless := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		Stateless: true,
		// Lets the sleep tool see the upstream HTTP request being
		// cancelled, the way a proxy that drops the upstream call on client
		// disconnect would show.
		PropagateRequestCancellation: true,
	})
	mcpHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Protocol-Version") >= "2026-07-28" || r.Header.Get("Mcp-Method") == "server/discover" {
			stateless.ServeHTTP(w, r)
			return
		}
		stateful.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.HandleFunc(upstreamPath, func(w http.ResponseWriter, r *http.Request) {
		rec := recordedRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header.Clone()}
		if r.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
			rec.Body = body
			var msg struct {
				Method string `json:"method"`
			}
			if json.Unmarshal(body, &msg) == nil {
				rec.RPCMethod = msg.Method
			}
		}
		sw := &statusWriter{ResponseWriter: w}
		// Record before serving: long-lived streams must show up at once.
		u.mu.Lock()
		idx := len(u.reqs)
		u.reqs = append(u.reqs, rec)
		u.mu.Unlock()
		mcpHandler.ServeHTTP(sw, r)
		u.mu.Lock()
		u.reqs[idx].RespSessionID = w.Header().Get("Mcp-Session-Id")
		u.reqs[idx].Status = sw.status
		u.mu.Unlock()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, recordedRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header.Clone(), Status: 404})
		u.mu.Unlock()
		http.NotFound(w, r)
	})
	u.srv = httptest.NewServer(mux)
	u.URL = u.srv.URL + upstreamPath
	t.Cleanup(u.srv.Close)
	return u
}

// statusWriter records the status code and keeps Flush working.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Requests returns a copy of the requests received so far.
func (u *upstream) Requests() []recordedRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recordedRequest(nil), u.reqs...)
}

// RequestsWith returns the requests that carried header name = value.
func (u *upstream) RequestsWith(name, value string) []recordedRequest {
	var out []recordedRequest
	for _, r := range u.Requests() {
		if r.Header.Get(name) == value {
			out = append(out, r)
		}
	}
	return out
}

// Summary describes the recorded requests, for failure messages.
func (u *upstream) Summary() string {
	var b strings.Builder
	for i, r := range u.Requests() {
		var hs []string
		for k := range r.Header {
			hs = append(hs, k+"="+strings.Join(r.Header[k], ","))
		}
		sort.Strings(hs)
		fmt.Fprintf(&b, "  #%d %s %s host=%s rpc=%s status=%d headers=[%s]\n", i, r.Method, r.Path, r.Host, r.RPCMethod, r.Status, strings.Join(hs, " "))
	}
	if b.Len() == 0 {
		return "  (no requests)\n"
	}
	return b.String()
}

// whoamiResult is the structured content of the whoami tool.
type whoamiResult struct {
	Upstream string              `json:"upstream"`
	Headers  map[string][]string `json:"headers"`
	Region   string              `json:"region,omitempty"`
}

func (u *upstream) addTools(server *mcp.Server) {
	server.AddTool(&mcp.Tool{
		Name:        "whoami",
		Description: "Names the upstream that answered and the headers it received.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}`),
	}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			Region string `json:"region"`
		}
		if len(req.Params.Arguments) > 0 {
			if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
				return nil, err
			}
		}
		res := whoamiResult{Upstream: u.Name, Region: args.Region, Headers: map[string][]string{}}
		if req.Extra != nil {
			res.Headers = req.Extra.Header
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: "upstream=" + u.Name}},
			StructuredContent: res,
		}, nil
	})

	server.AddTool(&mcp.Tool{
		Name:        "countdown",
		Description: "Sends progress notifications and log messages apart in time, then returns.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"steps":{"type":"integer"},"delay_ms":{"type":"integer"}}}`),
	}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			Steps   int `json:"steps"`
			DelayMS int `json:"delay_ms"`
		}
		_ = json.Unmarshal(req.Params.Arguments, &args)
		token := req.Params.GetProgressToken()
		for i := 1; i <= args.Steps; i++ {
			if token != nil {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: float64(i), Total: float64(args.Steps), Message: fmt.Sprintf("step %d", i),
				}); err != nil {
					return nil, err
				}
			}
			_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: u.Name, Data: fmt.Sprintf("step %d", i)})
			select {
			case <-time.After(time.Duration(args.DelayMS) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		u.countdownDone <- time.Now()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "liftoff from " + u.Name}}}, nil
	})

	server.AddTool(&mcp.Tool{
		Name:        "sleep",
		Description: "Waits ms milliseconds.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"ms":{"type":"integer"}}}`),
	}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			MS int `json:"ms"`
		}
		_ = json.Unmarshal(req.Params.Arguments, &args)
		u.sleepStarted <- struct{}{}
		select {
		case <-time.After(time.Duration(args.MS) * time.Millisecond):
			u.sleeps <- "completed"
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "slept"}}}, nil
		case <-ctx.Done():
			u.sleeps <- "cancelled: " + context.Cause(ctx).Error()
			return nil, ctx.Err()
		}
	})
}
