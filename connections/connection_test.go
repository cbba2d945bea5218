package connections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
	"github.com/caddymcp/gateway/tokens"
)

const (
	secret    = "client-secret-do-not-leak-1234"
	apiKey    = "api-key-do-not-leak-5678"
	bearerTok = "static-bearer-do-not-leak-9012"
)

func provider(t testing.TB, clients ...oidctest.Client) *oidctest.Provider {
	t.Helper()
	for i := range clients {
		if clients[i].Secret == "" {
			clients[i].Secret = secret
		}
	}
	p, err := oidctest.Start("", oidctest.WithClients(clients...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func cache(t testing.TB) *tokens.ConnCache {
	t.Helper()
	c, err := tokens.NewConnCache(tokens.ConnCacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newConn(t testing.TB, spec Spec, opts Options) *Connection {
	t.Helper()
	c, err := New(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func bearerOf(t testing.TB, cred Credential) string {
	t.Helper()
	tok, ok := strings.CutPrefix(cred.Authorization, "Bearer ")
	if !ok || tok == "" {
		t.Fatalf("Authorization %q", cred.Authorization)
	}
	return tok
}

func noSecret(t testing.TB, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Fatalf("secret leaked: %q", s)
		}
	}
}

func TestOAuth2ClientCredentials(t *testing.T) {
	p := provider(t, oidctest.Client{ID: "acme-notion", Tenant: "acme", Scopes: []string{"read_content", "update_content", "insert_content"}})
	cc := cache(t)
	for _, method := range []string{"", "client_secret_basic", "client_secret_post"} {
		t.Run("method="+method, func(t *testing.T) {
			c := newConn(t, Spec{
				Name: "notion-" + method, Tenant: "acme",
				OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret, AuthMethod: method,
					Scopes: []string{"read_content"}, Resource: "https://api.notion.example"},
				Headers: []Header{{Name: "Notion-Version", Value: "2022-06-28"}},
			}, Options{Cache: cc})
			if c.Kind() != KindOAuth2 {
				t.Fatalf("kind %v", c.Kind())
			}
			before := p.TokenRequests("acme-notion")
			cred, err := c.Credential(context.Background(), Request{Scopes: []string{"mcp:read"}})
			if err != nil {
				t.Fatal(err)
			}
			claims, err := p.Verify(bearerOf(t, cred))
			if err != nil {
				t.Fatal(err)
			}
			if claims["scope"] != "read_content" || claims["tenant"] != "acme" || !strings.Contains(fmt.Sprint(claims["aud"]), "https://api.notion.example") {
				t.Fatalf("claims %v", claims)
			}
			if cred.TokenType != "Bearer" || cred.Expiry.IsZero() || !slices.Equal(cred.Scopes, []string{"read_content"}) {
				t.Fatalf("cred %v", cred)
			}
			// Second call: cache hit.
			cred2, err := c.Credential(context.Background(), Request{Scopes: []string{"mcp:read", "mcp:write"}})
			if err != nil || cred2.Authorization != cred.Authorization {
				t.Fatalf("no cache hit: %v", err)
			}
			if n := p.TokenRequests("acme-notion") - before; n != 1 {
				t.Fatalf("%d token requests", n)
			}
			h := http.Header{}
			c.Inject(h, cred)
			if h.Get("Authorization") != cred.Authorization || h.Get("Notion-Version") != "2022-06-28" {
				t.Fatalf("injected %v", h)
			}
		})
	}
}

func TestScopeMap(t *testing.T) {
	p := provider(t, oidctest.Client{ID: "acme-notion", Scopes: []string{"read_content", "update_content", "insert_content", "admin"}})
	c := newConn(t, Spec{
		Name: "notion", Tenant: "acme",
		OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret},
		ScopeMap: []ScopeMapping{
			{Scope: "mcp:read", Downstream: []string{"read_content"}},
			{Scope: "mcp:write:*", Downstream: []string{"update_content", "insert_content"}},
			{Scope: "mcp:?dmin", Downstream: []string{"admin", "read_content"}},
		},
	}, Options{Cache: cache(t)})
	cases := []struct {
		effective, want []string
	}{
		{[]string{"mcp:read"}, []string{"read_content"}},
		{[]string{"mcp:write:pages", "mcp:read"}, []string{"insert_content", "read_content", "update_content"}},
		{[]string{"mcp:write:"}, []string{"insert_content", "update_content"}},
		{[]string{"mcp:admin"}, []string{"admin", "read_content"}},
		{[]string{"mcp:write"}, nil},
		{[]string{"other", "mcp:readx"}, nil},
		{nil, nil},
	}
	for _, tc := range cases {
		if got := c.DownstreamScopes(tc.effective); !slices.Equal(got, tc.want) {
			t.Errorf("DownstreamScopes(%v) = %v, want %v", tc.effective, got, tc.want)
		}
	}
	// The token is requested for exactly the mapped set.
	cred, err := c.Credential(context.Background(), Request{Scopes: []string{"mcp:write:pages", "mcp:read"}})
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := p.Verify(bearerOf(t, cred))
	if claims["scope"] != "insert_content read_content update_content" {
		t.Fatalf("scope %v", claims["scope"])
	}
	// Different mapped sets are different cache entries.
	cred2, _ := c.Credential(context.Background(), Request{Scopes: []string{"mcp:read"}})
	if cred2.Authorization == cred.Authorization || p.TokenRequests("acme-notion") != 2 {
		t.Fatal("scope sets share a token")
	}
	// Nothing maps and no configured scopes: refused (no scope would get
	// the client's default scopes).
	if _, err := c.Credential(context.Background(), Request{Scopes: []string{"mcp:write"}}); !errors.Is(err, ErrNoDownstreamScopes) {
		t.Fatalf("err %v", err)
	}
	// Without a scope_map: the configured scopes, whatever the agent has.
	c2 := newConn(t, Spec{Name: "n2", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret, Scopes: []string{"read_content", "admin", "read_content"}}}, Options{Cache: cache(t)})
	if got := c2.DownstreamScopes([]string{"mcp:anything"}); !slices.Equal(got, []string{"admin", "read_content"}) {
		t.Fatalf("configured scopes %v", got)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abbb", false},
		{"mcp:*:read", "mcp:x:y:read", true}, {"mcp:*:read", "mcp:read", false}, {"?", "é", true},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"**x", "aax", true}, {"*a*b*", "xaxbx", true}, {"abc", "abc", true},
	} {
		r, err := compileScopeRule(ScopeMapping{Scope: tc.p, Downstream: []string{"d"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.match(tc.s); got != tc.ok {
			t.Errorf("scope_map %q matching %q = %v", tc.p, tc.s, got)
		}
	}
}

func TestRefreshGrantRotation(t *testing.T) {
	p := provider(t, oidctest.Client{ID: "notion-app"})
	rt0, err := p.IssueRefreshToken("notion-app", "user-7", []string{"https://api.notion.example"}, "read_content")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var store string
	var persisted []string
	opts := Options{
		Cache: cache(t),
		LoadRefreshToken: func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			return store, nil
		},
		StoreRefreshToken: func(_ context.Context, rt string) error {
			mu.Lock()
			defer mu.Unlock()
			store = rt
			persisted = append(persisted, rt)
			return nil
		},
	}
	spec := Spec{Name: "notion", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "notion-app", ClientSecret: secret, RefreshToken: rt0}}
	c := newConn(t, spec, opts)
	if c.Kind() != KindRefreshToken {
		t.Fatalf("kind %v", c.Kind())
	}
	cred, err := c.Credential(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if claims, err := p.Verify(bearerOf(t, cred)); err != nil || claims["sub"] != "user-7" {
		t.Fatalf("claims %v %v", claims, err)
	}
	if len(persisted) != 1 || persisted[0] == rt0 || p.RefreshTokenValid(rt0) {
		t.Fatal("rotated refresh token not persisted")
	}
	// A reload (new Connection, new cache) refreshes with the stored token.
	opts.Cache = cache(t)
	c2 := newConn(t, spec, opts)
	if _, err := c2.Credential(context.Background(), Request{}); err != nil {
		t.Fatalf("refresh after reload: %v", err)
	}
	if len(persisted) != 2 || !p.RefreshTokenValid(persisted[1]) {
		t.Fatal("second rotation not persisted")
	}
	noSecret(t, c2.String(), rt0, persisted[0], persisted[1], secret)
}

func TestTokenExchange(t *testing.T) {
	p := provider(t,
		oidctest.Client{ID: "agent-alice", Subject: "alice", Tenant: "acme"},
		oidctest.Client{ID: "agent-bob", Subject: "bob", Tenant: "acme"},
		oidctest.Client{ID: "gateway", Scopes: []string{"calendar.read", "calendar.write"}},
	)
	c := newConn(t, Spec{Name: "calendar", Tenant: "acme", TokenExchange: &TokenExchange{
		TokenURL: p.TokenURL(), ClientID: "gateway", ClientSecret: secret, Audience: "https://calendar.acme.example",
		Scopes: []string{"calendar.read"},
	}}, Options{Cache: cache(t)})
	alice, _ := p.AgentToken(context.Background(), "agent-alice", "https://mcp.example.com/acme/cal/mcp")
	bob, _ := p.AgentToken(context.Background(), "agent-bob", "https://mcp.example.com/acme/cal/mcp")
	credA, err := c.Credential(context.Background(), Request{SubjectToken: alice})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := p.Verify(bearerOf(t, credA))
	if err != nil {
		t.Fatal(err)
	}
	act, _ := claims["act"].(map[string]any)
	if claims["sub"] != "alice" || act["sub"] != "gateway" || claims["scope"] != "calendar.read" ||
		!strings.Contains(fmt.Sprint(claims["aud"]), "https://calendar.acme.example") {
		t.Fatalf("claims %v", claims)
	}
	if bearerOf(t, credA) == alice {
		t.Fatal("the agent's token was passed through")
	}
	// Cached per subject.
	credA2, _ := c.Credential(context.Background(), Request{SubjectToken: alice})
	credB, _ := c.Credential(context.Background(), Request{SubjectToken: bob})
	if credA2.Authorization != credA.Authorization || credB.Authorization == credA.Authorization {
		t.Fatal("token exchange cache not per subject")
	}
	if cb, _ := p.Verify(bearerOf(t, credB)); cb["sub"] != "bob" {
		t.Fatalf("bob's token has sub %v", cb["sub"])
	}
	if n := p.TokenRequests("gateway"); n != 2 {
		t.Fatalf("%d exchanges", n)
	}
	if _, err := c.Credential(context.Background(), Request{}); !errors.Is(err, ErrNoSubjectToken) {
		t.Fatalf("err %v", err)
	}
}

func minter(t testing.TB) *tokens.Minter {
	t.Helper()
	k, err := tokens.GenerateSigningKey("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tokens.NewMinter(tokens.MinterConfig{Issuer: "https://mcp.example.com", Key: k})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResourceToken(t *testing.T) {
	m := minter(t)
	c := newConn(t, Spec{Name: "own-api", Tenant: "acme", ResourceToken: &ResourceToken{Audience: "https://api.acme.example", TTL: 2 * time.Minute}},
		Options{Cache: cache(t), Minter: m})
	req := Request{Scopes: []string{"mcp:write", "mcp:read", "mcp:read"}, Subject: "alice", ClientID: "cursor-acme"}
	cred, err := c.Credential(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := m.VerifyResourceToken(bearerOf(t, cred))
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "alice" || claims.ClientID != "cursor-acme" || claims.Tenant != "acme" ||
		!slices.Equal(claims.Audience, []string{"https://api.acme.example"}) || !slices.Equal(claims.Scopes, []string{"mcp:read", "mcp:write"}) ||
		claims.Expiry.Sub(claims.IssuedAt) != 2*time.Minute {
		t.Fatalf("claims %+v", claims)
	}
	// Cached per agent.
	again, _ := c.Credential(context.Background(), req)
	other, _ := c.Credential(context.Background(), Request{Scopes: req.Scopes, Subject: "bob", ClientID: "cursor-acme"})
	if again.Authorization != cred.Authorization || other.Authorization == cred.Authorization {
		t.Fatal("resource token cache not per agent")
	}
	// After a key rotation a token signed by the new key is minted.
	if _, err := m.Rotate(nil); err != nil {
		t.Fatal(err)
	}
	rotated, _ := c.Credential(context.Background(), req)
	rc, err := m.VerifyResourceToken(bearerOf(t, rotated))
	if err != nil || rc.KeyID != m.KeyID() {
		t.Fatalf("after rotation: %v", err)
	}
	if _, err := New(Spec{Name: "x", Tenant: "acme", ResourceToken: &ResourceToken{Audience: "a"}}, Options{Cache: cache(t)}); err == nil {
		t.Fatal("resource_token without minter accepted")
	}
}

func TestInjectStripsClientHeaders(t *testing.T) {
	c := newConn(t, Spec{
		Name: "billing", Tenant: "acme",
		APIKey:  &APIKey{Header: "x-api-key", Value: apiKey},
		Headers: []Header{{Name: "X-Tenant", Value: "acme"}},
	}, Options{})
	cred, err := c.Credential(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token != apiKey || cred.TokenType != "N_A" || cred.Authorization != "" {
		t.Fatalf("cred %v", cred)
	}
	h := http.Header{
		"Authorization":       {"Bearer agent-token"},
		"authorization":       {"Bearer agent-token-2"}, // non-canonical key
		"Cookie":              {"session=1", "b=2"},
		"X-Api-Key":           {"client-key"},
		"x-API-key":           {"client-key-2"},
		"X-Tenant":            {"globex"},
		"Proxy-Authorization": {"Basic x"},
		"Mcp-Session-Id":      {"keep"},
		"Accept":              {"application/json"},
	}
	c.Inject(h, cred)
	want := http.Header{
		"X-Api-Key":      {apiKey},
		"X-Tenant":       {"acme"},
		"Mcp-Session-Id": {"keep"},
		"Accept":         {"application/json"},
	}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("after Inject:\n%v\nwant\n%v", h, want)
	}
	if !slices.Contains(c.StripHeaders(), "X-Api-Key") {
		t.Fatalf("strip %v", c.StripHeaders())
	}

	// Bearer: the client's Authorization is replaced, never passed through.
	b := newConn(t, Spec{Name: "static", Tenant: "acme", Bearer: bearerTok}, Options{})
	cred, _ = b.Credential(context.Background(), Request{})
	h = http.Header{"Authorization": {"Bearer agent"}, "Cookie": {"c"}}
	b.Inject(h, cred)
	if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+bearerTok || h.Get("Cookie") != "" {
		t.Fatalf("after Inject %v", h)
	}

	// Headers only: Authorization is still removed.
	ho := newConn(t, Spec{Name: "hdr", Tenant: "acme", Headers: []Header{{Name: "X-Env", Value: "prod"}}}, Options{})
	cred, _ = ho.Credential(context.Background(), Request{})
	h = http.Header{"Authorization": {"Bearer agent"}}
	ho.Inject(h, cred)
	if h.Get("Authorization") != "" || h.Get("X-Env") != "prod" || ho.Kind() != KindHeaders {
		t.Fatalf("after Inject %v", h)
	}
}

func TestEndpointDownErrors(t *testing.T) {
	p := provider(t, oidctest.Client{ID: "acme-notion", TokenTTL: time.Hour})
	c := newConn(t, Spec{Name: "notion", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret}},
		Options{Cache: cache(t), Timeout: 300 * time.Millisecond})
	good, err := c.Credential(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	p.SetStatus(oidctest.EndpointToken, http.StatusBadGateway)
	// A cached token keeps serving while the endpoint is down.
	if cred, err := c.Credential(context.Background(), Request{}); err != nil || cred.Authorization != good.Authorization {
		t.Fatalf("cached token not served: %v", err)
	}
	// A cold key fails, naming the connection, without secrets.
	c2 := newConn(t, Spec{Name: "notion-cold", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret}},
		Options{Cache: cache(t)})
	_, err = c2.Credential(context.Background(), Request{})
	var ae *tokens.AcquireError
	var ce *Error
	if !errors.As(err, &ae) || !errors.As(err, &ce) || ae.Status != 502 || ce.Connection != "notion-cold" {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(err.Error(), `"notion-cold"`) {
		t.Fatalf("error does not name the connection: %v", err)
	}
	noSecret(t, err.Error(), secret, bearerOf(t, good))
	// Slow endpoint: bounded by the timeout.
	p.SetStatus(oidctest.EndpointToken, 0)
	p.SetDelay(oidctest.EndpointToken, 3*time.Second)
	c3 := newConn(t, Spec{Name: "notion-slow", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret}},
		Options{Cache: cache(t), Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err = c3.Credential(context.Background(), Request{})
	if !errors.As(err, &ae) || !ae.Timeout || time.Since(start) > time.Second {
		t.Fatalf("slow endpoint: %v after %v", err, time.Since(start))
	}
}

func TestSingleflightThroughConnection(t *testing.T) {
	p := provider(t, oidctest.Client{ID: "acme-notion"})
	p.SetDelay(oidctest.EndpointToken, 20*time.Millisecond)
	c := newConn(t, Spec{Name: "notion", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret}},
		Options{Cache: cache(t)})
	var wg sync.WaitGroup
	start := make(chan struct{})
	auths := make([]string, 200)
	for i := range auths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cred, err := c.Credential(context.Background(), Request{Scopes: []string{"mcp:read"}})
			if err == nil {
				auths[i] = cred.Authorization
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, a := range auths {
		if a == "" || a != auths[0] {
			t.Fatal("calls got different or no tokens")
		}
	}
	if n := p.TokenRequests("acme-notion"); n != 1 {
		t.Fatalf("200 concurrent cold calls: %d token requests", n)
	}
}

func TestTenantIsolation(t *testing.T) {
	p := provider(t, oidctest.Client{ID: "acme-gw", Tenant: "acme"}, oidctest.Client{ID: "globex-gw", Tenant: "globex"})
	cc := cache(t) // one shared cache, same connection name in both tenants
	conns := map[string]*Connection{}
	for tenant, client := range map[string]string{"acme": "acme-gw", "globex": "globex-gw"} {
		conns[tenant] = newConn(t, Spec{Name: "notion", Tenant: tenant, OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: client, ClientSecret: secret}}, Options{Cache: cc})
	}
	var mu sync.Mutex
	got := map[string]map[string]bool{"acme": {}, "globex": {}}
	var wg sync.WaitGroup
	for i := range 500 {
		tenant := [2]string{"acme", "globex"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			cred, err := conns[tenant].Credential(context.Background(), Request{Scopes: []string{"mcp:read"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[tenant][cred.Authorization] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	for tenant, auths := range got {
		if len(auths) != 1 {
			t.Fatalf("%s saw %d tokens", tenant, len(auths))
		}
		for a := range auths {
			claims, err := p.Verify(strings.TrimPrefix(a, "Bearer "))
			if err != nil || claims["tenant"] != tenant {
				t.Fatalf("%s received a token of %v", tenant, claims["tenant"])
			}
		}
	}
	if p.TokenRequests("acme-gw") != 1 || p.TokenRequests("globex-gw") != 1 {
		t.Fatal("unexpected token request count")
	}
}

func TestRedaction(t *testing.T) {
	m := minter(t)
	specs := []Spec{
		{Name: "a", Tenant: "acme", APIKey: &APIKey{Header: "X-Api-Key", Value: apiKey}, Headers: []Header{{Name: "X-Secretish", Value: "hdr-value-secret"}}},
		{Name: "b", Tenant: "acme", Bearer: bearerTok},
		{Name: "c", Tenant: "acme", OAuth2: &OAuth2{TokenURL: "https://auth.example/token", ClientID: "id", ClientSecret: secret, RefreshToken: "refresh-tok-secret"}},
		{Name: "d", Tenant: "acme", TokenExchange: &TokenExchange{TokenURL: "https://auth.example/token", ClientID: "id", ClientSecret: secret}},
		{Name: "e", Tenant: "acme", ResourceToken: &ResourceToken{Audience: "https://api"}},
	}
	secrets := []string{apiKey, bearerTok, secret, "refresh-tok-secret", "hdr-value-secret"}
	for _, s := range specs {
		c := newConn(t, s, Options{Cache: cache(t), Minter: m})
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		out := string(js) + c.String() + fmt.Sprintf("%v %+v %#v %s", c, c, s, s) + s.String()
		noSecret(t, out, secrets...)
		if !strings.Contains(string(js), `"name":"`+s.Name+`"`) || !strings.Contains(string(js), `"kind":"`) {
			t.Fatalf("admin JSON %s", js)
		}
		if s.OAuth2 != nil && !strings.Contains(string(js), Redacted) {
			t.Fatalf("no redaction marker: %s", js)
		}
		cred, err := c.Credential(context.Background(), Request{Subject: "alice"})
		if err == nil {
			noSecret(t, fmt.Sprintf("%v %+v %#v %s", cred, cred, cred, cred), secrets...)
		}
	}
	// The original spec is untouched by Redacted.
	if specs[2].OAuth2.ClientSecret != secret {
		t.Fatal("Redacted modified the spec")
	}
}

func TestNewRejects(t *testing.T) {
	cc := cache(t)
	for name, s := range map[string]Spec{
		"no name":          {Tenant: "acme", Bearer: "x"},
		"no tenant":        {Name: "n", Bearer: "x"},
		"nothing":          {Name: "n", Tenant: "acme"},
		"two kinds":        {Name: "n", Tenant: "acme", Bearer: "x", APIKey: &APIKey{Header: "X-K", Value: "v"}},
		"bad header name":  {Name: "n", Tenant: "acme", Headers: []Header{{Name: "X Bad", Value: "v"}}},
		"header CRLF":      {Name: "n", Tenant: "acme", Headers: []Header{{Name: "X-A", Value: "v\r\nX-Evil: 1"}}},
		"authz header":     {Name: "n", Tenant: "acme", Bearer: "x", Headers: []Header{{Name: "authorization", Value: "v"}}},
		"api key empty":    {Name: "n", Tenant: "acme", APIKey: &APIKey{Header: "X-K"}},
		"bad token url":    {Name: "n", Tenant: "acme", OAuth2: &OAuth2{TokenURL: "not a url", ClientID: "x"}},
		"bad scope map":    {Name: "n", Tenant: "acme", Bearer: "x", ScopeMap: []ScopeMapping{{Scope: "a"}}},
		"te no url":        {Name: "n", Tenant: "acme", TokenExchange: &TokenExchange{}},
		"rt no audience":   {Name: "n", Tenant: "acme", ResourceToken: &ResourceToken{}},
		"dup api key hdr":  {Name: "n", Tenant: "acme", APIKey: &APIKey{Header: "X-K", Value: "v"}, Headers: []Header{{Name: "x-k", Value: "w"}}},
		"bearer ctrl char": {Name: "n", Tenant: "acme", Bearer: "x\ny"},
	} {
		if _, err := New(s, Options{Cache: cc, Minter: minter(t)}); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			noSecret(t, err.Error(), "v\r\nX-Evil")
		}
	}
	if _, err := New(Spec{Name: "n", Tenant: "acme", OAuth2: &OAuth2{TokenURL: "https://a/t", ClientID: "x"}}, Options{}); err == nil {
		t.Error("oauth2 without cache accepted")
	}
}

// BenchmarkCredentialHit: Credential() on a cache hit, per kind.
func BenchmarkCredentialHit(b *testing.B) {
	p := provider(b, oidctest.Client{ID: "acme-notion"})
	cc := cache(b)
	m := minter(b)
	oauth := Spec{Name: "notion", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret, Scopes: []string{"read"}}}
	mapped := oauth
	mapped.Name = "notion-mapped"
	mapped.ScopeMap = []ScopeMapping{{Scope: "mcp:read", Downstream: []string{"read"}}, {Scope: "mcp:write:*", Downstream: []string{"write", "insert"}}}
	for _, bc := range []struct {
		name string
		spec Spec
	}{
		{"oauth2", oauth},
		{"oauth2_scope_map", mapped},
		{"api_key", Spec{Name: "billing", Tenant: "acme", APIKey: &APIKey{Header: "X-Api-Key", Value: apiKey}, Headers: []Header{{Name: "X-Tenant", Value: "acme"}}}},
		{"resource_token", Spec{Name: "own", Tenant: "acme", ResourceToken: &ResourceToken{Audience: "https://api.acme.example"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newConn(b, bc.spec, Options{Cache: cc, Minter: m})
			req := Request{Scopes: []string{"mcp:read", "mcp:write:pages"}, Subject: "alice", ClientID: "cursor"}
			ctx := context.Background()
			if _, err := c.Credential(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Credential(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInject: header stripping and injection for one request.
func BenchmarkInject(b *testing.B) {
	c := newConn(b, Spec{Name: "billing", Tenant: "acme", APIKey: &APIKey{Header: "X-Api-Key", Value: apiKey}, Headers: []Header{{Name: "X-Tenant", Value: "acme"}}}, Options{})
	cred, _ := c.Credential(context.Background(), Request{})
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{"Authorization": {"Bearer x"}, "Content-Type": {"application/json"}, "Accept": {"*/*"}, "Mcp-Session-Id": {"s"}}
		c.Inject(h, cred)
	}
}

// BenchmarkTokenRequestsPer10000Calls: 10 000 concurrent-ish calls (100
// goroutines) on a cold cache against the real provider; reports the token
// requests made.
func BenchmarkTokenRequestsPer10000Calls(b *testing.B) {
	p := provider(b, oidctest.Client{ID: "acme-notion"})
	for b.Loop() {
		p.ResetCounts()
		c := newConn(b, Spec{Name: "notion", Tenant: "acme", OAuth2: &OAuth2{TokenURL: p.TokenURL(), ClientID: "acme-notion", ClientSecret: secret}}, Options{Cache: cache(b)})
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					if _, err := c.Credential(context.Background(), Request{Scopes: []string{"mcp:read"}}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(p.TokenRequests("acme-notion")), "token-requests/10k-calls")
	}
}
