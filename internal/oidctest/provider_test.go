package oidctest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const resource = "http://localhost:8080/acme/tools/mcp"

func start(t *testing.T, opts ...Option) *Provider {
	t.Helper()
	p, err := Start("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	agent := Client{
		ID: "cursor-acme", Secret: "agent-secret",
		Scopes:  []string{"mcp:read", "mcp:write:invoices"},
		Groups:  []string{"internal-tools"},
		Tenant:  "acme",
		Subject: "user-1",
	}
	gw := Client{ID: "gateway", Secret: "gw-secret", GrantTypes: []string{GrantTokenExchange, GrantClientCredentials},
		Scopes: []string{"calendar.read", "read_content"}}
	for _, c := range []Client{agent, gw} {
		if err := p.RegisterClient(c); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// verify checks a JWT against the provider's JWKS, fetched over HTTP, and returns its claims
// and kid.
func verify(t *testing.T, p *Provider, token string) (map[string]any, string) {
	t.Helper()
	var jwks jose.JSONWebKeySet
	if st := getJSON(t, p.JWKSURL(), &jwks); st != 200 {
		t.Fatalf("jwks: %d", st)
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := jwks.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS %v", kid, p.KeyIDs())
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims, kid
}

func TestDiscovery(t *testing.T) {
	for _, path := range []string{"", "/tenant-a"} {
		t.Run("path="+path, func(t *testing.T) {
			p := start(t, WithIssuerPath(path))
			var oidcDoc, rfc8414, appended map[string]any
			if st := getJSON(t, p.DiscoveryURL(), &oidcDoc); st != 200 {
				t.Fatalf("openid-configuration: %d", st)
			}
			if st := getJSON(t, p.MetadataURL(), &rfc8414); st != 200 {
				t.Fatalf("oauth-authorization-server: %d", st)
			}
			if st := getJSON(t, p.Issuer()+"/.well-known/oauth-authorization-server", &appended); st != 200 {
				t.Fatalf("appended oauth-authorization-server: %d", st)
			}
			for _, doc := range []map[string]any{oidcDoc, rfc8414, appended} {
				if doc["issuer"] != p.Issuer() || doc["jwks_uri"] != p.JWKSURL() || doc["token_endpoint"] != p.TokenURL() {
					t.Fatalf("metadata: %v", doc)
				}
			}
			grants, _ := json.Marshal(oidcDoc["grant_types_supported"])
			for _, g := range []string{GrantClientCredentials, GrantTokenExchange, GrantRefreshToken} {
				if !strings.Contains(string(grants), g) {
					t.Errorf("grant_types_supported %s lacks %s", grants, g)
				}
			}
		})
	}
}

func TestClientCredentialsJWT(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			p := start(t, WithAlgorithm(alg))
			tok, err := p.ClientCredentials(context.Background(), "cursor-acme", resource, "mcp:read")
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
				t.Fatalf("response: %+v", tok)
			}
			claims, kid := verify(t, p, tok.AccessToken)
			if kid != p.KeyID() {
				t.Errorf("kid %s, want %s", kid, p.KeyID())
			}
			hdr, _ := jose.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if hdr == nil || hdr.Signatures[0].Header.Algorithm != alg {
				t.Fatalf("alg: want %s", alg)
			}
			want := map[string]any{
				"iss": p.Issuer(), "sub": "user-1", "client_id": "cursor-acme",
				"scope": "mcp:read", "tenant": "acme",
			}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("%s = %v, want %v", k, claims[k], v)
				}
			}
			if aud := audience(claims); !slices.Equal(aud, []string{resource}) {
				t.Errorf("aud %v", aud)
			}
			if g, _ := json.Marshal(claims["groups"]); string(g) != `["internal-tools"]` {
				t.Errorf("groups %s", g)
			}
			if exp, _ := claims["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) {
				t.Errorf("exp %v", claims["exp"])
			}

			// no scope requested: every allowed scope; a scope not allowed: invalid_scope.
			tok, err = p.ClientCredentials(context.Background(), "cursor-acme", resource)
			if err != nil {
				t.Fatal(err)
			}
			if claims, _ := verify(t, p, tok.AccessToken); claims["scope"] != "mcp:read mcp:write:invoices" {
				t.Errorf("default scope %v", claims["scope"])
			}
			_, err = p.ClientCredentials(context.Background(), "cursor-acme", resource, "admin")
			var te *TokenError
			if !errors.As(err, &te) || te.Code != "invalid_scope" {
				t.Errorf("disallowed scope: %v", err)
			}
		})
	}
}

func audience(claims map[string]any) []string {
	switch a := claims["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			out = append(out, v.(string))
		}
		return out
	}
	return nil
}

func TestWrongSecret(t *testing.T) {
	p := start(t)
	p.RegisterClient(Client{ID: "mallory", Secret: "x"})
	// send a wrong secret by hand
	req, _ := http.NewRequest("POST", p.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mallory", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 && resp.StatusCode != 400 {
		t.Fatalf("wrong secret: %d", resp.StatusCode)
	}
}

func TestTokenExchange(t *testing.T) {
	p := start(t)
	ctx := context.Background()
	agent, err := p.AgentToken(ctx, "cursor-acme", resource, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.TokenExchange(ctx, "gateway", agent, "https://calendar.acme.example", "calendar.read")
	if err != nil {
		t.Fatal(err)
	}
	if tok.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" || tok.TokenType != "Bearer" {
		t.Fatalf("response %+v", tok)
	}
	claims, _ := verify(t, p, tok.AccessToken)
	if claims["sub"] != "user-1" || claims["client_id"] != "gateway" || claims["scope"] != "calendar.read" || claims["tenant"] != "acme" {
		t.Errorf("claims %v", claims)
	}
	if aud := audience(claims); !slices.Equal(aud, []string{"https://calendar.acme.example"}) {
		t.Errorf("aud %v", aud)
	}
	if act, _ := claims["act"].(map[string]any); act["sub"] != "gateway" {
		t.Errorf("act %v", claims["act"])
	}
	// audience given as a name
	tok, err = p.TokenExchange(ctx, "gateway", agent, "calendar", "calendar.read")
	if err != nil {
		t.Fatal(err)
	}
	if claims, _ := verify(t, p, tok.AccessToken); !slices.Equal(audience(claims), []string{"calendar"}) {
		t.Errorf("aud %v", claims["aud"])
	}
	// a forged subject token is refused; a client without the grant is refused
	forged := agent[:len(agent)-4] + "AAAA"
	if _, err := p.TokenExchange(ctx, "gateway", forged, "calendar"); err == nil {
		t.Error("forged subject token accepted")
	}
	p.RegisterClient(Client{ID: "cc-only", Secret: "s", GrantTypes: []string{GrantClientCredentials}})
	if _, err := p.TokenExchange(ctx, "cc-only", agent, "calendar"); err == nil {
		t.Error("token exchange without the grant accepted")
	}
}

func TestRefreshRotation(t *testing.T) {
	p := start(t)
	p.RegisterClient(Client{ID: "notion-client", Secret: "s", GrantTypes: []string{GrantRefreshToken}, Tenant: "acme"})
	ctx := context.Background()
	rt, err := p.IssueRefreshToken("notion-client", "", []string{"https://api.notion.example"}, "read_content", "update_content")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.Refresh(ctx, "notion-client", rt, "read_content")
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == rt {
		t.Fatalf("refresh token not rotated: %+v", tok)
	}
	claims, _ := verify(t, p, tok.AccessToken)
	if claims["scope"] != "read_content" || claims["tenant"] != "acme" || claims["sub"] != "notion-client" {
		t.Errorf("claims %v", claims)
	}
	if p.RefreshTokenValid(rt) {
		t.Error("old refresh token still valid")
	}
	if _, err := p.Refresh(ctx, "notion-client", rt); err == nil {
		t.Error("old refresh token accepted")
	}
	if _, err := p.Refresh(ctx, "notion-client", tok.RefreshToken); err != nil {
		t.Errorf("new refresh token: %v", err)
	}
}

func TestRotation(t *testing.T) {
	p := start(t)
	ctx := context.Background()
	k1 := p.KeyID()
	t1, _ := p.AgentToken(ctx, "cursor-acme", resource)

	k2, err := p.RotateKey(-1) // keep k1 until removed
	if err != nil {
		t.Fatal(err)
	}
	if k2 == k1 || p.KeyID() != k2 || !slices.Equal(p.KeyIDs(), []string{k1, k2}) {
		t.Fatalf("after rotation: current %s, jwks %v", p.KeyID(), p.KeyIDs())
	}
	t2, _ := p.AgentToken(ctx, "cursor-acme", resource)
	if _, kid := verify(t, p, t2); kid != k2 {
		t.Errorf("new token kid %s, want %s", kid, k2)
	}
	verify(t, p, t1) // old token still verifies
	if !p.RemoveKey(k1) || slices.Contains(p.KeyIDs(), k1) {
		t.Fatal("RemoveKey")
	}

	k3, _ := p.RotateKey(0) // drop k2 at once
	if !slices.Equal(p.KeyIDs(), []string{k3}) {
		t.Fatalf("jwks %v", p.KeyIDs())
	}
	k4, _ := p.RotateKey(150 * time.Millisecond) // grace period
	if !slices.Equal(p.KeyIDs(), []string{k3, k4}) {
		t.Fatalf("jwks %v", p.KeyIDs())
	}
	time.Sleep(200 * time.Millisecond)
	if !slices.Equal(p.KeyIDs(), []string{k4}) {
		t.Fatalf("after grace: jwks %v", p.KeyIDs())
	}
}

func TestOutageAndCounters(t *testing.T) {
	p := start(t)
	ctx := context.Background()
	p.SetJWKSDown(true)
	if st := getJSON(t, p.JWKSURL(), nil); st != http.StatusServiceUnavailable {
		t.Fatalf("jwks down: %d", st)
	}
	p.SetJWKSDown(false)
	if st := getJSON(t, p.JWKSURL(), nil); st != 200 {
		t.Fatalf("jwks up: %d", st)
	}
	if n := p.Requests(EndpointJWKS); n != 2 {
		t.Errorf("jwks requests %d", n)
	}

	p.SetStatus(EndpointToken, http.StatusBadGateway)
	var te *TokenError
	if _, err := p.AgentToken(ctx, "cursor-acme", resource); !errors.As(err, &te) || te.Status != http.StatusBadGateway {
		t.Fatalf("token endpoint down: %v", err)
	}
	p.SetStatus(EndpointToken, 0)

	p.ResetCounts()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.AgentToken(ctx, "cursor-acme", resource); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	p.TokenExchange(ctx, "gateway", "x", "calendar")
	if n := p.TokenRequests("cursor-acme"); n != 20 {
		t.Errorf("cursor-acme token requests %d", n)
	}
	if n := p.TokenRequests("gateway"); n != 1 {
		t.Errorf("gateway token requests %d", n)
	}
	if n := p.Requests(EndpointToken); n != 21 {
		t.Errorf("token requests %d", n)
	}

	p.SetDelay(EndpointToken, 100*time.Millisecond)
	start := time.Now()
	p.AgentToken(ctx, "cursor-acme", resource)
	if time.Since(start) < 100*time.Millisecond {
		t.Error("delay not applied")
	}
}

func TestSign(t *testing.T) {
	p := start(t, WithAlgorithm("ES256"))
	past := time.Now().Add(-time.Hour).Unix()
	tok, err := p.Sign(map[string]any{"sub": "x", "aud": resource, "exp": past, "tenant": "globex"})
	if err != nil {
		t.Fatal(err)
	}
	claims, kid := verify(t, p, tok)
	if kid != p.KeyID() || claims["iss"] != p.Issuer() || claims["exp"] != float64(past) || claims["tenant"] != "globex" {
		t.Errorf("claims %v kid %s", claims, kid)
	}
	if p.Requests(EndpointToken) != 0 {
		t.Error("Sign used the token endpoint")
	}
}

func TestVerify(t *testing.T) {
	p := start(t)
	tok, err := p.AgentToken(context.Background(), "cursor-acme", resource)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := p.Verify(tok); err != nil || c["client_id"] != "cursor-acme" {
		t.Fatalf("verify: %v %v", c, err)
	}
	expired, _ := p.Sign(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})
	if _, err := p.Verify(expired); err == nil {
		t.Error("expired token verified")
	}
	p.RotateKey(0)
	if _, err := p.Verify(tok); err == nil {
		t.Error("token of a removed key verified")
	}
}
