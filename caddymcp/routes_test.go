package caddymcp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/sessions"
)

const pingBody = `{"jsonrpc":"2.0","id":1,"method":"ping"}`

// allowAll is the policy the routing tests run under (deny is the default).
var allowAll = []*PolicyConfig{{Name: "all", Effect: "allow", Agents: []string{"*"}}}

// recordProxy stands in for a server's reverse_proxy in unit tests: it
// records that it was reached and what it saw.
type recordProxy struct {
	name string
	hits int
	last *http.Request
}

func (p *recordProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	p.hits++
	p.last = r
	w.Header().Set("X-Upstream", p.name)
	w.WriteHeader(http.StatusOK)
	return nil
}

// testHandler builds a Handler without Caddy provisioning, each server's
// proxy replaced by a recordProxy.
func testHandler(t testing.TB, app *App, cfgs ...*ServerConfig) (*Handler, map[string]*recordProxy) {
	t.Helper()
	if app == nil {
		app = &App{}
	}
	if app.tenants == nil {
		app.tenants = map[string]*TenantConfig{}
		for _, tn := range app.Tenants {
			app.tenants[tn.Name] = tn
		}
		app.logger = caddy.Log()
		app.audit = app.logger.Named("audit")
		pols := make([]policy.Policy, len(app.Policies))
		for i, p := range app.Policies {
			pols[i] = *p
		}
		engine, err := policy.Compile(pols, app.Environment, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		app.policies = engine
		key, _ := sessions.NewKey()
		app.sealer, _ = sessions.NewSealer(key)
		app.idle = newIdleTracker()
		if err := app.provisionAuth(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(app.cleanupAuth)
	}
	h := &Handler{Servers: cfgs, app: app, router: newRouter(len(cfgs)), logger: caddy.Log()}
	proxies := map[string]*recordProxy{}
	for _, c := range cfgs {
		if c.Path == "" {
			c.Path = "/mcp"
		}
		s, err := newServer(c, app)
		if err != nil {
			t.Fatal(err)
		}
		p := &recordProxy{name: c.Name}
		s.proxy = p
		proxies[c.Name] = p
		if err := h.router.add(s); err != nil {
			t.Fatal(err)
		}
	}
	return h, proxies
}

// serve runs r through h the way Caddy's server would (replacer in the
// context, local address set).
func serve(h *Handler, r *http.Request, local string) *httptest.ResponseRecorder {
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	if local != "" {
		addr, _ := net.ResolveTCPAddr("tcp", local)
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, addr)
	}
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("X-Next", "yes")
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		w.Code = 599
	}
	return w
}

func TestRoutingByHostAndPath(t *testing.T) {
	app := &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}, {Name: "globex"}}}
	h, proxies := testHandler(t, app,
		&ServerConfig{Name: "acme-path", Tenant: "acme", Path: "/acme/mcp", Upstream: "http://127.0.0.1:1/", Anonymous: true},
		&ServerConfig{Name: "globex-path", Tenant: "globex", Path: "/globex/mcp", Upstream: "http://127.0.0.1:1/", Anonymous: true},
		&ServerConfig{Name: "acme-host", Tenant: "acme", Host: "Acme.Test", Upstream: "http://127.0.0.1:1/", Anonymous: true},
		&ServerConfig{Name: "globex-host", Tenant: "globex", Host: "globex.test", Upstream: "http://127.0.0.1:1/", Anonymous: true},
		&ServerConfig{Name: "any-host", Tenant: "globex", Upstream: "http://127.0.0.1:1/", Anonymous: true},
	)
	cases := []struct {
		host, path, want string
	}{
		{"127.0.0.1:8080", "/acme/mcp", "acme-path"},
		{"127.0.0.1:8080", "/globex/mcp", "globex-path"},
		{"acme.test:8080", "/mcp", "acme-host"},
		{"ACME.TEST", "/mcp", "acme-host"},
		{"acme.test.", "/mcp", "acme-host"},
		{"globex.test", "/mcp", "globex-host"},
		{"other.test", "/mcp", "any-host"},
		{"acme.test", "/acme/mcp", "acme-path"},
		{"acme.test", "/mcp/", ""},
		{"acme.test", "/acme/mcp/x", ""},
		{"acme.test", "/ACME/mcp", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "http://"+c.host+c.path, strings.NewReader(pingBody))
		r.Host = c.host
		w := serve(h, r, "")
		got := w.Header().Get("X-Upstream")
		if c.want == "" {
			if w.Header().Get("X-Next") != "yes" || got != "" {
				t.Errorf("%s%s: want fall-through to next handler, got upstream %q status %d", c.host, c.path, got, w.Code)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s%s: routed to %q, want %q", c.host, c.path, got, c.want)
		}
	}
	if n := proxies["acme-host"].hits; n != 3 {
		t.Errorf("acme-host reached %d times, want 3", n)
	}
}

func TestClientCredentialsNeverForwarded(t *testing.T) {
	h, proxies := testHandler(t, &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}}},
		&ServerConfig{Name: "pub", Tenant: "acme", Upstream: "http://127.0.0.1:1/", Anonymous: true})
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(pingBody))
	r.Header.Set("Authorization", "Bearer agent-secret")
	r.Header.Set("Cookie", "session=agent-cookie")
	serve(h, r, "")
	got := proxies["pub"].last
	if got == nil {
		t.Fatal("upstream not reached")
	}
	if v := got.Header.Get("Authorization") + got.Header.Get("Cookie"); v != "" {
		t.Errorf("client credentials reached the upstream: %q", v)
	}
}

func TestProtectedServerRefusesWithoutToken(t *testing.T) {
	h, proxies := testHandler(t, &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}}, Issuers: []*IssuerConfig{{Issuer: "http://127.0.0.1:1", JWKSURI: "http://127.0.0.1:1/jwks"}}},
		&ServerConfig{Name: "billing", Tenant: "acme", Path: "/acme/billing/mcp", Upstream: "http://127.0.0.1:1/", Require: []string{"mcp:read", "mcp:billing"}})
	r := httptest.NewRequest(http.MethodPost, "http://gw.test/acme/billing/mcp", nil)
	w := serve(h, r, "")
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", w.Code)
	}
	want := `Bearer resource_metadata="http://gw.test/.well-known/oauth-protected-resource/acme/billing/mcp", scope="mcp:read mcp:billing"`
	if got := w.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate = %s\nwant %s", got, want)
	}
	if proxies["billing"].hits != 0 {
		t.Error("unauthenticated request reached the upstream")
	}
}

func TestOriginCheck(t *testing.T) {
	h, proxies := testHandler(t, &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}}},
		&ServerConfig{Name: "loop", Tenant: "acme", Path: "/mcp", Upstream: "http://127.0.0.1:1/", Anonymous: true,
			AllowedOrigins: []string{"https://app.acme.example"}},
		&ServerConfig{Name: "res", Tenant: "acme", Path: "/res/mcp", Upstream: "http://127.0.0.1:1/", Anonymous: true,
			Resource: "https://mcp.example.com/res/mcp"},
	)
	cases := []struct {
		name, host, path, origin, local string
		want                            int
	}{
		{"no origin", "127.0.0.1:9", "/mcp", "", "127.0.0.1:9", 200},
		{"same origin loopback", "127.0.0.1:9", "/mcp", "http://127.0.0.1:9", "127.0.0.1:9", 200},
		{"localhost", "localhost:9", "/mcp", "http://localhost:9", "127.0.0.1:9", 200},
		{"allowed origin", "127.0.0.1:9", "/mcp", "https://app.acme.example", "127.0.0.1:9", 200},
		{"foreign origin", "127.0.0.1:9", "/mcp", "http://evil.example.com", "127.0.0.1:9", 403},
		{"dns rebinding", "evil.example.com", "/mcp", "http://evil.example.com", "127.0.0.1:9", 403},
		{"same origin public listener", "mcp.example.com", "/mcp", "http://mcp.example.com", "10.0.0.1:443", 200},
		{"null origin", "127.0.0.1:9", "/mcp", "null", "127.0.0.1:9", 403},
		{"resource origin", "whatever", "/res/mcp", "https://mcp.example.com", "10.0.0.1:443", 200},
		{"not resource origin", "evil.example.com", "/res/mcp", "http://evil.example.com", "10.0.0.1:443", 403},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "http://"+c.host+c.path, strings.NewReader(pingBody))
		r.Host = c.host
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		before := proxies["loop"].hits + proxies["res"].hits
		w := serve(h, r, c.local)
		if w.Code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, w.Code, c.want)
		}
		reached := proxies["loop"].hits+proxies["res"].hits > before
		if reached != (c.want == 200) {
			t.Errorf("%s: upstream reached = %v", c.name, reached)
		}
	}
}

func TestMetadataDocument(t *testing.T) {
	app := &App{
		Policies: allowAll,
		Issuers:  []*IssuerConfig{{Issuer: "https://auth.example.com"}},
		Tenants:  []*TenantConfig{{Name: "acme", Issuers: []*IssuerConfig{{Issuer: "https://login.acme.example"}}}, {Name: "globex"}},
	}
	h, _ := testHandler(t, app,
		&ServerConfig{Name: "acme-billing", Tenant: "acme", Path: "/acme/billing/mcp", Upstream: "http://127.0.0.1:1/",
			Scopes: []string{"mcp:read", "mcp:write:invoices"},
			Branding: &Branding{Name: "Acme Billing", LogoURI: "https://acme.example/logo.png", Documentation: "https://docs.acme.example/mcp",
				PolicyURI: "https://acme.example/privacy", TOSURI: "https://acme.example/terms"}},
		&ServerConfig{Name: "globex", Tenant: "globex", Host: "globex.test", Upstream: "http://127.0.0.1:1/",
			Resource: "https://globex.mcp.example.com/mcp"},
	)
	cases := []struct{ host, path, want string }{
		{"gw.test", "/.well-known/oauth-protected-resource/acme/billing/mcp",
			`{"resource":"http://gw.test/acme/billing/mcp","authorization_servers":["https://login.acme.example"],"scopes_supported":["mcp:read","mcp:write:invoices"],"bearer_methods_supported":["header"],"resource_name":"Acme Billing","resource_documentation":"https://docs.acme.example/mcp","resource_policy_uri":"https://acme.example/privacy","resource_tos_uri":"https://acme.example/terms","resource_logo_uri":"https://acme.example/logo.png"}`},
		{"globex.test", "/.well-known/oauth-protected-resource/mcp",
			`{"resource":"https://globex.mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"bearer_methods_supported":["header"]}`},
		{"other.test", "/.well-known/oauth-protected-resource/mcp", ""},
		{"gw.test", "/.well-known/oauth-protected-resource", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "http://"+c.host+c.path, nil)
		w := serve(h, r, "")
		if c.want == "" {
			if w.Header().Get("X-Next") != "yes" {
				t.Errorf("%s%s: want fall-through, got %d %s", c.host, c.path, w.Code, w.Body)
			}
			continue
		}
		if w.Code != 200 || w.Body.String() != c.want {
			t.Errorf("%s%s: %d %s\nwant %s", c.host, c.path, w.Code, w.Body, c.want)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	// An https request derives an https resource.
	r := httptest.NewRequest(http.MethodGet, "https://gw.test/.well-known/oauth-protected-resource/acme/billing/mcp", nil)
	r.TLS = &tls.ConnectionState{}
	if w := serve(h, r, ""); !strings.Contains(w.Body.String(), `"resource":"https://gw.test/acme/billing/mcp"`) {
		t.Errorf("https resource: %s", w.Body)
	}
}

func TestDuplicateRouteRefused(t *testing.T) {
	app := &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}}}
	app.tenants = map[string]*TenantConfig{"acme": app.Tenants[0]}
	rt := newRouter(2)
	for i, name := range []string{"a", "b"} {
		s, err := newServer(&ServerConfig{Name: name, Tenant: "acme", Host: "x.test", Path: "/mcp", Anonymous: true}, app)
		if err != nil {
			t.Fatal(err)
		}
		err = rt.add(s)
		if i == 1 && (err == nil || err.Error() != `servers a and b are both on host "x.test" path /mcp`) {
			t.Errorf("duplicate route: %v", err)
		}
	}
}

// BenchmarkDispatch measures the gateway's own cost of routing a request
// (lookup, Origin check, header hygiene) with 10, 1 000 and 10 000 servers:
// it must stay flat.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			app := &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "t"}}}
			cfgs := make([]*ServerConfig, n)
			for i := range cfgs {
				cfgs[i] = &ServerConfig{Name: fmt.Sprintf("s%d", i), Tenant: "t", Path: fmt.Sprintf("/t%d/mcp", i),
					Upstream: "http://127.0.0.1:1/", Anonymous: true}
				if i%2 == 1 {
					cfgs[i].Host = fmt.Sprintf("h%d.test", i)
				}
			}
			h, _ := testHandler(b, app, cfgs...)
			// The audit entry is one write to the log's sink per request;
			// measured separately (BenchmarkPipeline/audit), not here.
			app.audit = zap.NewNop()
			target := cfgs[(n/2)&^1] // a host-less one
			r := httptest.NewRequest(http.MethodGet, "http://gw.test"+target.Path, nil)
			repl := caddy.NewReplacer()
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			w := httptest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := h.ServeHTTP(w, r, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type failingProxy struct{}

func (failingProxy) ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error {
	return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("dial tcp 127.0.0.1:1: connection refused"))
}

func TestUpstreamDownIsJSONRPC502(t *testing.T) {
	h, _ := testHandler(t, &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}}},
		&ServerConfig{Name: "pub", Tenant: "acme", Upstream: "http://127.0.0.1:1/", Anonymous: true})
	h.router.lookup("x", "/mcp").proxy = failingProxy{}
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":"q","method":"ping"}`))
	w := serve(h, r, "")
	want := `{"jsonrpc":"2.0","id":"q","error":{"code":-32000,"message":"Upstream of server pub is unavailable"}}`
	if w.Code != 502 || strings.TrimSpace(w.Body.String()) != want {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
