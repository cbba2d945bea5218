package caddymcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddymcp/gateway/tokens"
)

// listProxy answers every request with a fixed tools/list result, as JSON
// or as one SSE event, and counts what reached it.
type listProxy struct {
	sse    bool
	hits   int
	bodies []string
}

const toolsResult = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"read_invoice","inputSchema":{"type":"object"}},{"name":"delete_invoice","inputSchema":{"type":"object"}},{"name":"create_invoice","inputSchema":{"type":"object"}}],"nextCursor":"page-2"}}`

func (p *listProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	p.hits++
	var b bytes.Buffer
	_, _ = b.ReadFrom(r.Body)
	p.bodies = append(p.bodies, b.String())
	if p.sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("event: message\ndata: " + toolsResult + "\n\n"))
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "999")
	w.WriteHeader(200)
	_, _ = w.Write([]byte(toolsResult))
	return nil
}

func policyHandler(t *testing.T, pols []*PolicyConfig, sse bool) (*Handler, *listProxy, *observer.ObservedLogs, *testIssuer) {
	t.Helper()
	iss := newTestIssuer(t)
	app := &App{
		Policies: pols,
		Issuers:  []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks"}},
		Tenants:  []*TenantConfig{{Name: "acme"}},
	}
	h, _ := testHandler(t, app, &ServerConfig{Name: "acme-billing", Tenant: "acme", Path: "/mcp", Upstream: "http://127.0.0.1:1/",
		Require: []string{"mcp:read"},
		Tools: []ItemRule{
			{Match: "delete_*", Scopes: []string{"mcp:write:invoices", "mcp:admin"}},
			{Match: "create_invoice", Scopes: []string{"mcp:write:invoices"}},
			{Match: "*", Scopes: []string{"mcp:read"}},
		}})
	core, logs := observer.New(zapcore.InfoLevel)
	app.audit = zap.New(core).Named("mcp.audit")
	lp := &listProxy{sse: sse}
	h.router.lookup("gw.test", "/mcp").proxy = lp
	return h, lp, logs, iss
}

func post(h *Handler, token, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "http://gw.test/mcp", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return serve(h, r, "")
}

var billingPolicies = []*PolicyConfig{
	{Name: "internal", Effect: "allow", Agents: []string{"group:internal"}, Scopes: []string{"mcp:read", "mcp:write:*"}},
	{Name: "partners", Effect: "allow", Agents: []string{"group:partners"}, Scopes: []string{"mcp:read"}},
	{Name: "no-deletes", Effect: "deny", Mode: "report", Agents: []string{"*"}, Scopes: []string{"mcp:admin"}},
}

func TestToolCallDecisions(t *testing.T) {
	h, lp, logs, iss := policyHandler(t, billingPolicies, false)
	aud := "http://gw.test/mcp"
	partner := iss.token(t, aud, map[string]any{"scope": "mcp:read mcp:write:invoices", "groups": []string{"partners"}})
	internalRead := iss.token(t, aud, map[string]any{"scope": "mcp:read", "groups": []string{"internal"}})
	internalWrite := iss.token(t, aud, map[string]any{"scope": "mcp:read mcp:write:invoices", "groups": []string{"internal"}})

	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}

	// A partner may read...
	if w := post(h, partner, call("read_invoice"), nil); w.Code != 200 || lp.hits != 1 {
		t.Fatalf("partner read: %d hits=%d %s", w.Code, lp.hits, w.Body)
	}
	// ...but a write tool is an unknown tool to it, and never reaches the upstream.
	w := post(h, partner, call("create_invoice"), nil)
	var resp struct {
		ID    string `json:"id"`
		Error struct {
			Code    int
			Message string
			Data    struct {
				Reason     string
				DecisionID string `json:"decision_id"`
			}
		}
	}
	_ = json.Unmarshal(w.Body.Bytes(), &resp)
	if w.Code != 200 || resp.Error.Code != -32602 || resp.Error.Message != "Unknown tool: create_invoice" || resp.ID != "c1" || resp.Error.Data.DecisionID == "" {
		t.Fatalf("partner write: %d %s", w.Code, w.Body)
	}
	if lp.hits != 1 {
		t.Fatal("a denied call reached the upstream")
	}
	found := false
	for _, e := range logs.All() {
		if e.ContextMap()["decision_id"] == resp.Error.Data.DecisionID {
			found = e.ContextMap()["decision"] == "deny" && e.ContextMap()["tool"] == "create_invoice"
		}
	}
	if !found {
		t.Errorf("no audit entry for decision %s", resp.Error.Data.DecisionID)
	}

	// An internal agent whose token lacks mcp:write:invoices is asked to step up.
	w = post(h, internalRead, call("create_invoice"), nil)
	if w.Code != 403 || w.Header().Get("WWW-Authenticate") != `Bearer error="insufficient_scope", scope="mcp:read mcp:write:invoices", resource_metadata="http://gw.test/.well-known/oauth-protected-resource/mcp"` {
		t.Fatalf("step-up: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	// With it, the call goes through.
	if w := post(h, internalWrite, call("create_invoice"), nil); w.Code != 200 || lp.hits != 2 {
		t.Fatalf("internal write: %d %s", w.Code, w.Body)
	}

	// The smuggling body: two names, the gateway refuses rather than guess.
	before := lp.hits
	w = post(h, partner, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice","name":"delete_invoice"}}`, nil)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "-32600") && !strings.Contains(w.Body.String(), "-32700") || lp.hits != before {
		t.Fatalf("smuggling: %d %s", w.Code, w.Body)
	}
	// Not JSON at all: a JSON-RPC parse error.
	if w := post(h, partner, `{"jsonrpc":`, nil); w.Code != 400 || !strings.Contains(w.Body.String(), "-32700") {
		t.Fatalf("parse error: %d %s", w.Code, w.Body)
	}
}

func TestReportModeDoesNotEnforce(t *testing.T) {
	pols := []*PolicyConfig{
		{Name: "internal", Effect: "allow", Agents: []string{"group:internal"}},
		{Name: "dry-run", Effect: "deny", Mode: "report", Agents: []string{"group:internal"}, Scopes: []string{"mcp:admin"}},
	}
	h, lp, logs, iss := policyHandler(t, pols, false)
	tok := iss.token(t, "http://gw.test/mcp", map[string]any{"scope": "mcp:read mcp:write:invoices mcp:admin", "groups": []string{"internal"}})
	w := post(h, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_invoice"}}`, nil)
	if w.Code != 200 || lp.hits != 1 {
		t.Fatalf("report-mode deny enforced: %d %s", w.Code, w.Body)
	}
	entries := logs.FilterField(zap.String("decision", "would_deny")).All()
	if len(entries) != 1 || entries[0].ContextMap()["would_deny_policy"] != "dry-run" {
		t.Fatalf("audit: %+v", logs.All())
	}
}

func TestToolsListFiltered(t *testing.T) {
	for _, sse := range []bool{false, true} {
		h, _, _, iss := policyHandler(t, billingPolicies, sse)
		partner := iss.token(t, "http://gw.test/mcp", map[string]any{"scope": "mcp:read", "groups": []string{"partners"}})
		list := `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`
		w := post(h, partner, list, nil)
		body := w.Body.String()
		if w.Code != 200 || !strings.Contains(body, "read_invoice") || strings.Contains(body, "delete_invoice") || strings.Contains(body, "create_invoice") || !strings.Contains(body, `"nextCursor":"page-2"`) {
			t.Fatalf("sse=%v: %d %s", sse, w.Code, body)
		}
		if strings.Contains(body, "cacheScope") {
			t.Errorf("sse=%v: cacheScope on a 2025-11-25 result", sse)
		}
		// 2026-07-28: the filtered list is marked private.
		w = post(h, partner, `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
		if !strings.Contains(w.Body.String(), `"cacheScope":"private"`) {
			t.Errorf("sse=%v: 2026-07-28 list not private: %s", sse, w.Body)
		}
		if !sse && w.Header().Get("Content-Length") == "999" {
			t.Error("stale Content-Length kept after filtering")
		}
	}
}

func TestHeaderMismatchRefused(t *testing.T) {
	h, lp, _, iss := policyHandler(t, billingPolicies, false)
	partner := iss.token(t, "http://gw.test/mcp", map[string]any{"scope": "mcp:read", "groups": []string{"partners"}})
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_invoice","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	w := post(h, partner, body, map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "delete_invoice"})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "-32020") || lp.hits != 0 {
		t.Fatalf("mismatch: %d %s", w.Code, w.Body)
	}
	w = post(h, partner, body, map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "read_invoice"})
	if w.Code != 200 || lp.hits != 1 {
		t.Fatalf("matching headers: %d %s", w.Code, w.Body)
	}
}

func TestBatches(t *testing.T) {
	h, lp, _, iss := policyHandler(t, billingPolicies, false)
	partner := iss.token(t, "http://gw.test/mcp", map[string]any{"scope": "mcp:read", "groups": []string{"partners"}})
	ok := `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_invoice"}}]`
	bad := `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_invoice"}}]`
	if w := post(h, partner, ok, map[string]string{"Mcp-Protocol-Version": "2025-11-25"}); w.Code != 400 || lp.hits != 0 {
		t.Fatalf("batch under 2025-11-25: %d %s", w.Code, w.Body)
	}
	if w := post(h, partner, ok, map[string]string{"Mcp-Protocol-Version": "2025-03-26"}); w.Code != 200 || lp.hits != 1 {
		t.Fatalf("allowed batch under 2025-03-26: %d %s", w.Code, w.Body)
	}
	w := post(h, partner, bad, map[string]string{"Mcp-Protocol-Version": "2025-03-26"})
	if w.Code != 200 || lp.hits != 1 || strings.Count(w.Body.String(), "-32010") != 2 {
		t.Fatalf("batch with one denial: %d %s", w.Code, w.Body)
	}
}

// TestPlaceholdersKnownFromTheirStep: each {mcp.*} placeholder is unknown
// (left as is by ReplaceKnown) until the pipeline step that determines it,
// and keeps the value it had then.
func TestPlaceholdersKnownFromTheirStep(t *testing.T) {
	x := &exchange{srv: &server{cfg: &ServerConfig{Name: "acme-billing", Tenant: "acme"}}, method: "POST"}
	repl := caddy.NewReplacer()
	repl.Map(x.placeholder)
	const tmpl = "{mcp.server}|{mcp.tenant}|{mcp.agent}|{mcp.subject}|{mcp.method}|{mcp.tool}|{mcp.decision}"
	if got, want := repl.ReplaceKnown(tmpl, ""), "acme-billing|acme|{mcp.agent}|{mcp.subject}|{mcp.method}|{mcp.tool}|{mcp.decision}"; got != want {
		t.Errorf("at routing: %s, want %s", got, want)
	}
	x.id = &tokens.Identity{Agent: "cursor", Subject: "alice"}
	x.method, x.tool = "tools/call", "read_invoice"
	x.phMethod, x.phTool, x.phSet = x.method, x.tool, true
	x.method = "batch" // what authorize may do later does not show
	if got, want := repl.ReplaceKnown(tmpl, ""), "acme-billing|acme|cursor|alice|tools/call|read_invoice|{mcp.decision}"; got != want {
		t.Errorf("after reading: %s, want %s", got, want)
	}
	x.auditDecision = "allow"
	if got, want := repl.ReplaceKnown("{mcp.decision} {mcp.other} {http.request.method}", ""), "allow {mcp.other} {http.request.method}"; got != want {
		t.Errorf("after authorizing: %s, want %s", got, want)
	}
}
