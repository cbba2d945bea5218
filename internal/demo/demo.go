// Package demo runs the local parts of the gateway demo (Caddyfile.example) in one process: a
// real OAuth authorization server (internal/oidctest), upstream MCP servers written with the
// official Go SDK, and two small HTTP APIs the per-customer server reaches through the
// gateway's token endpoint (SPEC scenario 2). cmd/mcp-demo starts these and then Caddy.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// Ports of the demo parts. Zero means a free port (tests).
type Ports struct {
	AS        int // OAuth authorization server (issuer of agent tokens and the notion connection's tokens)
	Notion    int // "notion-like" third-party MCP server (wants OAuth tokens of the demo AS)
	Tools     int // internal "tools" MCP server (gets gateway resource tokens)
	Acme      int // per-customer MCP server, acme's instance
	Globex    int // per-customer MCP server, globex's instance (same code)
	Billing   int // billing HTTP API ("API B", API keys)
	Analytics int // analytics HTTP API ("API A", gateway resource tokens)
	Public    int // public demo MCP server (behind an anonymous gateway server)
}

// DefaultPorts are the fixed loopback ports Caddyfile.example expects.
var DefaultPorts = Ports{AS: 9400, Notion: 9401, Tools: 9402, Acme: 9403, Globex: 9404, Billing: 9405, Analytics: 9406, Public: 9407}

// Demo credentials. They are the defaults in Caddyfile.example; nothing here is secret.
const (
	NotionClientID     = "acme-notion-gateway"
	NotionClientSecret = "demo-acme-notion-secret"
	AcmeBillingKey     = "demo-acme-billing-key"
	GlobexBillingKey   = "demo-globex-billing-key"
)

// Agent is a preset demo agent registered at the authorization server.
type Agent struct {
	ID     string
	Groups []string
	Tenant string
	About  string
}

// Agents are registered at start; `mcp-demo token` can register more.
var Agents = []Agent{
	{ID: "cursor-acme", Groups: []string{"internal-tools"}, Tenant: "acme", About: "acme's internal coding agent: read and write on acme's servers"},
	{ID: "partner-bot", Groups: []string{"partners"}, Tenant: "acme", About: "a partner's agent: only mcp:read tools on acme-notion and acme-tools"},
	{ID: "globex-agent", Groups: []string{"staff"}, Tenant: "globex", About: "globex's agent: globex's server only"},
}

// AgentSecret is the client secret of a demo agent.
func AgentSecret(id string) string { return "demo-secret-" + id }

// Config configures Start.
type Config struct {
	// Host to listen on; default 127.0.0.1.
	Host  string
	Ports Ports
	// GatewayURL is where the gateway serves (its token endpoint, its JWKS); default
	// http://localhost:8080.
	GatewayURL string
	// TokenEndpointPath is the gateway's token_endpoint; default /oauth2/token.
	TokenEndpointPath string
	Logger            *slog.Logger
}

// Demo is the running set of demo parts.
type Demo struct {
	AS  *oidctest.Provider
	cfg Config
	// URLs of the parts (MCP endpoints end in /mcp).
	ASURL, NotionURL, ToolsURL, AcmeURL, GlobexURL, BillingURL, AnalyticsURL, PublicURL string

	servers []*http.Server
	log     *slog.Logger
}

// Start listens on every port first (so a busy port fails fast), then serves.
func Start(cfg Config) (*Demo, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = "http://localhost:8080"
	}
	cfg.GatewayURL = strings.TrimRight(cfg.GatewayURL, "/")
	if cfg.TokenEndpointPath == "" {
		cfg.TokenEndpointPath = "/oauth2/token"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Demo{cfg: cfg, log: cfg.Logger}
	type part struct {
		port int
		name string
		url  *string
		ln   net.Listener
	}
	parts := []*part{
		{port: cfg.Ports.AS, name: "authorization server", url: &d.ASURL},
		{port: cfg.Ports.Notion, name: "notion-like", url: &d.NotionURL},
		{port: cfg.Ports.Tools, name: "tools", url: &d.ToolsURL},
		{port: cfg.Ports.Acme, name: "acme customer", url: &d.AcmeURL},
		{port: cfg.Ports.Globex, name: "globex customer", url: &d.GlobexURL},
		{port: cfg.Ports.Billing, name: "billing API", url: &d.BillingURL},
		{port: cfg.Ports.Analytics, name: "analytics API", url: &d.AnalyticsURL},
		{port: cfg.Ports.Public, name: "public demo", url: &d.PublicURL},
	}
	for _, p := range parts {
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(p.port)))
		if err != nil {
			for _, q := range parts {
				if q.ln != nil {
					q.ln.Close()
				}
			}
			return nil, fmt.Errorf("demo: %s on port %d: %w", p.name, p.port, err)
		}
		p.ln = ln
		*p.url = "http://" + ln.Addr().String()
	}
	mcpURL := func(base string) string { return base + "/mcp" }

	as, err := oidctest.New(d.ASURL)
	if err != nil {
		return nil, err
	}
	d.AS = as
	for _, a := range Agents {
		as.RegisterClient(agentClient(a.ID, a.Groups, a.Tenant))
	}
	// The gateway's OAuth client for acme's notion connection: client credentials, downstream
	// scopes of the notion-like server, tokens audience-bound to it.
	as.RegisterClient(oidctest.Client{
		ID: NotionClientID, Secret: NotionClientSecret,
		GrantTypes: []string{oidctest.GrantClientCredentials, oidctest.GrantRefreshToken, oidctest.GrantTokenExchange},
		Scopes:     []string{"read_content", "update_content", "insert_content"},
		Audience:   []string{mcpURL(d.NotionURL)},
		Tenant:     "acme",
	})
	asMux := http.NewServeMux()
	asMux.Handle("/demo/agents", d.registerAgentHandler())
	asMux.Handle("/", as.Handler())

	jwks := &jwksVerifier{url: cfg.GatewayURL + "/.well-known/jwks.json"}
	handlers := []http.Handler{
		asMux,
		mcpHandler(newNotionServer(), requireASToken(as, mcpURL(d.NotionURL))),
		mcpHandler(newToolsServer(jwks), nil),
		mcpHandler(newCustomerServer("acme", d.exchanger(), d.BillingURL, d.AnalyticsURL, jwks), nil),
		mcpHandler(newCustomerServer("globex", d.exchanger(), d.BillingURL, d.AnalyticsURL, jwks), nil),
		billingAPI(map[string]string{AcmeBillingKey: "acme", GlobexBillingKey: "globex"}),
		analyticsAPI(jwks, d.AnalyticsURL),
		mcpHandler(newPublicServer(), nil),
	}
	for i, p := range parts {
		srv := &http.Server{Handler: logRequests(d.log, p.name, handlers[i]), ReadHeaderTimeout: 10 * time.Second}
		d.servers = append(d.servers, srv)
		go srv.Serve(p.ln)
	}
	return d, nil
}

// Close stops every part.
func (d *Demo) Close() {
	for _, s := range d.servers {
		s.Close()
	}
}

func agentClient(id string, groups []string, tenant string) oidctest.Client {
	return oidctest.Client{
		ID: id, Secret: AgentSecret(id),
		GrantTypes: []string{oidctest.GrantClientCredentials},
		Groups:     groups, Tenant: tenant,
	}
}

// registerAgentHandler: POST /demo/agents {"id","groups","tenant"} registers (or updates) a
// demo agent and answers {"client_id","client_secret"}. Demo only: it lets anyone on loopback
// make an agent of any group; never trust this authorization server outside the demo.
func (d *Demo) registerAgentHandler() http.Handler {
	var mu sync.Mutex
	known := map[string]Agent{}
	for _, a := range Agents {
		known[a.ID] = a
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		var in struct {
			ID     string   `json:"id"`
			Groups []string `json:"groups"`
			Tenant string   `json:"tenant"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil || in.ID == "" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		a := known[in.ID]
		a.ID = in.ID
		if in.Groups != nil {
			a.Groups = in.Groups
		}
		if in.Tenant != "" {
			a.Tenant = in.Tenant
		}
		known[in.ID] = a
		mu.Unlock()
		d.AS.RegisterClient(agentClient(a.ID, a.Groups, a.Tenant))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"client_id": a.ID, "client_secret": AgentSecret(a.ID), "groups": a.Groups, "tenant": a.Tenant})
	})
}

// exchanger returns what the per-customer server uses to exchange its resource token at the
// gateway's token endpoint (RFC 8693).
func (d *Demo) exchanger() exchangeFunc {
	endpoint := d.cfg.GatewayURL + d.cfg.TokenEndpointPath
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context, subjectToken, audience, scope string) (string, string, error) {
		form := url.Values{
			"grant_type":         {oidctest.GrantTokenExchange},
			"subject_token":      {subjectToken},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"audience":           {audience},
		}
		if scope != "" {
			form.Set("scope", scope)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return "", "", err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return "", "", fmt.Errorf("gateway token endpoint %s: %w", endpoint, err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = json.Unmarshal(body, &out)
		if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
			if out.Error == "" {
				out.Error = strings.TrimSpace(string(body))
			}
			if resp.StatusCode == http.StatusOK {
				out.Error = "without an access_token (is the gateway's token_endpoint on?)"
			}
			return "", "", fmt.Errorf("gateway token endpoint answered %d %s %s", resp.StatusCode, out.Error, out.Description)
		}
		return out.AccessToken, out.TokenType, nil
	}
}

func logRequests(log *slog.Logger, name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		log.Debug("demo request", "part", name, "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
	})
}

// RequestAgentToken is the client side of `mcp-demo token`: it registers (or updates) the agent
// at the demo authorization server, then runs a real client-credentials grant for resource
// (RFC 8707) and scopes, and returns the access token (a JWT).
func RequestAgentToken(ctx context.Context, asURL, agent string, groups []string, tenant, resource, scope string) (string, error) {
	asURL = strings.TrimRight(asURL, "/")
	reg, _ := json.Marshal(map[string]any{"id": agent, "groups": groups, "tenant": tenant})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, asURL+"/demo/agents", strings.NewReader(string(reg)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("demo authorization server at %s (is `go run ./cmd/mcp-demo` running?): %w", asURL, err)
	}
	var creds struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	err = json.NewDecoder(resp.Body).Decode(&creds)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registering agent: %d %v", resp.StatusCode, err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, asURL+oidctest.TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(creds.ClientID, creds.ClientSecret)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return "", err
	}
	if tok.AccessToken == "" {
		return "", errors.New("token endpoint: " + tok.Error + " " + tok.Description)
	}
	return tok.AccessToken, nil
}
