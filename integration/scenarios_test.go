package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// Secrets of the scenario tenants. The log scan at the end of each
// scenario looks for every one of them (and every token) in the gateway's
// output.
const (
	acmeNotionSecret = "acme-notion-client-secret-5f1d"
	acmeBillingKey   = "acme-billing-api-key-93ab"
	globexBillingKey = "globex-billing-api-key-c04e"
	agentSecret      = "agent-secret"
)

// jwtClaims decodes a JWT's payload without verifying it (the tests verify
// where it matters).
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func bearerOf(h http.Header) string {
	return strings.TrimPrefix(h.Get("Authorization"), "Bearer ")
}

// statelessCall posts one 2026-07-28 tools/call straight to the gateway.
func statelessCall(ctx context.Context, hc *http.Client, endpoint, token, tool string, extra http.Header) (int, string, error) {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"load","version":"1"}}}}`, tool)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", tool)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func assertNoSecretsLogged(t *testing.T, c *caddyProc, secrets ...string) {
	t.Helper()
	out := c.Output.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("the gateway's log contains a secret or token (%.12s...)", s)
		}
	}
}

// TestScenario1InternalAndThirdParty is the SPEC's first scenario: one
// public host; /acme/notion/mcp reaches a third-party server with acme's
// OAuth client-credentials token; /acme/tools/mcp reaches an internal server
// with a resource token the gateway mints; a partners agent gets only
// mcp:read tools on either.
func TestScenario1InternalAndThirdParty(t *testing.T) {
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "acme-notion", Secret: acmeNotionSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"read_content", "update_content"}},
		oidctest.Client{ID: "partner-bot", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read", "mcp:write"}, Groups: []string{"partners"}, Subject: "partner-user"},
		oidctest.Client{ID: "cursor-acme", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read", "mcp:write"}, Groups: []string{"internal-tools"}, Subject: "alice"},
	))
	notion, tools := newUpstream(t, "notion"), newUpstream(t, "tools")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %[1]s
	resource_tokens {
		issuer %[2]s
		ttl 5m
	}
	tenant acme {
		connection notion {
			oauth2 {
				token_url %[3]s
				client_id acme-notion
				client_secret %[4]s
				auth_method client_secret_basic
				scopes read_content
			}
			scope_map mcp:read read_content
			scope_map mcp:write update_content
		}
	}
	policy internal {
		allow
		agents group:internal-tools
		scopes mcp:read mcp:write
	}
	policy partners {
		allow
		agents group:partners
		scopes mcp:read
	}
}`, op.Issuer(), base, op.TokenURL(), acmeNotionSecret),
		Sites: fmt.Sprintf(`%[1]s {
	mcp_gateway {
		server acme-notion {
			tenant acme
			path /acme/notion/mcp
			upstream %[2]s
			connection notion
			require mcp:read
			tool countdown mcp:write
			tool sleep mcp:write
			tool * mcp:read
		}
		server acme-tools {
			tenant acme
			path /acme/tools/mcp
			upstream %[3]s
			require mcp:read
			tool countdown mcp:write
			tool sleep mcp:write
			tool * mcp:read
		}
	}
}`, base, notion.URL, tools.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 120)
	defer cancel()
	var secrets []string

	// 200 concurrent calls on a cold cache: exactly one token request.
	partnerNotion, err := op.AgentToken(ctx, "partner-bot", base+"/acme/notion/mcp", "mcp:read", "mcp:write")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, partnerNotion)
	before := op.TokenRequests("acme-notion")
	hc := newLoopbackClient(port, nil).Client
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := statelessCall(ctx, hc, base+"/acme/notion/mcp", partnerNotion, "whoami", nil)
			if err != nil || status != 200 || !strings.Contains(body, "upstream=notion") {
				errs <- fmt.Sprintf("%d %v %.200s", status, err, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("concurrent call failed: %s", e)
	}
	if n := op.TokenRequests("acme-notion") - before; n != 1 {
		t.Fatalf("200 concurrent calls on a cold cache caused %d token requests, want 1", n)
	}

	// The third-party server got acme's connection token, for exactly the
	// mapped scopes, and never the agent's token.
	for _, r := range notion.Requests() {
		tok := bearerOf(r.Header)
		if tok == partnerNotion {
			t.Fatal("the agent's token reached the third-party upstream")
		}
		cl := jwtClaims(t, tok)
		if cl["client_id"] != "acme-notion" || cl["scope"] != "read_content" {
			t.Fatalf("third-party upstream got a token with client_id=%v scope=%v", cl["client_id"], cl["scope"])
		}
		secrets = append(secrets, tok)
	}

	// The partner sees only mcp:read tools on either server, under both
	// protocol generations, and a write tool is an unknown tool to it.
	for _, path := range []string{"/acme/notion/mcp", "/acme/tools/mcp"} {
		tok, err := op.AgentToken(ctx, "partner-bot", base+path, "mcp:read", "mcp:write")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, tok)
		for _, rev := range []string{"", rev20251125} {
			cl := mustConnect(ctx, t, port, base+path, clientOptions{Revision: rev, Header: bearer(tok)})
			names, err := cl.toolNames(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(names, "countdown") || slices.Contains(names, "sleep") || !slices.Contains(names, "whoami") {
				t.Fatalf("%s %s: partner sees tools %v", path, revisionName(rev), names)
			}
			res, err := cl.CallTool(ctx, &mcp.CallToolParams{Name: "sleep", Arguments: map[string]any{"ms": 1}})
			if err == nil && (res == nil || !res.IsError) {
				t.Fatalf("%s %s: partner called a write tool", path, revisionName(rev))
			}
			if err != nil && !strings.Contains(err.Error(), "Unknown tool: sleep") {
				t.Fatalf("%s %s: write tool error %v", path, revisionName(rev), err)
			}
		}
	}
	for _, u := range []*upstream{notion, tools} {
		if got := u.RequestsWith("Mcp-Name", "sleep"); len(got) != 0 {
			t.Fatalf("%s received a denied tools/call", u.Name)
		}
	}

	// The internal agent reaches the internal server, which receives a
	// resource token minted for it, verifiable with the gateway's JWKS.
	alice, err := op.AgentToken(ctx, "cursor-acme", base+"/acme/tools/mcp", "mcp:read", "mcp:write")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, alice)
	cl := mustConnect(ctx, t, port, base+"/acme/tools/mcp", clientOptions{Header: bearer(alice)})
	who, err := cl.whoami(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt := bearerOf(http.Header(who.Headers))
	secrets = append(secrets, rt)
	set, err := jwk.Fetch(ctx, base+"/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(rt), jwt.WithKeySet(set), jwt.WithIssuer(base), jwt.WithAudience(strings.TrimSuffix(tools.URL, "/upstream/mcp")))
	if err != nil {
		t.Fatalf("the internal server's token does not verify with the gateway's JWKS: %v", err)
	}
	if parsed.Subject() != "alice" {
		t.Errorf("resource token sub %q", parsed.Subject())
	}
	if v, _ := parsed.Get("tenant"); v != "acme" {
		t.Errorf("resource token tenant %v", v)
	}
	if v, _ := parsed.Get("scope"); v != "mcp:read mcp:write" {
		t.Errorf("resource token scope %v", v)
	}
	assertNoSecretsLogged(t, c, append(secrets, acmeNotionSecret, agentSecret)...)
}

// TestScenario2ServerPerCustomer is the SPEC's second scenario: acme and
// globex each have their own host, audience, branding and connections on
// the same upstream code; the internal server exchanges its resource token
// at the gateway for its tenant's API key (API B) and for a resource token
// for API A; globex's agent can never obtain anything of acme's.
func TestScenario2ServerPerCustomer(t *testing.T) {
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "acme-agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Groups: []string{"customers"}, Subject: "acme-user", Tenant: "acme"},
		oidctest.Client{ID: "globex-agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Groups: []string{"customers"}, Subject: "globex-user", Tenant: "globex"},
	))
	acmeUp, globexUp := newUpstream(t, "acme-internal"), newUpstream(t, "globex-internal")
	acmeBilling, globexBilling := newUpstream(t, "acme-billing"), newUpstream(t, "globex-billing")
	// One backend for every customer behind per-customer servers: their
	// identical reverse_proxy configurations share one provisioned proxy.
	sharedBackend := newUpstream(t, "shared-backend")
	port := freePort(t)
	c := startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %[1]s {
		tenant_claim tenant
	}
	resource_tokens {
		issuer https://mcp.example.com
	}
	tenant acme {
		connection billing {
			api_key X-Api-Key %[2]s
			header X-Tenant acme
		}
		connection api-a {
			resource_token {
				audience https://api-a.example
				ttl 2m
			}
		}
	}
	tenant globex {
		connection billing {
			api_key X-Api-Key %[3]s
		}
		connection api-a {
			resource_token {
				audience https://api-a.example
			}
		}
	}
	policy customers {
		allow
		agents group:customers
		scopes mcp:read
	}
}`, op.Issuer(), acmeBillingKey, globexBillingKey),
		Sites: fmt.Sprintf(`http://:%[1]d {
	mcp_gateway {
		token_endpoint /oauth2/token
		server acme {
			tenant acme
			host acme.test
			upstream %[2]s
			require mcp:read
			branding {
				name "Acme MCP"
			}
		}
		server globex {
			tenant globex
			host globex.test
			upstream %[3]s
			require mcp:read
			branding {
				name "Globex MCP"
			}
		}
		server acme-billing {
			tenant acme
			host acme.test
			path /billing/mcp
			upstream %[4]s
			connection billing
			require mcp:read
		}
		server globex-billing {
			tenant globex
			host globex.test
			path /billing/mcp
			upstream %[5]s
			connection billing
			require mcp:read
		}
		server acme-shared {
			tenant acme
			host acme.test
			path /shared/mcp
			upstream %[6]s
			connection billing
			require mcp:read
		}
		server globex-shared {
			tenant globex
			host globex.test
			path /shared/mcp
			upstream %[6]s
			connection billing
			require mcp:read
		}
	}
}`, port, acmeUp.URL, globexUp.URL, acmeBilling.URL, globexBilling.URL, sharedBackend.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 120)
	defer cancel()
	hc := newLoopbackClient(port, nil).Client
	acmeURL := fmt.Sprintf("http://acme.test:%d", port)
	globexURL := fmt.Sprintf("http://globex.test:%d", port)
	secrets := []string{acmeBillingKey, globexBillingKey, agentSecret}

	token := func(client, aud string) string {
		tok, err := op.AgentToken(ctx, client, aud, "mcp:read")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, tok)
		return tok
	}
	acmeTok := token("acme-agent", acmeURL+"/mcp")
	globexTok := token("globex-agent", globexURL+"/mcp")

	// Separate audiences: each tenant's token opens only its own server.
	if st, _, _ := statelessCall(ctx, hc, globexURL+"/mcp", acmeTok, "whoami", nil); st != 401 {
		t.Fatalf("acme's token at globex's server: %d", st)
	}
	// Separate branding in the metadata.
	for host, name := range map[string]string{acmeURL: "Acme MCP", globexURL: "Globex MCP"} {
		resp, err := hc.Get(host + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if md["resource_name"] != name || md["resource"] != host+"/mcp" {
			t.Errorf("%s metadata: %v", host, md)
		}
	}

	// The internal server receives a resource token, and exchanges it at
	// the gateway for its tenant's API key and a token for API A.
	resourceTokenOf := func(endpoint, agentTok string, up *upstream) string {
		cl := mustConnect(ctx, t, port, endpoint, clientOptions{Header: bearer(agentTok)})
		who, err := cl.whoami(ctx, nil)
		if err != nil || who.Upstream != up.Name {
			t.Fatalf("%s: %+v %v", endpoint, who, err)
		}
		rt := bearerOf(http.Header(who.Headers))
		secrets = append(secrets, rt)
		return rt
	}
	acmeRT := resourceTokenOf(acmeURL+"/mcp", acmeTok, acmeUp)
	globexRT := resourceTokenOf(globexURL+"/mcp", globexTok, globexUp)

	exchange := func(subject string, params url.Values) (int, map[string]any) {
		form := url.Values{
			"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":      {subject},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		}
		for k, v := range params {
			form[k] = v
		}
		resp, err := hc.PostForm(acmeURL+"/oauth2/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	st, m := exchange(acmeRT, url.Values{"audience": {"billing"}})
	if st != 200 || m["access_token"] != acmeBillingKey || m["token_type"] != "N_A" || m["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" {
		t.Fatalf("acme API key exchange: %d %v", st, m)
	}
	st, m = exchange(acmeRT, url.Values{"resource": {"https://api-a.example"}, "scope": {"mcp:read"}})
	if st != 200 || m["token_type"] != "Bearer" {
		t.Fatalf("acme API A exchange: %d %v", st, m)
	}
	apiA := m["access_token"].(string)
	secrets = append(secrets, apiA)
	if cl := jwtClaims(t, apiA); cl["aud"] != "https://api-a.example" || cl["tenant"] != "acme" || cl["sub"] != "acme-user" {
		t.Fatalf("API A token claims %v", cl)
	}
	// globex gets globex's key, never acme's: by connection name, by a
	// foreign resource, or with a tampered or acme-scoped request.
	if st, m := exchange(globexRT, url.Values{"audience": {"billing"}}); st != 200 || m["access_token"] != globexBillingKey {
		t.Fatalf("globex API key exchange: %d %v", st, m)
	}
	for name, c := range map[string]struct {
		subject string
		params  url.Values
		status  int
		code    string
	}{
		"unknown connection":      {globexRT, url.Values{"audience": {"notion"}}, 400, "invalid_target"},
		"unknown resource":        {globexRT, url.Values{"resource": {"https://api-b.example"}}, 400, "invalid_target"},
		"scope the agent lacks":   {globexRT, url.Values{"audience": {"billing"}, "scope": {"mcp:admin"}}, 400, "invalid_scope"},
		"agent token as subject":  {globexTok, url.Values{"audience": {"billing"}}, 400, "invalid_grant"},
		"tampered resource token": {globexRT[:len(globexRT)-4] + "AAAA", url.Values{"audience": {"billing"}}, 400, "invalid_grant"},
		"both targets":            {globexRT, url.Values{"audience": {"billing"}, "resource": {"https://api-a.example"}}, 400, "invalid_request"},
	} {
		st, m := exchange(c.subject, c.params)
		if st != c.status || m["error"] != c.code || m["access_token"] != nil {
			t.Errorf("%s: %d %v", name, st, m)
		}
	}

	// 500 interleaved concurrent calls from both tenants each carry only
	// their own tenant's credential; a client-sent X-Api-Key never arrives.
	// Then the same through the two servers in front of one shared backend.
	interleave := func(path string, n int) {
		var wg sync.WaitGroup
		failed := make(chan string, n)
		acmeTok, globexTok := token("acme-agent", acmeURL+path), token("globex-agent", globexURL+path)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ep, tok, who := acmeURL+path, acmeTok, fmt.Sprintf("acme-%d", i)
				if i%2 == 1 {
					ep, tok, who = globexURL+path, globexTok, fmt.Sprintf("globex-%d", i)
				}
				st, body, err := statelessCall(ctx, hc, ep, tok, "whoami", http.Header{
					"X-Api-Key": {"client-forged-key"}, "Cookie": {"sid=client"}, "X-Test-Client": {who}})
				if err != nil || st != 200 {
					failed <- fmt.Sprintf("%s: %d %v %.200s", ep, st, err, body)
				}
			}(i)
		}
		wg.Wait()
		close(failed)
		for f := range failed {
			t.Fatalf("interleaved call failed: %s", f)
		}
	}
	interleave("/billing/mcp", 500)
	for up, key := range map[*upstream]string{acmeBilling: acmeBillingKey, globexBilling: globexBillingKey} {
		reqs := up.Requests()
		if len(reqs) < 250 {
			t.Fatalf("%s saw %d requests, want >= 250", up.Name, len(reqs))
		}
		for _, r := range reqs {
			if got := r.Header.Values("X-Api-Key"); len(got) != 1 || got[0] != key {
				t.Fatalf("%s received X-Api-Key %v", up.Name, got)
			}
			if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
				t.Fatalf("%s received the client's Authorization or Cookie", up.Name)
			}
		}
	}
	interleave("/shared/mcp", 400)
	sharedReqs := sharedBackend.Requests()
	if len(sharedReqs) < 400 {
		t.Fatalf("the shared backend saw %d requests, want >= 400", len(sharedReqs))
	}
	for _, r := range sharedReqs {
		who := r.Header.Get("X-Test-Client")
		want := map[bool]string{true: acmeBillingKey, false: globexBillingKey}[strings.HasPrefix(who, "acme-")]
		if got := r.Header.Values("X-Api-Key"); len(got) != 1 || got[0] != want || who == "" {
			t.Fatalf("shared backend: the call of %q arrived with X-Api-Key %.12v", who, got)
		}
		if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
			t.Fatalf("shared backend received the client's Authorization or Cookie")
		}
	}
	if got := acmeBilling.Requests()[0].Header.Get("X-Tenant"); got != "acme" {
		t.Errorf("extra header X-Tenant = %q", got)
	}
	assertNoSecretsLogged(t, c, secrets...)
}
