package caddymcp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// sessionProxy hands out upstream session "UP-1" on initialize, echoes it
// on every later response, and records the session ids it receives.
type sessionProxy struct{ got []string }

func (p *sessionProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	p.got = append(p.got, r.Header.Get("Mcp-Session-Id"))
	w.Header().Set("Mcp-Session-Id", "UP-1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	return nil
}

func TestSessionsBoundToAgent(t *testing.T) {
	iss := newTestIssuer(t)
	app := &App{Policies: allowAll, Issuers: []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks"}}, Tenants: []*TenantConfig{{Name: "acme"}}}
	h, _ := testHandler(t, app, &ServerConfig{Name: "s", Tenant: "acme", Upstream: "http://127.0.0.1:1/",
		Session: &SessionConfig{TTL: caddy.Duration(time.Hour), Idle: caddy.Duration(2 * time.Second)}})
	sp := &sessionProxy{}
	h.router.lookup("gw.test", "/mcp").proxy = sp
	alice := iss.token(t, "http://gw.test/mcp", map[string]any{"sub": "alice"})
	bob := iss.token(t, "http://gw.test/mcp", map[string]any{"sub": "bob"})

	do := func(method, tok, sid string) *httptest.ResponseRecorder {
		var body *strings.Reader
		if method == http.MethodPost {
			body = strings.NewReader(pingBody)
		} else {
			body = strings.NewReader("")
		}
		r := httptest.NewRequest(method, "http://gw.test/mcp", body)
		r.Header.Set("Authorization", "Bearer "+tok)
		if sid != "" {
			r.Header.Set("Mcp-Session-Id", sid)
		}
		return serve(h, r, "")
	}

	w := do(http.MethodPost, alice, "")
	sealed := w.Header().Get("Mcp-Session-Id")
	if w.Code != 200 || sealed == "" || sealed == "UP-1" || strings.Contains(sealed, "UP-1") {
		t.Fatalf("initialize: %d session %q", w.Code, sealed)
	}
	if w := do(http.MethodPost, alice, sealed); w.Code != 200 || sp.got[len(sp.got)-1] != "UP-1" || w.Header().Get("Mcp-Session-Id") != sealed {
		t.Fatalf("alice continues: %d upstream saw %q, client got %q", w.Code, sp.got[len(sp.got)-1], w.Header().Get("Mcp-Session-Id"))
	}
	n := len(sp.got)
	for name, c := range map[string]struct{ tok, sid string }{
		"bob with alice's session": {bob, sealed},
		"tampered":                 {alice, sealed[:len(sealed)-2] + "AA"},
		"upstream's raw id":        {alice, "UP-1"},
	} {
		if w := do(http.MethodPost, c.tok, c.sid); w.Code != 404 || !strings.Contains(w.Body.String(), "Session not found") {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	if len(sp.got) != n {
		t.Fatal("a refused session reached the upstream")
	}
	// Idle: 2s without use ends the session.
	time.Sleep(3100 * time.Millisecond)
	if w := do(http.MethodGet, alice, sealed); w.Code != 404 {
		t.Errorf("idle session: %d", w.Code)
	}
}
