package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// A fleet of gateways: several processes with the same session_key and
// nothing else in common (each has its own Caddy storage), in front of the
// same upstream. This is the configuration the README section "Several instances behind a load balancer" documents.

// fleetKey and otherKey are session keys (base64 of 32 bytes).
var (
	fleetKey = base64.StdEncoding.EncodeToString([]byte("fleet-test-session-key-32-bytes!"))
	otherKey = base64.StdEncoding.EncodeToString([]byte("another-session-key-of-32-bytes!"))
)

// fleetHost is the public origin every gateway of the fleet serves (the
// audience of the agents' tokens is the same on each instance).
const fleetHost = "https://mcp.fleet.test"

// fleetGlobal is the global `mcp` block of every instance.
func fleetGlobal(key, issuer string) string {
	return fmt.Sprintf(`mcp {
	session_key %s
	issuer %s
	tenant fleet
	policy agents {
		allow
		agents *
		scopes mcp:*
	}
}`, key, issuer)
}

// fleetSites is the site of every instance: one server without session
// limits, one with a short idle timeout and one with a short ttl, all in
// front of the same upstream. proxy is an optional inner reverse_proxy
// block for the first server.
func fleetSites(port int, upstreamURL, proxy string) string {
	return fmt.Sprintf(`http://:%[1]d {
	mcp_gateway {
		server fleet {
			tenant fleet
			path /mcp
			resource %[2]s/mcp
			upstream %[3]s
			require mcp:read
			%[4]s
		}
		server fleet-idle {
			tenant fleet
			path /idle/mcp
			resource %[2]s/idle/mcp
			upstream %[3]s
			require mcp:read
			session {
				idle 2s
			}
		}
		server fleet-ttl {
			tenant fleet
			path /ttl/mcp
			resource %[2]s/ttl/mcp
			upstream %[3]s
			require mcp:read
			session {
				ttl 3s
			}
		}
	}
}`, port, fleetHost, upstreamURL, proxy)
}

// fleetProvider is an authorization server with two agents, alice and bob.
func fleetProvider(t *testing.T) *oidctest.Provider {
	t.Helper()
	return startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "alice-agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Subject: "alice"},
		oidctest.Client{ID: "bob-agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Subject: "bob"},
	))
}

// startFleetGateway runs one instance of the fleet.
func startFleetGateway(t *testing.T, key, issuer, upstreamURL, proxy string) int {
	t.Helper()
	port := freePort(t)
	startCaddy(t, caddyConfig{
		Global:    fleetGlobal(key, issuer),
		Sites:     fleetSites(port, upstreamURL, proxy),
		WaitPorts: []int{port},
	})
	return port
}

// rpcReply is an HTTP answer of a gateway to an MCP request.
type rpcReply struct {
	Status  int
	Header  http.Header
	Body    string
	Session string         // the Mcp-Session-Id response header
	Msg     map[string]any // the JSON-RPC response (plain JSON or the SSE event that carries it)
}

// errorCode is the JSON-RPC error code of the reply (0 for none).
func (r *rpcReply) errorCode() int {
	if r.Msg == nil {
		return 0
	}
	e, _ := r.Msg["error"].(map[string]any)
	if e == nil {
		return 0
	}
	c, _ := e["code"].(float64)
	return int(c)
}

func (r *rpcReply) String() string {
	return fmt.Sprintf("HTTP %d session=%.16s… body %.300s", r.Status, r.Session, r.Body)
}

// mcpHTTP sends one MCP request to the gateway on 127.0.0.1:port: method
// POST (with body), GET or DELETE; token, session and protocol version are
// sent when not empty.
func mcpHTTP(ctx context.Context, hc *http.Client, method string, port int, path, token, session, proto, body string) (*rpcReply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if proto != "" {
		req.Header.Set("Mcp-Protocol-Version", proto)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the %s answer (HTTP %d): %v", method, resp.StatusCode, err)
	}
	r := &rpcReply{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Session: resp.Header.Get("Mcp-Session-Id")}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(strings.NewReader(r.Body))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data:")
			if !ok {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(strings.TrimSpace(data)), &m) == nil && (m["result"] != nil || m["error"] != nil) {
				r.Msg = m
			}
		}
	} else if len(b) > 0 {
		_ = json.Unmarshal(b, &r.Msg)
	}
	return r, nil
}

const (
	initializeBody  = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fleet-test","version":"1"}}}`
	initializedBody = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	whoamiCallBody  = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	toolsListBody   = `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
)

// upstreamSessions lists the upstream's own ids of the sessions it
// created, in order.
func upstreamSessions(u *upstream) []string {
	var ids []string
	for _, r := range u.Requests() {
		if r.RPCMethod == "initialize" && r.RespSessionID != "" {
			ids = append(ids, r.RespSessionID)
		}
	}
	return ids
}

// lastSession waits until the upstream has created more than before
// sessions and returns the id of the last one.
func lastSession(u *upstream, before int) string {
	ids := upstreamSessions(u)
	for deadline := time.Now().Add(2 * time.Second); len(ids) <= before && time.Now().Before(deadline); ids = upstreamSessions(u) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(ids) <= before {
		return ""
	}
	return ids[len(ids)-1]
}

// whoamiVia calls whoami with a session through the gateway on port.
func whoamiVia(ctx context.Context, t *testing.T, port int, path, token, session string) *rpcReply {
	t.Helper()
	r, err := mcpHTTP(ctx, nil, http.MethodPost, port, path, token, session, rev20251125, whoamiCallBody)
	if err != nil {
		t.Fatalf("tools/call whoami via :%d%s: %v", port, path, err)
	}
	return r
}

func (r *rpcReply) whoamiOK() bool {
	return r.Status == http.StatusOK && r.errorCode() == 0 && strings.Contains(r.Body, "upstream=")
}

func (r *rpcReply) sessionNotFound() bool {
	return r.Status == http.StatusNotFound && r.errorCode() == -32002
}

// tamper changes one character in the middle of a sealed id.
func tamper(id string) string {
	b := []byte(id)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestFleetSessions: two gateway processes with the same session_key and
// no shared storage. A session created through A continues through B;
// another agent cannot use it on either; a tampered id, a third gateway
// with another key, an idle or too old session get 404; DELETE through B
// ends it at the upstream.
func TestFleetSessions(t *testing.T) {
	t.Parallel()
	op := fleetProvider(t)
	up := newUpstream(t, "fleet")
	portA := startFleetGateway(t, fleetKey, op.Issuer(), up.URL, "")
	portB := startFleetGateway(t, fleetKey, op.Issuer(), up.URL, "")
	portC := startFleetGateway(t, otherKey, op.Issuer(), up.URL, "")

	ctx, cancel := testContext(t, 120)
	defer cancel()
	tokens := map[string]string{}
	for _, agent := range []string{"alice", "bob"} {
		for _, path := range []string{"/mcp", "/idle/mcp", "/ttl/mcp"} {
			tok, err := op.AgentToken(ctx, agent+"-agent", fleetHost+path, "mcp:read")
			if err != nil {
				t.Fatal(err)
			}
			tokens[agent+path] = tok
		}
	}
	alice, bob := tokens["alice/mcp"], tokens["bob/mcp"]

	// initialize opens a session at the upstream through gateway port and
	// sends notifications/initialized through gateway next; it returns the
	// sealed id and the upstream's id.
	var initMu sync.Mutex
	initialize := func(t *testing.T, port, next int, path, token string) (sealed, upstreamID string) {
		t.Helper()
		initMu.Lock() // one at a time, to tell which upstream session is whose
		defer initMu.Unlock()
		before := len(upstreamSessions(up))
		r, err := mcpHTTP(ctx, nil, http.MethodPost, port, path, token, "", "", initializeBody)
		if err != nil {
			t.Fatalf("initialize via :%d%s: %v", port, path, err)
		}
		if r.Status != http.StatusOK || r.Session == "" || r.Msg == nil || r.Msg["result"] == nil {
			t.Fatalf("initialize via :%d%s: %s", port, path, r)
		}
		// The recording upstream notes the session id once its handler
		// has returned, which may be just after the client got the answer.
		ids := upstreamSessions(up)
		for deadline := time.Now().Add(2 * time.Second); len(ids) == before && time.Now().Before(deadline); ids = upstreamSessions(up) {
			time.Sleep(10 * time.Millisecond)
		}
		if len(ids) != before+1 {
			t.Fatalf("the upstream created %d sessions, want 1\n%s", len(ids)-before, up.Summary())
		}
		upstreamID = ids[len(ids)-1]
		if r.Session == upstreamID || strings.Contains(r.Session, upstreamID) {
			t.Fatalf("the client sees the upstream's own session id %q", upstreamID)
		}
		n, err := mcpHTTP(ctx, nil, http.MethodPost, next, path, token, r.Session, rev20251125, initializedBody)
		if err != nil || n.Status != http.StatusAccepted {
			t.Fatalf("notifications/initialized via :%d%s: %v %v", next, path, n, err)
		}
		return r.Session, upstreamID
	}

	t.Run("continues through another instance", func(t *testing.T) {
		sealed, upID := initialize(t, portA, portB, "/mcp", alice)
		before := len(up.RequestsWith("Mcp-Session-Id", upID))
		r := whoamiVia(ctx, t, portB, "/mcp", alice, sealed)
		if !r.whoamiOK() {
			t.Fatalf("tools/call whoami via B with A's session: %s", r)
		}
		if r.Session != "" && r.Session != sealed {
			t.Errorf("B answered with session id %.20s…, want the sealed id the client holds", r.Session)
		}
		l, err := mcpHTTP(ctx, nil, http.MethodPost, portB, "/mcp", alice, sealed, rev20251125, toolsListBody)
		if err != nil || l.Status != http.StatusOK || !strings.Contains(l.Body, `"whoami"`) {
			t.Fatalf("tools/list via B: %v %v", l, err)
		}
		// And back through A.
		if r := whoamiVia(ctx, t, portA, "/mcp", alice, sealed); !r.whoamiOK() {
			t.Fatalf("tools/call whoami back via A: %s", r)
		}
		got := up.RequestsWith("Mcp-Session-Id", upID)
		if len(got)-before != 3 {
			t.Fatalf("the upstream saw %d requests of session %s, want 3\n%s", len(got)-before, upID, up.Summary())
		}
		for _, q := range got[before:] {
			if q.Status != http.StatusOK {
				t.Errorf("upstream answered %s %s with %d", q.Method, q.RPCMethod, q.Status)
			}
		}

		// Another agent presenting alice's session: 404 on both instances
		// (POST, GET and DELETE), and the upstream never sees it.
		all := len(up.Requests())
		for _, port := range []int{portA, portB} {
			for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
				body := ""
				if m == http.MethodPost {
					body = whoamiCallBody
				}
				r, err := mcpHTTP(ctx, nil, m, port, "/mcp", bob, sealed, rev20251125, body)
				if err != nil {
					t.Fatal(err)
				}
				if !r.sessionNotFound() {
					t.Errorf("bob's %s with alice's session via :%d: %s, want 404 -32002", m, port, r)
				}
			}
		}
		// A tampered id: 404 on both.
		for _, port := range []int{portA, portB} {
			if r := whoamiVia(ctx, t, port, "/mcp", alice, tamper(sealed)); !r.sessionNotFound() {
				t.Errorf("tampered session id via :%d: %s, want 404 -32002", port, r)
			}
		}
		// A gateway with another session_key does not know the session.
		if r := whoamiVia(ctx, t, portC, "/mcp", alice, sealed); !r.sessionNotFound() {
			t.Errorf("alice's session at a gateway with another key: %s, want 404 -32002", r)
		}
		if n := len(up.Requests()); n != all {
			t.Fatalf("refused requests reached the upstream (%d new)\n%s", n-all, up.Summary())
		}
		// Bob's DELETE did not end alice's session.
		if r := whoamiVia(ctx, t, portB, "/mcp", alice, sealed); !r.whoamiOK() {
			t.Fatalf("alice's session after bob's attempts: %s", r)
		}

		// DELETE through B ends the session at the upstream.
		d, err := mcpHTTP(ctx, nil, http.MethodDelete, portB, "/mcp", alice, sealed, rev20251125, "")
		if err != nil || d.Status/100 != 2 {
			t.Fatalf("DELETE via B: %v %v", d, err)
		}
		var deleted bool
		for _, q := range up.RequestsWith("Mcp-Session-Id", upID) {
			if q.Method == http.MethodDelete {
				deleted = true
			}
		}
		if !deleted {
			t.Fatalf("the upstream never saw DELETE with its session id %s\n%s", upID, up.Summary())
		}
		// The session is gone at the upstream: A gets its 404.
		if r := whoamiVia(ctx, t, portA, "/mcp", alice, sealed); r.Status != http.StatusNotFound {
			t.Fatalf("a call after DELETE: %s, want 404", r)
		}
	})

	t.Run("go-sdk client across instances", func(t *testing.T) {
		// The first request (initialize) goes to A, every later one to B.
		before := len(upstreamSessions(up))
		sp := &splitTransport{first: portA, rest: portB}
		hc := &http.Client{Transport: &headerTransport{base: sp, header: bearer(alice)}}
		client := mcp.NewClient(&mcp.Implementation{Name: "fleet-sdk", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
			Endpoint: fmt.Sprintf("http://127.0.0.1:%d/mcp", portA), HTTPClient: hc, MaxRetries: -1,
		}, &mcp.ClientSessionOptions{ProtocolVersion: rev20251125})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		upID := lastSession(up, before)
		c := &mcpClient{ClientSession: cs}
		if _, err := c.toolNames(ctx); err != nil {
			t.Fatalf("tools/list via B: %v", err)
		}
		w, err := c.whoami(ctx, nil)
		if err != nil || w.Upstream != "fleet" {
			t.Fatalf("whoami via B: %+v %v", w, err)
		}
		if err := cs.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		a, b := sp.counts()
		if a != 1 || b < 3 {
			t.Fatalf("requests sent to A %d, to B %d; want 1 and at least 3", a, b)
		}
		methods := map[string]int{}
		for _, q := range up.RequestsWith("Mcp-Session-Id", upID) {
			methods[q.Method+" "+q.RPCMethod]++
			if q.Status/100 != 2 {
				t.Errorf("upstream answered %s %s with %d\n%s", q.Method, q.RPCMethod, q.Status, up.Summary())
			}
		}
		for _, want := range []string{"POST notifications/initialized", "POST tools/list", "POST tools/call", "DELETE "} {
			if methods[want] == 0 {
				t.Errorf("the upstream never saw %q with its session id; saw %v", want, methods)
			}
		}
	})

	// idle and ttl run side by side (they wait).
	t.Run("expiry", func(t *testing.T) {
		t.Run("idle", func(t *testing.T) {
			t.Parallel()
			tok := tokens["alice/idle/mcp"]
			sealed, _ := initialize(t, portA, portA, "/idle/mcp", tok)
			start := time.Now()
			at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
			expect := func(port int, ok bool, when string) {
				t.Helper()
				r := whoamiVia(ctx, t, port, "/idle/mcp", tok, sealed)
				if ok && !r.whoamiOK() {
					t.Fatalf("%s: %s, want 200", when, r)
				}
				if !ok && !r.sessionNotFound() {
					t.Fatalf("%s: %s, want 404 -32002", when, r)
				}
			}
			// idle is 2s. B has never seen the session: it counts from the
			// creation time.
			at(500 * time.Millisecond)
			expect(portB, true, "B 0.5s after creation")
			// A keeps the session busy...
			for _, d := range []time.Duration{1300, 2100, 2900, 3700} {
				at(d * time.Millisecond)
				expect(portA, true, fmt.Sprintf("A at %dms (within idle of the last use)", d))
			}
			// ...but B last saw it at 0.5s: idle counts per instance.
			at(4300 * time.Millisecond)
			expect(portB, false, "B 3.8s after its last use of the session (used on A meanwhile)")
			at(4600 * time.Millisecond)
			expect(portA, true, "A 0.9s after its last use")
			// 3.5s idle everywhere: gone.
			at(8100 * time.Millisecond)
			expect(portA, false, "A after 3.5s idle")
		})

		t.Run("ttl", func(t *testing.T) {
			t.Parallel()
			tok := tokens["alice/ttl/mcp"]
			sealed, _ := initialize(t, portA, portB, "/ttl/mcp", tok)
			start := time.Now()
			if r := whoamiVia(ctx, t, portB, "/ttl/mcp", tok, sealed); !r.whoamiOK() {
				t.Fatalf("within ttl via B: %s", r)
			}
			time.Sleep(time.Until(start.Add(4500 * time.Millisecond)))
			for _, port := range []int{portA, portB} {
				if r := whoamiVia(ctx, t, port, "/ttl/mcp", tok, sealed); !r.sessionNotFound() {
					t.Errorf("past ttl via :%d: %s, want 404 -32002", port, r)
				}
			}
		})
	})
}

// splitTransport sends the first request to 127.0.0.1:first and every
// later one to 127.0.0.1:rest.
type splitTransport struct {
	first, rest int
	mu          sync.Mutex
	a, b        int
}

func (s *splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	port := s.rest
	s.mu.Lock()
	if s.a == 0 {
		port = s.first
		s.a++
	} else {
		s.b++
	}
	s.mu.Unlock()
	r = r.Clone(r.Context())
	r.URL.Host = fmt.Sprintf("127.0.0.1:%d", port)
	r.Host = r.URL.Host
	return http.DefaultTransport.RoundTrip(r)
}

func (s *splitTransport) counts() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a, s.b
}

// stickyOutcome is what happened to one session of
// TestStickyUpstreamSessions.
type stickyOutcome struct {
	sealed, upID, createdOn string
	statuses                []int
}

func seen(outs []stickyOutcome, upID string) bool {
	for _, o := range outs {
		if o.upID == upID {
			return true
		}
	}
	return false
}

// TestStickyUpstreamSessions: a server whose reverse_proxy balances two
// upstream instances with `lb_policy cookie`, behind two gateways of a
// fleet. `lb_policy header Mcp-Session-Id` cannot work (initialize carries
// no session id, so it lands at random, and later requests hash the id the
// upstream chose, which may point to the other instance). With the cookie
// policy, the gateway seals the cookie naming the instance that created the
// session into the session id and sends it back on the session's later
// requests; with the same cookie secret, every gateway of the fleet routes
// the session to that instance.
func TestStickyUpstreamSessions(t *testing.T) {
	t.Parallel()
	op := fleetProvider(t)
	u1, u2 := newUpstream(t, "one"), newUpstream(t, "two")
	hostOf := func(u *upstream) string { return strings.TrimPrefix(u.srv.URL, "http://") }
	proxy := fmt.Sprintf(`reverse_proxy {
				to %s %s
				lb_policy cookie mcp_lb fleet-cookie-secret
			}`, hostOf(u1), hostOf(u2))
	portA := startFleetGateway(t, fleetKey, op.Issuer(), u1.URL, proxy)
	portB := startFleetGateway(t, fleetKey, op.Issuer(), u1.URL, proxy)
	ctx, cancel := testContext(t, 60)
	defer cancel()
	alice, err := op.AgentToken(ctx, "alice-agent", fleetHost+"/mcp", "mcp:read")
	if err != nil {
		t.Fatal(err)
	}

	const sessions = 12
	var outs []stickyOutcome
	ports := []int{portA, portB}
	for i := 0; i < sessions; i++ {
		first, other := ports[i%2], ports[(i+1)%2]
		r, err := mcpHTTP(ctx, nil, http.MethodPost, first, "/mcp", alice, "", "", initializeBody)
		if err != nil || r.Status != http.StatusOK || r.Session == "" {
			t.Fatalf("initialize %d: %v %v", i, r, err)
		}
		o := stickyOutcome{sealed: r.Session}
		for deadline := time.Now().Add(2 * time.Second); o.upID == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			for _, u := range []*upstream{u1, u2} {
				for _, q := range u.Requests() {
					if q.RPCMethod == "initialize" && q.RespSessionID != "" && !seen(outs, q.RespSessionID) {
						o.upID, o.createdOn = q.RespSessionID, u.Name
					}
				}
			}
		}
		if o.upID == "" {
			t.Fatalf("no upstream created session %d", i)
		}
		// notifications/initialized and calls, alternating gateways.
		steps := []struct {
			port int
			body string
		}{{other, initializedBody}, {first, whoamiCallBody}, {other, whoamiCallBody}, {first, toolsListBody}}
		for _, s := range steps {
			r, err := mcpHTTP(ctx, nil, http.MethodPost, s.port, "/mcp", alice, o.sealed, rev20251125, s.body)
			if err != nil {
				t.Fatal(err)
			}
			o.statuses = append(o.statuses, r.Status)
		}
		outs = append(outs, o)
	}

	// Where did each session's requests (those carrying its upstream id)
	// land?
	var broken []string
	for i, o := range outs {
		landed := map[string]int{}
		for _, u := range []*upstream{u1, u2} {
			landed[u.Name] += len(u.RequestsWith("Mcp-Session-Id", o.upID))
		}
		var on []string
		for name, n := range landed {
			if n > 0 {
				on = append(on, name)
			}
		}
		// The requests carrying the session id are hashed consistently,
		// whichever gateway instance forwards them.
		if len(on) != 1 {
			t.Errorf("session %d: its requests landed on %v; want one instance", i, landed)
			continue
		}
		if on[0] != o.createdOn {
			broken = append(broken, fmt.Sprintf("session %d created on %q, later requests hashed to %q (statuses %v)", i, o.createdOn, on[0], o.statuses))
		} else {
			for _, s := range o.statuses {
				if s/100 != 2 {
					t.Errorf("session %d: statuses %v", i, o.statuses)
					break
				}
			}
		}
	}
	if len(broken) > 0 {
		t.Errorf("lb_policy header Mcp-Session-Id does not keep a session on the upstream instance that created it:\n  %s\n"+
			"initialize carries no Mcp-Session-Id, so reverse_proxy picks its instance with the fallback policy (random); "+
			"only the later requests are hashed, on the id the upstream chose, which maps to an arbitrary instance",
			strings.Join(broken, "\n  "))
	}
}
