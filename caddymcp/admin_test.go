package caddymcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// adminRequest runs one request through the admin module's routes the way
// Caddy's admin server does, and returns the status and body.
func adminRequest(t *testing.T, a adminMCP, method, path, body string) (int, string) {
	t.Helper()
	for _, route := range a.Routes() {
		if route.Pattern != path {
			continue
		}
		r := httptest.NewRequest(method, "http://localhost:2019"+path, strings.NewReader(body))
		w := httptest.NewRecorder()
		if err := route.Handler.ServeHTTP(w, r); err != nil {
			var ae caddy.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("%s %s: error %v is not a caddy.APIError", method, path, err)
			}
			return ae.HTTPStatus, ae.Err.Error()
		}
		return w.Code, w.Body.String()
	}
	t.Fatalf("no admin route %s", path)
	return 0, ""
}

func adminFixture(t *testing.T) adminMCP {
	t.Helper()
	iss := newTestIssuer(t)
	app := &App{
		Issuers: []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks"}},
		Policies: []*PolicyConfig{
			{Name: "public", Effect: "allow", Agents: []string{"*"}, Servers: []string{"demo"}},
			{Name: "staff", Effect: "allow", Agents: []string{"group:staff"}},
		},
		Tenants: []*TenantConfig{{Name: "acme", Connections: []*ConnectionConfig{
			{Name: "billing", APIKey: &APIKeyConfig{Header: "X-Api-Key", Value: "SECRET-UNIT-APIKEY"}},
		}}, {Name: "public"}},
	}
	h, _ := testHandler(t, app,
		&ServerConfig{Name: "demo", Tenant: "public", Path: "/demo", Upstream: "http://127.0.0.1:1/mcp", Anonymous: true},
		&ServerConfig{Name: "billing", Tenant: "acme", Path: "/billing", Upstream: "http://127.0.0.1:1/mcp",
			Connection: "billing", Require: []string{"billing:read"}, Tools: []ItemRule{{Match: "pay", Scopes: []string{"billing:pay"}}}},
	)
	return adminMCP{gateway: func() (*gatewayView, error) { return &gatewayView{app: app, handlers: []*Handler{h}}, nil }}
}

func TestAdminServers(t *testing.T) {
	a := adminFixture(t)
	status, body := adminRequest(t, a, http.MethodGet, "/mcp/servers", "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var servers []serverInfo
	if err := json.Unmarshal([]byte(body), &servers); err != nil {
		t.Fatal(err)
	}
	if len(servers) != 2 || servers[0].Name != "demo" || servers[1].Name != "billing" {
		t.Fatalf("servers %+v", servers)
	}
	b := servers[1]
	if b.Tenant != "acme" || b.Path != "/billing" || b.Upstream != "http://127.0.0.1:1/mcp" || b.Connection != "billing" ||
		b.ConnectionKind != "api_key" || b.Anonymous || len(b.Require) != 1 || len(b.Tools) != 1 {
		t.Errorf("billing %+v", b)
	}
	if status, _ := adminRequest(t, a, http.MethodPost, "/mcp/servers", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /mcp/servers: %d", status)
	}
}

func TestAdminCache(t *testing.T) {
	a := adminFixture(t)
	status, body := adminRequest(t, a, http.MethodGet, "/mcp/cache", "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var c cacheInfo
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	if c.TokenCache == nil || c.Validator == nil || c.Issuers == nil || c.Connections == nil {
		t.Errorf("cache %s", body)
	}
	if status, _ := adminRequest(t, a, http.MethodDelete, "/mcp/cache", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /mcp/cache: %d", status)
	}
}

func TestAdminExplain(t *testing.T) {
	a := adminFixture(t)
	status, body := adminRequest(t, a, http.MethodPost, "/mcp/explain",
		`{"server":"billing","tool":"pay","groups":["staff"],"scopes":["billing:read"],"ip":"127.0.0.1"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var res ExplainResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	if res.Result != "step_up" || strings.Join(res.Need, " ") != "billing:read billing:pay" || len(res.Policies) != 2 {
		t.Errorf("explain %s", body)
	}
	for _, c := range []struct {
		method, body string
		status       int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, `{"server":`, http.StatusBadRequest},
		{http.MethodPost, `{"server":"billing","colour":"red"}`, http.StatusBadRequest},
		{http.MethodPost, `{"server":"nope"}`, http.StatusNotFound},
		{http.MethodPost, `{"server":"billing","tenant":"public"}`, http.StatusBadRequest},
		{http.MethodPost, `{"tool":"pay"}`, http.StatusBadRequest},
	} {
		if status, msg := adminRequest(t, a, c.method, "/mcp/explain", c.body); status != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.body, status, msg, c.status)
		}
	}
}

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9000/mcp":                    "http://127.0.0.1:9000/mcp",
		"https://user:pw@mcp.example.com/x?key=abc&b=": "https://REDACTED@mcp.example.com/x?key=REDACTED&b=REDACTED",
		"https://tok@mcp.example.com":                  "https://REDACTED@mcp.example.com",
		"https://mcp.example.com/a@b":                  "https://mcp.example.com/a@b",
		"https://{env.HOST}/mcp?k={env.KEY}":           "https://{env.HOST}/mcp?k=REDACTED",
		"https://mcp.example.com/x#frag":               "https://mcp.example.com/x",
		"{env.UPSTREAM}":                               "{env.UPSTREAM}",
	} {
		if got := maskURL(in); got != want {
			t.Errorf("maskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// freePort returns a loopback address nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestAdminAPINeverShowsSecrets runs a real config in-process and checks
// that no configured secret (literal or from {env.*}) appears in any
// admin response of the mcp module, and that the module finds the running
// app and handlers (nested in a subroute) by itself.
func TestAdminAPINeverShowsSecrets(t *testing.T) {
	secrets := []string{"SECRET-APIKEY-1", "SECRET-CLIENT-2", "SECRET-BEARER-3", "SECRET-HEADER-4",
		"SECRET-RP-7", "SECRET-ENV-8", "SECRET-REFRESH-9", "SECRET-XCHG-10"}
	t.Setenv("MCP_ADMIN_TEST_SECRET", "SECRET-ENV-8")
	adminAddr, httpAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{
	  "admin": {"listen": %q, "config": {"persist": false}},
	  "storage": {"module": "file_system", "root": %q},
	  "logging": {"logs": {"default": {"level": "ERROR"}}},
	  "apps": {
	    "mcp": {
	      "issuers": [{"issuer": "http://127.0.0.1:1", "jwks_uri": "http://127.0.0.1:1/jwks"}],
	      "tenants": [{"name": "acme", "connections": [
	        {"name": "billing", "api_key": {"header": "X-Api-Key", "value": "SECRET-APIKEY-1"}},
	        {"name": "notion", "oauth2": {"token_url": "http://127.0.0.1:1/token", "client_id": "cid", "client_secret": "SECRET-CLIENT-2"}},
	        {"name": "refresh", "oauth2": {"token_url": "http://127.0.0.1:1/token", "client_id": "cid", "client_secret": "SECRET-CLIENT-2", "refresh_token": "SECRET-REFRESH-9"}},
	        {"name": "xchg", "token_exchange": {"token_url": "http://127.0.0.1:1/token", "client_id": "cid", "client_secret": "SECRET-XCHG-10"}},
	        {"name": "static", "bearer": "SECRET-BEARER-3", "headers": [{"name": "X-Extra", "value": "SECRET-HEADER-4"}]},
	        {"name": "fromenv", "api_key": {"header": "X-Api-Key", "value": "{env.MCP_ADMIN_TEST_SECRET}"}}
	      ]}],
	      "policies": [{"name": "all", "effect": "allow", "agents": ["*"]}]
	    },
	    "http": {"servers": {"srv0": {
	      "listen": [%q],
	      "automatic_https": {"disable": true},
	      "routes": [{"handle": [{"handler": "subroute", "routes": [{"handle": [{"handler": "mcp_gateway", "servers": [
	        {"name": "billing", "tenant": "acme", "path": "/billing/mcp", "upstream": "http://127.0.0.1:1/mcp",
	         "connection": "billing", "anonymous": true,
	         "reverse_proxy": {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:1"}],
	           "headers": {"request": {"set": {"X-Secret": ["SECRET-RP-7"]}}}}},
	        {"name": "notion", "tenant": "acme", "path": "/notion/mcp", "upstream": "http://127.0.0.1:1/mcp", "connection": "notion", "anonymous": true},
	        {"name": "refresh", "tenant": "acme", "path": "/refresh/mcp", "upstream": "http://127.0.0.1:1/mcp", "connection": "refresh", "anonymous": true},
	        {"name": "xchg", "tenant": "acme", "path": "/xchg/mcp", "upstream": "http://127.0.0.1:1/mcp", "connection": "xchg"},
	        {"name": "static", "tenant": "acme", "path": "/static/mcp", "upstream": "http://127.0.0.1:1/mcp", "connection": "static", "anonymous": true},
	        {"name": "fromenv", "tenant": "acme", "path": "/env/mcp", "upstream": "http://127.0.0.1:1/mcp", "connection": "fromenv", "anonymous": true}
	      ]}]}]}]}]
	    }}}
	  }
	}`, adminAddr, t.TempDir(), httpAddr)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatalf("loading the config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	get := func(method, path, body string) string {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	servers := get(http.MethodGet, "/mcp/servers", "")
	cache := get(http.MethodGet, "/mcp/cache", "")
	explained := get(http.MethodPost, "/mcp/explain", `{"server":"billing","tool":"x"}`)
	for _, name := range []string{"billing", "notion", "refresh", "xchg", "static", "fromenv"} {
		if !strings.Contains(servers, `"name": "`+name+`"`) {
			t.Errorf("/mcp/servers lacks server %s:\n%s", name, servers)
		}
	}
	for _, kind := range []string{"api_key", "oauth2", "oauth2_refresh", "token_exchange", "bearer"} {
		if !strings.Contains(servers, `"connection_kind": "`+kind+`"`) {
			t.Errorf("/mcp/servers lacks connection kind %s", kind)
		}
	}
	if !strings.Contains(cache, `"connection": "notion"`) {
		t.Errorf("/mcp/cache lacks the notion connection:\n%s", cache)
	}
	if !strings.Contains(explained, `"result": "allow"`) {
		t.Errorf("/mcp/explain:\n%s", explained)
	}
	for path, body := range map[string]string{"/mcp/servers": servers, "/mcp/cache": cache, "/mcp/explain": explained} {
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows the secret %s:\n%s", path, s, body)
			}
		}
	}
}
