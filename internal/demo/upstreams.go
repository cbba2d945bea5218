package demo

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// mcpHandler serves an MCP server at /mcp (Streamable HTTP, sessions on). wrap, if set, guards
// the endpoint (e.g. the notion-like server's own token check).
//
// The SDK's DNS-rebinding protection is off: these upstreams sit behind the gateway, which
// checks Origin and routes by Host (a host-routed server such as acme.localhost would
// otherwise be refused here).
func mcpHandler(s *mcp.Server, wrap func(http.Handler) http.Handler) http.Handler {
	var h http.Handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{DisableLocalhostProtection: true})
	if wrap != nil {
		h = wrap(h)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	return mux
}

func text(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

func toolError(format string, args ...any) *mcp.CallToolResult {
	r := text(format, args...)
	r.IsError = true
	return r
}

func header(req *mcp.CallToolRequest) http.Header {
	if req.Extra != nil && req.Extra.Header != nil {
		return req.Extra.Header
	}
	return http.Header{}
}

func bearer(h http.Header) string {
	v := h.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// --- the notion-like third-party server

type page struct {
	ID, Title, Content string
}

type idArgs struct {
	ID string `json:"id" jsonschema:"the page id"`
}
type searchArgs struct {
	Query string `json:"query" jsonschema:"words to look for"`
}
type updateArgs struct {
	ID      string `json:"id" jsonschema:"the page id"`
	Content string `json:"content" jsonschema:"the new content"`
}
type createArgs struct {
	Title   string `json:"title"`
	Content string `json:"content"`
}

// requireASToken makes the notion-like server behave like a real third-party API: it accepts
// only access tokens of the demo authorization server whose audience is this server.
func requireASToken(as *oidctest.Provider, audience string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			claims, err := as.Verify(bearer(r.Header))
			if err == nil && !slices.Contains(audienceOf(claims), audience) {
				err = fmt.Errorf("token audience %v is not %s", claims["aud"], audience)
			}
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				http.Error(w, "notion-like: "+err.Error(), http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func audienceOf(claims map[string]any) []string {
	switch a := claims["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// hasScope reads the downstream scopes the gateway asked the AS for (scope_map).
func hasScope(req *mcp.CallToolRequest, scope string) bool {
	claims := unverifiedClaims(bearer(header(req)))
	s, _ := claims["scope"].(string)
	return slices.Contains(strings.Fields(s), scope)
}

func newNotionServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "notion-like", Title: "Notion-like workspace (third-party)", Version: "1.0.0"}, nil)
	var mu sync.Mutex
	pages := map[string]*page{
		"p1": {ID: "p1", Title: "Roadmap", Content: "Q3: ship the MCP gateway."},
		"p2": {ID: "p2", Title: "On-call", Content: "Pager rotation: alice, bob."},
	}
	next := 3
	mcp.AddTool(s, &mcp.Tool{Name: "search", Description: "Search pages (needs read_content)"},
		func(_ context.Context, req *mcp.CallToolRequest, in searchArgs) (*mcp.CallToolResult, any, error) {
			if !hasScope(req, "read_content") {
				return toolError("notion-like: token lacks read_content"), nil, nil
			}
			mu.Lock()
			defer mu.Unlock()
			var hits []string
			for _, p := range pages {
				if in.Query == "" || strings.Contains(strings.ToLower(p.Title+" "+p.Content), strings.ToLower(in.Query)) {
					hits = append(hits, p.ID+": "+p.Title)
				}
			}
			sort.Strings(hits)
			return text("%d page(s)\n%s", len(hits), strings.Join(hits, "\n")), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "get_page", Description: "Read a page (needs read_content)"},
		func(_ context.Context, req *mcp.CallToolRequest, in idArgs) (*mcp.CallToolResult, any, error) {
			if !hasScope(req, "read_content") {
				return toolError("notion-like: token lacks read_content"), nil, nil
			}
			mu.Lock()
			defer mu.Unlock()
			p, ok := pages[in.ID]
			if !ok {
				return toolError("no page %q", in.ID), nil, nil
			}
			return text("# %s\n%s", p.Title, p.Content), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "update_page", Description: "Replace a page's content (needs update_content)"},
		func(_ context.Context, req *mcp.CallToolRequest, in updateArgs) (*mcp.CallToolResult, any, error) {
			if !hasScope(req, "update_content") {
				return toolError("notion-like: token lacks update_content"), nil, nil
			}
			mu.Lock()
			defer mu.Unlock()
			p, ok := pages[in.ID]
			if !ok {
				return toolError("no page %q", in.ID), nil, nil
			}
			p.Content = in.Content
			return text("updated %s", p.ID), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "create_page", Description: "Create a page (needs insert_content)"},
		func(_ context.Context, req *mcp.CallToolRequest, in createArgs) (*mcp.CallToolResult, any, error) {
			if !hasScope(req, "insert_content") {
				return toolError("notion-like: token lacks insert_content"), nil, nil
			}
			mu.Lock()
			defer mu.Unlock()
			id := fmt.Sprintf("p%d", next)
			next++
			pages[id] = &page{ID: id, Title: in.Title, Content: in.Content}
			return text("created %s", id), nil, nil
		})
	return s
}

// --- the internal tools server

type echoArgs struct {
	Text string `json:"text"`
}
type deployArgs struct {
	Service string `json:"service" jsonschema:"what to deploy"`
}

func newToolsServer(jwks *jwksVerifier) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "tools", Title: "Internal tools", Version: "1.0.0"}, nil)
	addWhoami(s, jwks)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echo a text"},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
			return text("%s", in.Text), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "deploy", Description: "Pretend to deploy a service (a write)"},
		func(_ context.Context, req *mcp.CallToolRequest, in deployArgs) (*mcp.CallToolResult, any, error) {
			c := unverifiedClaims(bearer(header(req)))
			return text("deploying %q for %v (agent %v)", in.Service, c["sub"], c["client_id"]), nil, nil
		})
	return s
}

// addWhoami adds a tool that shows what the upstream received: which credential, and the claims
// of a gateway resource token (checked against the gateway's JWKS). Secrets are shown as a
// hash prefix only.
func addWhoami(s *mcp.Server, jwks *jwksVerifier) {
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Show the credential this upstream received from the gateway"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return text("%s", describeCredential(ctx, header(req), jwks)), nil, nil
		})
}

func describeCredential(ctx context.Context, h http.Header, jwks *jwksVerifier) string {
	var b strings.Builder
	switch tok := bearer(h); {
	case tok != "":
		claims := unverifiedClaims(tok)
		fmt.Fprintf(&b, "Authorization: Bearer JWT (sha256 %s…)\n", hashPrefix(tok))
		for _, k := range []string{"iss", "sub", "aud", "client_id", "tenant", "scope", "exp"} {
			if v, ok := claims[k]; ok {
				fmt.Fprintf(&b, "  %s: %v\n", k, v)
			}
		}
		if jwks != nil {
			if _, err := jwks.verify(ctx, tok); err != nil {
				fmt.Fprintf(&b, "  signature: NOT verified against %s (%v)\n", jwks.url, err)
			} else {
				fmt.Fprintf(&b, "  signature: verified against %s\n", jwks.url)
			}
		}
	case h.Get("Authorization") != "":
		fmt.Fprintf(&b, "Authorization: %s… (not a bearer token)\n", hashPrefix(h.Get("Authorization")))
	default:
		b.WriteString("no Authorization header\n")
	}
	for _, k := range []string{"X-Api-Key", "X-Tenant", "Cookie"} {
		if v := h.Get(k); v != "" {
			fmt.Fprintf(&b, "%s: present (sha256 %s…)\n", k, hashPrefix(v))
		}
	}
	return b.String()
}

func hashPrefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// unverifiedClaims decodes a JWT payload without checking it (display only).
func unverifiedClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c map[string]any
	_ = json.Unmarshal(raw, &c)
	return c
}

// --- the per-customer server (same code for every tenant; scenario 2)

type exchangeFunc func(ctx context.Context, subjectToken, audience, scope string) (token, tokenType string, err error)

func newCustomerServer(tenant string, exchange exchangeFunc, billingURL, analyticsURL string, jwks *jwksVerifier) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "customer-" + tenant, Title: "Customer server (" + tenant + ")", Version: "1.0.0"}, nil)
	addWhoami(s, jwks)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(ctx context.Context, url, hdr, val string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set(hdr, val)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s answered %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return string(body), nil
	}
	mcp.AddTool(s, &mcp.Tool{Name: "list_invoices",
		Description: "The tenant's invoices from the billing API: exchanges this server's resource token at the gateway for the tenant's billing API key"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			key, typ, err := exchange(ctx, bearer(header(req)), "billing", "")
			if err != nil {
				return toolError("token exchange for the billing connection failed: %v", err), nil, nil
			}
			body, err := get(ctx, billingURL+"/invoices", "X-Api-Key", key)
			if err != nil {
				return toolError("billing API: %v", err), nil, nil
			}
			return text("(%s: got a %s credential from the gateway's token endpoint)\n%s", tenant, typ, body), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "usage_report",
		Description: "Usage from the analytics API: exchanges this server's resource token at the gateway for a resource token for the analytics API"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			tok, _, err := exchange(ctx, bearer(header(req)), "analytics", "")
			if err != nil {
				return toolError("token exchange for the analytics connection failed: %v", err), nil, nil
			}
			body, err := get(ctx, analyticsURL+"/usage", "Authorization", "Bearer "+tok)
			if err != nil {
				return toolError("analytics API: %v", err), nil, nil
			}
			return text("%s", body), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "profile", Description: "This customer's profile"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return text("customer %s: plan enterprise, region eu-west", tenant), nil, nil
		})
	return s
}

// billingAPI ("API B") answers GET /invoices for the tenant whose API key is presented.
func billingAPI(keys map[string]string) http.Handler {
	invoices := map[string][]string{
		"acme":   {"INV-1001 acme 1200.00 EUR paid", "INV-1002 acme 310.50 EUR open"},
		"globex": {"INV-2001 globex 99.00 USD open"},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /invoices", func(w http.ResponseWriter, r *http.Request) {
		tenant, ok := keys[r.Header.Get("X-Api-Key")]
		if !ok {
			http.Error(w, "billing: missing or unknown X-Api-Key", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "billing API: tenant %s (X-Tenant header: %q)\n%s\n", tenant, r.Header.Get("X-Tenant"), strings.Join(invoices[tenant], "\n"))
	})
	return mux
}

// analyticsAPI ("API A") accepts only gateway resource tokens whose audience is itself.
func analyticsAPI(jwks *jwksVerifier, self string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /usage", func(w http.ResponseWriter, r *http.Request) {
		claims, err := jwks.verify(r.Context(), bearer(r.Header))
		if err == nil && !slices.Contains(audienceOf(claims), self) {
			err = fmt.Errorf("audience %v is not %s", claims["aud"], self)
		}
		if err != nil {
			http.Error(w, "analytics: "+err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "analytics API: tenant %v, agent %v: %d tool calls this week\n", claims["tenant"], claims["client_id"], 40+rand.IntN(60))
	})
	return mux
}

// --- the public demo server (anonymous)

type diceArgs struct {
	Sides int `json:"sides,omitempty" jsonschema:"number of sides (default 6)"`
}

func newPublicServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "public-demo", Title: "Public demo", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echo a text"},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
			return text("%s", in.Text), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "roll_dice", Description: "Roll a die"},
		func(_ context.Context, _ *mcp.CallToolRequest, in diceArgs) (*mcp.CallToolResult, any, error) {
			if in.Sides <= 0 {
				in.Sides = 6
			}
			return text("%d", 1+rand.IntN(in.Sides)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "time", Description: "The server's time (UTC)"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return text("%s", time.Now().UTC().Format(time.RFC3339)), nil, nil
		})
	return s
}

// --- checking gateway resource tokens

// jwksVerifier verifies JWTs against a JWKS URL (the gateway's), refetching at most every 10s
// and when a kid is unknown.
type jwksVerifier struct {
	url     string
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	fetched time.Time
}

func (v *jwksVerifier) verify(ctx context.Context, token string) (map[string]any, error) {
	if token == "" {
		return nil, errors.New("no bearer token")
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := v.keys(ctx, kid)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		payload, err := jws.Verify(k)
		if err != nil {
			continue
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			return nil, err
		}
		if exp, ok := claims["exp"].(float64); !ok || exp < float64(time.Now().Unix()) {
			return nil, errors.New("expired")
		}
		return claims, nil
	}
	return nil, errors.New("signature does not verify")
}

func (v *jwksVerifier) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ks := v.set.Key(kid); len(ks) > 0 {
		return ks, nil
	}
	if time.Since(v.fetched) > 10*time.Second || len(v.set.Keys) == 0 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("JWKS %s: %d", v.url, resp.StatusCode)
		}
		var set jose.JSONWebKeySet
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			return nil, err
		}
		v.set, v.fetched = set, time.Now()
	}
	if ks := v.set.Key(kid); len(ks) > 0 {
		return ks, nil
	}
	return nil, fmt.Errorf("kid %q not in %s", kid, v.url)
}
