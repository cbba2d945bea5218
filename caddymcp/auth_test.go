package caddymcp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// testIssuer serves a JWKS on loopback and signs tokens with its key.
type testIssuer struct {
	url string
	key jwk.Key
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := jwk.FromRaw(priv)
	_ = key.Set(jwk.KeyIDKey, "k1")
	_ = key.Set(jwk.AlgorithmKey, jwa.ES256)
	pub, _ := key.PublicKey()
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	body, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return &testIssuer{url: srv.URL, key: key}
}

func (ti *testIssuer) token(t *testing.T, aud string, claims map[string]any) string {
	t.Helper()
	b := jwt.NewBuilder().Issuer(ti.url).Subject("user-1").Audience([]string{aud}).
		IssuedAt(time.Now()).Expiration(time.Now().Add(time.Hour)).Claim("client_id", "cursor-acme")
	for k, v := range claims {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, ti.key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func TestAuthenticatedRequests(t *testing.T) {
	iss := newTestIssuer(t)
	other := newTestIssuer(t)
	app := &App{
		Policies: allowAll,
		Issuers:  []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks", TenantClaim: "tenant"}},
		Tenants:  []*TenantConfig{{Name: "acme"}, {Name: "globex"}},
	}
	h, proxies := testHandler(t, app,
		&ServerConfig{Name: "acme", Tenant: "acme", Path: "/acme/mcp", Upstream: "http://127.0.0.1:1/", Require: []string{"mcp:read"}},
		&ServerConfig{Name: "globex", Tenant: "globex", Path: "/globex/mcp", Upstream: "http://127.0.0.1:1/",
			Resource: "https://globex.example.com/mcp"},
	)
	acmeAud := "http://gw.test/acme/mcp"
	cases := []struct {
		name, path, auth, query string
		wantStatus              int
		wantChallenge           string // substring of WWW-Authenticate
		reaches                 string
	}{
		{name: "valid", path: "/acme/mcp", auth: "Bearer " + iss.token(t, acmeAud, map[string]any{"scope": "mcp:read"}), wantStatus: 200, reaches: "acme"},
		{name: "valid but lacks a required scope", path: "/acme/mcp", auth: "Bearer " + iss.token(t, acmeAud, nil), wantStatus: 403,
			wantChallenge: `Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="http://gw.test/.well-known/oauth-protected-resource/acme/mcp"`},
		{name: "valid, resource configured", path: "/globex/mcp", auth: "Bearer " + iss.token(t, "https://globex.example.com/mcp", nil), wantStatus: 200, reaches: "globex"},
		{name: "no token", path: "/acme/mcp", wantStatus: 401,
			wantChallenge: `Bearer resource_metadata="http://gw.test/.well-known/oauth-protected-resource/acme/mcp", scope="mcp:read"`},
		{name: "other server's audience", path: "/acme/mcp", auth: "Bearer " + iss.token(t, "https://globex.example.com/mcp", nil),
			wantStatus: 401, wantChallenge: `error="invalid_token"`},
		{name: "untrusted issuer", path: "/acme/mcp", auth: "Bearer " + other.token(t, acmeAud, nil),
			wantStatus: 401, wantChallenge: `error="invalid_token"`},
		{name: "other tenant's claim", path: "/acme/mcp", auth: "Bearer " + iss.token(t, acmeAud, map[string]any{"tenant": "globex"}),
			wantStatus: 401, wantChallenge: `error="invalid_token"`},
		{name: "garbage", path: "/acme/mcp", auth: "Bearer abc.def.ghi", wantStatus: 401, wantChallenge: `error="invalid_token"`},
		{name: "token in query", path: "/acme/mcp", query: "?access_token=" + iss.token(t, acmeAud, nil),
			wantStatus: 400, wantChallenge: `error="invalid_request"`},
		{name: "basic auth", path: "/acme/mcp", auth: "Basic dXNlcjpwYXNz", wantStatus: 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := proxies["acme"].hits + proxies["globex"].hits
			r := httptest.NewRequest(http.MethodPost, "http://gw.test"+c.path+c.query, strings.NewReader(pingBody))
			if c.auth != "" {
				r.Header.Set("Authorization", c.auth)
			}
			w := serve(h, r, "")
			if w.Code != c.wantStatus {
				t.Fatalf("status %d, want %d (%s)", w.Code, c.wantStatus, w.Header().Get("WWW-Authenticate"))
			}
			if ch := w.Header().Get("WWW-Authenticate"); c.wantChallenge != "" && !strings.Contains(ch, c.wantChallenge) {
				t.Errorf("WWW-Authenticate %q lacks %q", ch, c.wantChallenge)
			}
			after := proxies["acme"].hits + proxies["globex"].hits
			if c.reaches == "" {
				if after != before {
					t.Error("a refused request reached an upstream")
				}
				return
			}
			p := proxies[c.reaches]
			if after != before+1 || p.last == nil {
				t.Fatal("upstream not reached")
			}
			if p.last.Header.Get("Authorization") != "" {
				t.Error("the agent's token was forwarded upstream")
			}
			repl := p.last.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if agent, _ := repl.GetString("mcp.agent"); agent != "cursor-acme" {
				t.Errorf("{mcp.agent} = %q", agent)
			}
			if sub, _ := repl.GetString("mcp.subject"); sub != "user-1" {
				t.Errorf("{mcp.subject} = %q", sub)
			}
		})
	}
}

func TestServerWithoutIssuerRefusedAtLoad(t *testing.T) {
	app := &App{Tenants: []*TenantConfig{{Name: "acme"}}}
	app.tenants = map[string]*TenantConfig{"acme": app.Tenants[0]}
	app.logger = caddy.Log()
	if err := app.provisionAuth(); err != nil {
		t.Fatal(err)
	}
	defer app.cleanupAuth()
	_, err := newServer(&ServerConfig{Name: "x", Tenant: "acme", Path: "/mcp"}, app)
	want := "needs agent tokens, but neither tenant acme nor the global mcp options configure an issuer (or mark the server anonymous)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v", err)
	}
}
