package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// Reliability tests (issue 7): the real binary under faults of the token
// endpoint, the issuer's JWKS and the upstream, clients that vanish
// mid-stream, and a flood of hostile input. Everything runs on loopback and
// is bounded in time and count; each test states what it proves.

const connClientSecret = "conn-client-secret-7d2e91"

// rpcError is the JSON-RPC error of a response body.
type rpcError struct {
	ID    json.RawMessage `json:"id"`
	Error *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func parseRPCError(body string) (*rpcError, error) {
	var e rpcError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return nil, fmt.Errorf("not JSON: %v: %.300q", err, body)
	}
	if e.Error == nil {
		return nil, fmt.Errorf("no JSON-RPC error: %.300q", body)
	}
	return &e, nil
}

// TestReliabilityConnectionTokenEndpoint proves that a tenant connection's
// token endpoint failing never hangs a call or leaks a secret: down on a
// cold cache -> 502 with a JSON-RPC error naming the connection; down with
// a warm cache -> calls keep succeeding until the cached token expires,
// then 502; slow -> the call waits for it and completes (one token request
// for concurrent callers); an OAuth error (invalid_client) -> 502 naming
// the connection.
func TestReliabilityConnectionTokenEndpoint(t *testing.T) {
	t.Parallel()
	const connTTL = 6 * time.Second
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "conn-client", Secret: connClientSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"read_content"}, TokenTTL: connTTL},
		oidctest.Client{ID: "agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Subject: "alice"},
	))
	notion, broken := newUpstream(t, "notion"), newUpstream(t, "broken")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %[1]s
	tenant acme {
		connection notion {
			oauth2 {
				token_url %[2]s
				client_id conn-client
				client_secret %[3]s
				scopes read_content
			}
		}
		connection broken {
			oauth2 {
				token_url %[2]s
				client_id conn-client
				client_secret wrong-%[3]s
				scopes read_content
			}
		}
	}
	policy everyone {
		allow
		agents *
		scopes mcp:*
	}
}`, op.Issuer(), op.TokenURL(), connClientSecret),
		Sites: fmt.Sprintf(`%[1]s {
	mcp_gateway {
		server notion {
			tenant acme
			path /notion/mcp
			upstream %[2]s
			connection notion
			require mcp:read
		}
		server broken {
			tenant acme
			path /broken/mcp
			upstream %[3]s
			connection broken
			require mcp:read
		}
	}
}`, base, notion.URL, broken.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 90)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	notionURL, brokenURL := base+"/notion/mcp", base+"/broken/mcp"
	// Agent tokens first: the outages below hit every grant of the provider.
	tok, err := op.AgentToken(ctx, "agent", notionURL, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	brokenTok, err := op.AgentToken(ctx, "agent", brokenURL, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{connClientSecret, tok, brokenTok, agentSecret}

	// expect502 checks a clear, secret-free connection error.
	expect502 := func(what string, status int, body, conn string, took time.Duration) {
		t.Helper()
		if status != http.StatusBadGateway {
			t.Fatalf("%s: status %d, want 502; body %.300s", what, status, body)
		}
		e, err := parseRPCError(body)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if e.Error.Code != -32001 || !strings.Contains(e.Error.Message, "onnection "+conn) || string(e.ID) != "1" {
			t.Fatalf("%s: JSON-RPC error %+v (id %s) does not name connection %s", what, *e.Error, e.ID, conn)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Fatalf("%s: the error body carries a secret or token: %s", what, body)
			}
		}
		if took > 5*time.Second {
			t.Fatalf("%s: the 502 took %s", what, took)
		}
		t.Logf("%s: 502 in %s: %s", what, took.Round(time.Millisecond), e.Error.Message)
	}
	call := func(endpoint, token string) (int, string, time.Duration) {
		t.Helper()
		start := time.Now()
		st, body, err := statelessCall(ctx, hc, endpoint, token, "whoami", nil)
		if err != nil {
			t.Fatalf("call %s: %v", endpoint, err)
		}
		return st, body, time.Since(start)
	}

	// 1. Cold cache, token endpoint answering 503.
	op.SetStatus(oidctest.EndpointToken, http.StatusServiceUnavailable)
	st, body, took := call(notionURL, tok)
	expect502("token endpoint down, cold cache", st, body, "notion", took)
	if n := len(notion.Requests()); n != 0 {
		t.Fatalf("the upstream was called without a connection token:\n%s", notion.Summary())
	}

	// 2. Warm cache: once a token is cached, the endpoint going down does
	// not matter until that token expires.
	op.SetStatus(oidctest.EndpointToken, 0)
	time.Sleep(1100 * time.Millisecond) // past the cache's failure backoff (1s)
	// The token is issued between t0 and t1: it expires between t0+5s
	// (whole seconds) and t1+6s.
	t0 := time.Now()
	if st, body, _ := call(notionURL, tok); st != 200 || !strings.Contains(body, "upstream=notion") {
		t.Fatalf("warm-up call: %d %.300s", st, body)
	}
	t1 := time.Now()
	op.SetStatus(oidctest.EndpointToken, http.StatusServiceUnavailable)
	before := op.Requests(oidctest.EndpointToken)
	ok := 0
	for time.Since(t0) < connTTL-2500*time.Millisecond {
		st, body, _ := call(notionURL, tok)
		if st != 200 || !strings.Contains(body, "upstream=notion") {
			t.Fatalf("%s after caching, token endpoint down: %d %.300s", time.Since(t0).Round(time.Millisecond), st, body)
		}
		ok++
		time.Sleep(200 * time.Millisecond)
	}
	// Between refresh-ahead and expiry the gateway retries in the
	// background and keeps serving the cached token.
	for time.Since(t0) < connTTL-700*time.Millisecond {
		st, _, _ := call(notionURL, tok)
		if st == 200 {
			ok++
		}
		time.Sleep(200 * time.Millisecond)
	}
	tried := op.Requests(oidctest.EndpointToken) - before
	time.Sleep(time.Until(t1.Add(connTTL + 1500*time.Millisecond)))
	st, body, took = call(notionURL, tok)
	expect502("token endpoint down, cached token expired", st, body, "notion", took)
	t.Logf("cached token served %d calls while the token endpoint was down (%d failed refresh attempts)", ok, tried)
	if tried == 0 {
		t.Errorf("the gateway never tried to refresh the token while serving the cached one")
	}

	// 3. Slow token endpoint (3s; the acquire timeout is a fixed 10s, not
	// configurable): concurrent calls wait for one token request and
	// complete.
	op.SetStatus(oidctest.EndpointToken, 0)
	op.SetDelay(oidctest.EndpointToken, 3*time.Second)
	time.Sleep(1100 * time.Millisecond)
	before = op.TokenRequests("conn-client")
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			st, body, err := statelessCall(ctx, hc, notionURL, tok, "whoami", nil)
			took := time.Since(start)
			if err != nil || st != 200 || !strings.Contains(body, "upstream=notion") {
				errs <- fmt.Sprintf("%d %v %.200s", st, err, body)
			} else if took < 2500*time.Millisecond || took > 10*time.Second {
				errs <- fmt.Sprintf("took %s with a 3s token endpoint", took)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("slow token endpoint: %s", e)
	}
	if n := op.TokenRequests("conn-client") - before; n != 1 {
		t.Errorf("4 concurrent calls on a slow token endpoint made %d token requests, want 1", n)
	}
	op.SetDelay(oidctest.EndpointToken, 0)

	// 4. The token endpoint refuses the connection's client (wrong secret):
	// an OAuth error, 502 naming the connection, the secret nowhere.
	secrets = append(secrets, "wrong-"+connClientSecret)
	st, body, took = call(brokenURL, brokenTok)
	expect502("token endpoint answers invalid_client", st, body, "broken", took)
	if n := len(broken.Requests()); n != 0 {
		t.Fatalf("the upstream of a broken connection was called:\n%s", broken.Summary())
	}
	assertNoSecretsLogged(t, c, secrets...)
}

// TestReliabilityJWKSDownAtStartup proves that an issuer unreachable when
// Caddy starts neither blocks startup nor hangs requests (401 within a
// bound), and that once it is back its tokens are accepted without a
// restart (kid-miss or background refresh).
func TestReliabilityJWKSDownAtStartup(t *testing.T) {
	t.Parallel()
	op := startProvider(t)
	addr := strings.TrimPrefix(op.Issuer(), "http://")
	// The issuer goes away before the gateway starts: connection refused.
	_ = op.Close()
	up := newUpstream(t, "acme")
	port := freePort(t)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	start := time.Now()
	startIssuerGateway(t, op.Issuer(), port, up.URL)
	t.Logf("gateway ready %s after start with the issuer down", time.Since(start).Round(time.Millisecond))
	tok, err := op.Sign(map[string]any{"sub": "alice", "client_id": "agent", "aud": endpoint, "scope": "mcp:read"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := testContext(t, 90)
	defer cancel()
	hc := &http.Client{Timeout: 20 * time.Second}

	for i := 0; i < 5; i++ {
		t0 := time.Now()
		st, body, err := statelessCall(ctx, hc, endpoint, tok, "whoami", nil)
		took := time.Since(t0)
		if err != nil {
			t.Fatalf("issuer down: %v", err)
		}
		if st != http.StatusUnauthorized {
			t.Fatalf("issuer down: status %d, want 401: %.300s", st, body)
		}
		if took > 3*time.Second {
			t.Fatalf("issuer down: the 401 took %s", took)
		}
	}

	// The issuer comes back on the same address with the same keys.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listening on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: op.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	back := time.Now()
	for {
		st, body, err := statelessCall(ctx, hc, endpoint, tok, "whoami", nil)
		if err == nil && st == 200 && strings.Contains(body, "upstream=acme") {
			break
		}
		if err == nil && st != http.StatusUnauthorized {
			t.Fatalf("issuer back: status %d: %.300s", st, body)
		}
		if time.Since(back) > 35*time.Second {
			t.Fatalf("tokens still refused %s after the issuer came back (last: %d %v)", time.Since(back).Round(time.Second), st, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("tokens accepted %s after the issuer came back", time.Since(back).Round(100*time.Millisecond))
	if n := op.Requests(oidctest.EndpointJWKS); n == 0 {
		t.Errorf("the JWKS was never fetched")
	}
}

// TestReliabilityJWKSHangingAtStartup proves that a JWKS endpoint that
// accepts connections but never answers holds a request at most for the
// JWKS fetch timeout (10s, fixed), then 401, and the gateway stays usable.
func TestReliabilityJWKSHangingAtStartup(t *testing.T) {
	t.Parallel()
	op := startProvider(t)
	op.SetDelay(oidctest.EndpointJWKS, time.Minute)
	up := newUpstream(t, "acme")
	port := freePort(t)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	startIssuerGateway(t, op.Issuer(), port, up.URL)
	tok, err := op.Sign(map[string]any{"sub": "alice", "client_id": "agent", "aud": endpoint, "scope": "mcp:read"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := testContext(t, 60)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			st, body, err := statelessCall(ctx, hc, endpoint, tok, "whoami", nil)
			took := time.Since(t0)
			mu.Lock()
			worst = max(worst, took)
			mu.Unlock()
			if err != nil || st != http.StatusUnauthorized {
				t.Errorf("JWKS hanging: %d %v %.200s", st, err, body)
			}
		}()
	}
	wg.Wait()
	t.Logf("JWKS hanging: slowest 401 after %s", worst.Round(time.Millisecond))
	if worst > 13*time.Second {
		t.Errorf("a request waited %s for a hanging JWKS endpoint (want at most the 10s fetch timeout)", worst)
	}
	// Healthy: the endpoint answers again, tokens are accepted.
	op.SetDelay(oidctest.EndpointJWKS, 0)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, err := statelessCall(ctx, hc, endpoint, tok, "whoami", nil)
		if err == nil && st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokens still refused after the JWKS recovered: %d %v", st, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// resetUpstream answers every POST with an SSE response that carries one
// event and then drops the TCP connection (no terminating chunk).
func resetUpstream(t *testing.T) (string, *int64) {
	t.Helper()
	var mu sync.Mutex
	var n int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"first-event\"}}\n\n")
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		time.Sleep(100 * time.Millisecond)
		conn, _, err := rc.Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN
		}
		conn.Close()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/mcp", &n
}

// drainUpstream empties the upstream's notification channels (they are
// buffered for 16 and the tools block on them) until the test ends, and
// counts the sleep and countdown calls that ran to completion.
func drainUpstream(t *testing.T, u *upstream) (sleeps, countdowns func() int) {
	t.Helper()
	stop := make(chan struct{})
	var mu sync.Mutex
	var slept, counted int
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-u.sleepStarted:
			case <-u.countdownDone:
				mu.Lock()
				counted++
				mu.Unlock()
			case s := <-u.sleeps:
				if s == "completed" {
					mu.Lock()
					slept++
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop) })
	return func() int { mu.Lock(); defer mu.Unlock(); return slept },
		func() int { mu.Lock(); defer mu.Unlock(); return counted }
}

// TestReliabilityUpstreamFaults proves that upstream failures give prompt
// answers and leave the gateway healthy: a closed port -> 502 within a
// second or so; a slow tool (3s) -> the call completes; an upstream that
// resets the connection mid-SSE -> the client gets the first event, then a
// broken stream (not a clean end), and the next request works.
func TestReliabilityUpstreamFaults(t *testing.T) {
	t.Parallel()
	slow := newUpstream(t, "slow")
	_, _ = drainUpstream(t, slow)
	resetURL, resets := resetUpstream(t)
	closed := freePort(t)
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := startCaddy(t, caddyConfig{
		Global: "mcp {\n\ttenant acme\n" + openPolicy + "}",
		Sites: fmt.Sprintf(`%s {
	mcp_gateway {
		server down {
			tenant acme
			path /down/mcp
			upstream http://127.0.0.1:%d/mcp
			anonymous
		}
		server slow {
			tenant acme
			path /slow/mcp
			upstream %s
			anonymous
		}
		server reset {
			tenant acme
			path /reset/mcp
			upstream %s
			anonymous
		}
	}
}`, base, closed, slow.URL, resetURL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 90)
	defer cancel()
	hc := &http.Client{Timeout: 20 * time.Second}

	// Upstream down.
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		st, body, err := statelessCall(ctx, hc, base+"/down/mcp", "x", "whoami", nil)
		took := time.Since(t0)
		if err != nil || st != http.StatusBadGateway {
			t.Fatalf("upstream down: %d %v %.300s", st, err, body)
		}
		if took > 3*time.Second {
			t.Fatalf("upstream down: the 502 took %s", took)
		}
		// SPEC: failures get clear JSON-RPC errors, not Caddy's empty page.
		e, err := parseRPCError(body)
		if err != nil {
			t.Fatalf("upstream down: the 502 is not a JSON-RPC error: %v", err)
		}
		if e.Error.Code != -32000 || string(e.ID) != "1" || !strings.Contains(e.Error.Message, "down") {
			t.Fatalf("upstream down: JSON-RPC error %+v (id %s) does not name the server", *e.Error, e.ID)
		}
		if i == 0 {
			t.Logf("upstream down: 502 in %s: %s", took.Round(time.Millisecond), e.Error.Message)
		}
	}

	// Upstream slow: a 3s tool call completes through the gateway.
	cl := mustConnect(ctx, t, port, base+"/slow/mcp", clientOptions{})
	t0 := time.Now()
	res, err := cl.CallTool(ctx, &mcp.CallToolParams{Name: "sleep", Arguments: map[string]any{"ms": 3000}})
	if err != nil || res.IsError || contentText(res.Content) != "slept" {
		t.Fatalf("slow tool: %v %+v", err, res)
	}
	if took := time.Since(t0); took < 3*time.Second {
		t.Fatalf("slow tool returned after %s", took)
	}

	// Upstream resetting mid-SSE, three times.
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/reset/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", rev20251125)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("reset #%d: %v", i, err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("reset #%d: %d %s", i, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		br := bufio.NewReader(resp.Body)
		var got strings.Builder
		var readErr error
		for {
			line, err := br.ReadString('\n')
			got.WriteString(line)
			if err != nil {
				readErr = err
				break
			}
		}
		resp.Body.Close()
		if !strings.Contains(got.String(), "first-event") {
			t.Fatalf("reset #%d: the first event did not arrive: %q (%v)", i, got.String(), readErr)
		}
		if readErr == io.EOF {
			t.Fatalf("reset #%d: the stream ended cleanly although the upstream reset it: the client cannot tell a cut stream from a complete one", i)
		}
		if i == 0 {
			t.Logf("upstream reset mid-SSE: client got the first event, then %v", readErr)
		}
	}
	if *resets < 3 {
		t.Fatalf("the resetting upstream saw %d requests", *resets)
	}

	// Healthy afterwards.
	who, err := mustConnect(ctx, t, port, base+"/slow/mcp", clientOptions{Revision: rev20251125}).whoami(ctx, nil)
	if err != nil || who.Upstream != "slow" {
		t.Fatalf("after the faults: %+v %v", who, err)
	}
	assertNoPanic(t, c)
}

// assertNoPanic fails when the gateway's output shows a panic (a recovered
// handler panic is logged by net/http as "http: panic serving").
func assertNoPanic(t *testing.T, c *caddyProc) {
	t.Helper()
	for _, line := range strings.Split(c.Output.String(), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "panic") || strings.Contains(l, "goroutine ") && strings.Contains(l, "[running]") {
			t.Errorf("the gateway's output shows a panic: %.500s", line)
		}
	}
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)
var heapInuse = regexp.MustCompile(`# HeapInuse = (\d+)`)

// adminGet fetches a path of the gateway's admin API.
func adminGet(t *testing.T, c *caddyProc, path string) string {
	t.Helper()
	hc := &http.Client{Timeout: 20 * time.Second}
	resp, err := hc.Get("http://" + c.AdminAddr + path)
	if err != nil {
		t.Fatalf("admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("admin %s: %d %.300s", path, resp.StatusCode, b)
	}
	return string(b)
}

// gatewayGoroutines reads the goroutine count from the admin API's pprof,
// leaving out the goroutines of idle pooled upstream connections
// (net/http's persistConn read and write loops): the pool is bounded by the
// transport's idle limits and is not a leak.
func gatewayGoroutines(t *testing.T, c *caddyProc) int {
	t.Helper()
	prof := adminGet(t, c, "/debug/pprof/goroutine?debug=1")
	if !goroutineTotal.MatchString(prof) {
		t.Fatal("no goroutine total in /debug/pprof/goroutine")
	}
	n := 0
	for _, block := range strings.Split(prof, "\n\n") {
		m := goroutineBlock.FindStringSubmatch(block)
		if m == nil || strings.Contains(block, "net/http.(*persistConn)") {
			continue
		}
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

var goroutineBlock = regexp.MustCompile(`(?m)^(\d+) @ `)

// gatewayHeap reads HeapInuse after a forced GC.
func gatewayHeap(t *testing.T, c *caddyProc) int64 {
	t.Helper()
	m := heapInuse.FindStringSubmatch(adminGet(t, c, "/debug/pprof/heap?gc=1&debug=1"))
	if m == nil {
		t.Fatal("no HeapInuse in /debug/pprof/heap")
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// settleGoroutines polls until the count (gatewayGoroutines) is at most limit (or the timeout
// passes) and returns the last count.
func settleGoroutines(t *testing.T, c *caddyProc, limit int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := gatewayGoroutines(t, c)
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestReliabilityClientDisconnectNoLeak proves that clients vanishing
// mid-stream (session GET streams, progress SSE of long tool calls,
// stateless tool calls) leave no goroutines or memory behind in the
// gateway once the upstream calls they started have finished: after
// repeated rounds of 60 cut streams, the goroutine count and the heap in
// use return to the level of the first round.
func TestReliabilityClientDisconnectNoLeak(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "leaky")
	sleepsDone, countdownsDone := drainUpstream(t, u)
	port, c := startSingleGateway(t, u, "")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	ctx, cancel := testContext(t, 150)
	defer cancel()

	const sessions, stateless = 20, 40
	round := func(r int) {
		wantSleeps, countdowns0 := sleepsDone()+stateless, countdownsDone()
		sleeps0 := len(u.RequestsWith("Mcp-Name", "sleep"))
		var clients []*mcpClient
		// Session clients (2025-11-25) hold their standalone GET stream and
		// run a countdown whose progress streams over SSE.
		var wg sync.WaitGroup
		firstProgress := make(chan struct{}, sessions)
		for i := 0; i < sessions; i++ {
			cl := mustConnect(ctx, t, port, endpoint, clientOptions{Revision: rev20251125, Options: &mcp.ClientOptions{
				ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
					select {
					case firstProgress <- struct{}{}:
					default:
					}
				},
			}})
			clients = append(clients, cl)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = cl.CallTool(ctx, &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": 15, "delay_ms": 100},
					Meta: mcp.Meta{"progressToken": "p"}})
			}()
		}
		// Stateless tool calls (2026-07-28) on raw connections.
		var conns []net.Conn
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":1500},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"leak","version":"1"}}}}`
		for i := 0; i < stateless; i++ {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
				"Mcp-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: sleep\r\nContent-Length: %d\r\n\r\n%s", port, len(body), body)
			conns = append(conns, conn)
		}
		// Wait until the streams are flowing, then cut every connection.
		for i := 0; i < sessions; i++ {
			select {
			case <-firstProgress:
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: only %d of %d countdowns streamed progress", r, i, sessions)
			}
		}
		for len(u.RequestsWith("Mcp-Name", "sleep")) < sleeps0+stateless {
			if ctx.Err() != nil {
				t.Fatalf("round %d: the stateless calls did not all reach the upstream", r)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		if r == 1 {
			// The measure sees the streams: many more goroutines now.
			t.Logf("round %d, streams open: %d goroutines", r, gatewayGoroutines(t, c))
		}
		for _, cl := range clients {
			cl.HTTP.CutConnections()
		}
		for _, conn := range conns {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			conn.Close()
		}
		wg.Wait()
		// The stateless calls run to completion upstream (a disconnect is
		// not a cancellation); wait for them, and for the countdowns' time.
		deadline := time.Now().Add(30 * time.Second)
		for sleepsDone() < wantSleeps {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d stateless upstream calls finished, want %d", r, sleepsDone()-wantSleeps+stateless, stateless)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i := 0; i < 30 && countdownsDone()-countdowns0 < sessions; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("round %d: %d of %d stateless calls and %d of %d SSE countdowns ran to completion upstream after their clients vanished",
			r, stateless, stateless, countdownsDone()-countdowns0, sessions)
		// Close the sessions (DELETE on a fresh connection), then cut that
		// connection too.
		for _, cl := range clients {
			_ = cl.Close()
			cl.HTTP.CutConnections()
		}
	}

	round(0)
	base := settleGoroutines(t, c, 0, 3*time.Second)
	baseHeap := gatewayHeap(t, c)
	t.Logf("after the warm-up round: %d goroutines (besides idle upstream connections), heap in use %.1f MiB", base, float64(baseHeap)/(1<<20))
	const tolerance = 10
	var after int
	for r := 1; r <= 2; r++ {
		round(r)
		after = settleGoroutines(t, c, base+tolerance, 20*time.Second)
		t.Logf("after round %d (%d cut streams): %d goroutines", r, sessions+stateless, after)
	}
	heap := gatewayHeap(t, c)
	t.Logf("heap in use %.1f MiB (was %.1f MiB)", float64(heap)/(1<<20), float64(baseHeap)/(1<<20))
	if after > base+tolerance {
		t.Errorf("goroutine leak: %d goroutines after two rounds of %d cut streams, %d after the first", after, sessions+stateless, base)
		t.Logf("goroutines:\n%s", adminGet(t, c, "/debug/pprof/goroutine?debug=1"))
	}
	if heap > baseHeap+24<<20 {
		t.Errorf("memory leak: heap in use grew from %.1f MiB to %.1f MiB", float64(baseHeap)/(1<<20), float64(heap)/(1<<20))
	}
	assertNoPanic(t, c)
}

// TestReliabilityDisconnectMidSSEDoesNotCancelUpstream proves SPEC step 8
// for streamed calls: a client that vanishes while its tool call streams
// progress over SSE does not cancel the upstream call, which runs to its
// end (the gateway keeps draining the upstream's stream).
func TestReliabilityDisconnectMidSSEDoesNotCancelUpstream(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "streamer")
	port, _ := startSingleGateway(t, u, "")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	ctx, cancel := testContext(t, 60)
	defer cancel()
	for _, rev := range []string{"", rev20251125} {
		progress := make(chan struct{}, 16)
		cl := mustConnect(ctx, t, port, endpoint, clientOptions{Revision: rev, DisableStandaloneSSE: true, Options: &mcp.ClientOptions{
			ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
				select {
				case progress <- struct{}{}:
				default:
				}
			},
		}})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = cl.CallTool(ctx, &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": 10, "delay_ms": 150},
				Meta: mcp.Meta{"progressToken": "p"}})
		}()
		select {
		case <-progress:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no progress arrived", revisionName(rev))
		}
		cl.HTTP.CutConnections()
		<-done
		select {
		case <-u.countdownDone:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the upstream's streamed tool call did not run to completion after its client vanished "+
				"(GATEWAY BUG: caddymcp/respwriter.go Write returns the client's write error to reverse_proxy, "+
				"which then stops reading and closes the upstream stream, so the upstream sees a cancellation)", revisionName(rev))
		}
	}
}

// startIssuerGateway runs a gateway with one authenticated server, acme at
// /mcp on port, whose tokens come from issuer, open to every agent.
func startIssuerGateway(t *testing.T, issuer string, port int, upstreamURL string) *caddyProc {
	t.Helper()
	return startCaddy(t, caddyConfig{
		Global: fmt.Sprintf("mcp {\n\tissuer %s\n\ttenant acme\n%s}", issuer, openPolicy),
		Sites: fmt.Sprintf(`http://127.0.0.1:%d {
	mcp_gateway {
		server acme {
			tenant acme
			path /mcp
			upstream %s
		}
	}
}`, port, upstreamURL),
		WaitPorts: []int{port},
	})
}
