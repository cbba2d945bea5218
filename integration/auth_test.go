package integration

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// authGateway runs a gateway whose issuer is a real zitadel/oidc provider
// (discovered, no jwks_uri) in front of two recording upstreams of two
// tenants.
type authGateway struct {
	port       int
	op         *oidctest.Provider
	acme, glob *upstream
	caddy      *caddyProc
}

func (g *authGateway) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", g.port, path)
}

func startAuthGateway(t *testing.T) *authGateway {
	t.Helper()
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "cursor-acme", Secret: "s1", GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Groups: []string{"internal-tools"}, Tenant: "acme"},
	))
	g := &authGateway{port: freePort(t), op: op, acme: newUpstream(t, "acme"), glob: newUpstream(t, "globex")}
	g.caddy = startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %s {
		tenant_claim tenant
	}
	tenant acme
	tenant globex
	policy everyone {
		allow
		agents *
		scopes mcp:*
	}
}`, op.Issuer()),
		Sites: fmt.Sprintf(`http://127.0.0.1:%d {
	mcp_gateway {
		server acme {
			tenant acme
			path /acme/mcp
			upstream %s
			require mcp:read
		}
		server globex {
			tenant globex
			path /globex/mcp
			upstream %s
		}
	}
}`, g.port, g.acme.URL, g.glob.URL),
		WaitPorts: []int{g.port},
	})
	return g
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// TestAgentTokensThroughGateway: tokens from a real provider, discovered
// through its metadata, open the server whose audience they carry and no
// other; the agent's token never reaches the upstream.
func TestAgentTokensThroughGateway(t *testing.T) {
	g := startAuthGateway(t)
	ctx, cancel := testContext(t, 60)
	defer cancel()
	tok, err := g.op.AgentToken(ctx, "cursor-acme", g.url("/acme/mcp"), "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"", rev20251125} {
		c := mustConnect(ctx, t, g.port, g.url("/acme/mcp"), clientOptions{Revision: rev, Header: bearer(tok)})
		who, err := c.whoami(ctx, nil)
		if err != nil || who.Upstream != "acme" {
			t.Fatalf("%s: whoami %+v %v", revisionName(rev), who, err)
		}
	}
	// The upstream gets a resource token minted by the gateway for it,
	// never the agent's token.
	for _, r := range g.acme.Requests() {
		v := r.Header.Get("Authorization")
		if strings.Contains(v, tok) || !strings.HasPrefix(v, "Bearer ey") {
			t.Fatalf("the upstream's Authorization is not a gateway resource token: %.30s...", v)
		}
	}
	// The same token at the other tenant's server: wrong audience.
	if _, err := mcpConnect(ctx, t, g.port, g.url("/globex/mcp"), clientOptions{Header: bearer(tok)}); err == nil {
		t.Fatal("acme's token opened globex's server")
	}
	if n := len(g.glob.Requests()); n != 0 {
		t.Fatalf("globex's upstream saw %d requests", n)
	}
	if strings.Contains(g.caddy.Output.String(), tok) {
		t.Fatal("the gateway logged an agent token")
	}
}

// TestBadTokensNeverReachUpstream drives the table of bad tokens through
// the real binary: each gets the right status and challenge, and the
// recording upstream sees none of them.
func TestBadTokensNeverReachUpstream(t *testing.T) {
	g := startAuthGateway(t)
	ctx, cancel := testContext(t, 60)
	defer cancel()
	aud := g.url("/acme/mcp")
	good, err := g.op.AgentToken(ctx, "cursor-acme", aud, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims map[string]any) string {
		base := map[string]any{"sub": "u1", "client_id": "cursor-acme", "aud": aud, "scope": "mcp:read"}
		for k, v := range claims {
			base[k] = v
		}
		s, err := g.op.Sign(base)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now().Unix()
	parts := strings.Split(good, ".")
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	var payload map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(raw, &payload)
	algNone := seg(map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "."
	// Algorithm confusion: HS256 keyed with the provider's RSA public key PEM.
	confusion := func() string {
		resp, err := http.Get(g.op.JWKSURL())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set struct{ Keys []map[string]any }
		_ = json.NewDecoder(resp.Body).Decode(&set)
		if len(set.Keys) == 0 {
			t.Fatal("empty JWKS")
		}
		k := set.Keys[0]
		pub := rsaFromJWK(t, k)
		der, _ := x509.MarshalPKIXPublicKey(pub)
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		head := seg(map[string]any{"alg": "HS256", "typ": "JWT", "kid": k["kid"]})
		mac := hmac.New(sha256.New, pemKey)
		mac.Write([]byte(head + "." + parts[1]))
		return head + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}()

	cases := []struct {
		name       string
		header     string // Authorization value ("" none)
		query      string
		wantStatus int
		wantInWWW  string
	}{
		{"missing", "", "", 401, `Bearer resource_metadata="` + g.url("/.well-known/oauth-protected-resource/acme/mcp") + `", scope="mcp:read"`},
		{"expired", "Bearer " + sign(map[string]any{"exp": now - 3600, "iat": now - 7200}), "", 401, `error="invalid_token"`},
		{"future nbf", "Bearer " + sign(map[string]any{"nbf": now + 3600}), "", 401, `error="invalid_token"`},
		{"wrong issuer", "Bearer " + sign(map[string]any{"iss": "https://evil.example.com"}), "", 401, `error="invalid_token"`},
		{"other tenant's audience", "Bearer " + sign(map[string]any{"aud": g.url("/globex/mcp")}), "", 401, `error="invalid_token"`},
		{"tenant claim of another tenant", "Bearer " + sign(map[string]any{"tenant": "globex"}), "", 401, `error="invalid_token"`},
		{"alg none", "Bearer " + algNone, "", 401, `error="invalid_token"`},
		{"HS256 with the RSA public key", "Bearer " + confusion, "", 401, `error="invalid_token"`},
		{"unknown kid", "Bearer " + seg(map[string]any{"alg": "RS256", "kid": "nope"}) + "." + parts[1] + "." + parts[2], "", 401, `error="invalid_token"`},
		{"truncated", "Bearer " + good[:len(good)-10], "", 401, `error="invalid_token"`},
		{"wrong signature", "Bearer " + parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), "", 401, `error="invalid_token"`},
		{"oversized", "Bearer " + strings.Repeat("a", 20000), "", 401, `error="invalid_token"`},
		{"token in query", "", "?access_token=" + good, 400, `error="invalid_request"`},
		{"malformed header", "Bearer a b", "", 400, `error="invalid_request"`},
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodPost, aud+c.query, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.wantStatus {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.wantStatus)
		}
		if www := resp.Header.Get("WWW-Authenticate"); !strings.Contains(www, c.wantInWWW) {
			t.Errorf("%s: WWW-Authenticate %q lacks %q", c.name, www, c.wantInWWW)
		}
	}
	if n := len(g.acme.Requests()); n != 0 {
		t.Fatalf("the upstream received %d requests with bad tokens:\n%s", n, g.acme.Summary())
	}
}

// TestKeyRotationAndJWKSOutage: the provider rotates its signing key mid
// test, and later its JWKS endpoint goes down; the gateway keeps accepting
// new and still-valid tokens throughout.
func TestKeyRotationAndJWKSOutage(t *testing.T) {
	g := startAuthGateway(t)
	ctx, cancel := testContext(t, 90)
	defer cancel()
	aud := g.url("/acme/mcp")
	call := func(tok string) error {
		c, err := mcpConnect(ctx, t, g.port, aud, clientOptions{Header: bearer(tok)})
		if err != nil {
			return err
		}
		_, err = c.whoami(ctx, nil)
		return err
	}
	before, err := g.op.AgentToken(ctx, "cursor-acme", aud, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	if err := call(before); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	// Rotate, keeping the old key listed while its tokens live.
	if _, err := g.op.RotateKey(-1); err != nil {
		t.Fatal(err)
	}
	after, err := g.op.AgentToken(ctx, "cursor-acme", aud, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	if err := call(after); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if err := call(before); err != nil {
		t.Fatalf("still-valid token signed with the old key: %v", err)
	}
	// The JWKS endpoint goes down: the keys the gateway holds keep working,
	// also for tokens it has never seen.
	g.op.SetJWKSDown(true)
	fresh, err := g.op.AgentToken(ctx, "cursor-acme", aud, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	if err := call(fresh); err != nil {
		t.Fatalf("new token while the JWKS is down: %v", err)
	}
	if err := call(after); err != nil {
		t.Fatalf("known token while the JWKS is down: %v", err)
	}
}

func rsaFromJWK(t *testing.T, k map[string]any) *rsa.PublicKey {
	t.Helper()
	n, err1 := base64.RawURLEncoding.DecodeString(fmt.Sprint(k["n"]))
	e, err2 := base64.RawURLEncoding.DecodeString(fmt.Sprint(k["e"]))
	if err1 != nil || err2 != nil {
		t.Fatalf("JWKS key is not RSA: %v", k)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
}
