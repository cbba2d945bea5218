package caddymcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddymcp/gateway/policy"
)

// The policy explainer: given an agent (claims), a server, a method and
// item, and a client IP, what would the gateway decide and why. One
// function, explain, serves the admin endpoint POST /mcp/explain and the
// `caddy mcp-explain` command (which evaluates a config file or asks the
// running instance).

// ExplainRequest is the body of POST /mcp/explain.
type ExplainRequest struct {
	// Server name (required).
	Server string `json:"server"`
	// Tenant; optional, must be the server's when given.
	Tenant string `json:"tenant,omitempty"`
	// JSON-RPC method; default tools/call when tool or name is given,
	// resources/read when uri is given, else none (only the server's
	// require scopes are needed, as for GET and DELETE).
	Method string `json:"method,omitempty"`
	// The tool (tools/call), prompt (prompts/get) or resource URI
	// (resources/read) targeted.
	Tool string `json:"tool,omitempty"`
	Name string `json:"name,omitempty"`
	URI  string `json:"uri,omitempty"`
	// The agent, as its token would say.
	ClientID string         `json:"client_id,omitempty"`
	Sub      string         `json:"sub,omitempty"`
	Groups   []string       `json:"groups,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
	// The token's scopes. Absent (null): taken from claims.scope / scp
	// when present, else the token is assumed to carry every needed scope
	// (the answer is then about policy alone). [] is a token with none.
	Scopes []string `json:"scopes"`
	// Client IP; empty means unknown.
	IP string `json:"ip,omitempty"`
}

// ExplainResult is the explainer's answer.
type ExplainResult struct {
	// Result is the audit decision: allow, deny, step_up or would_deny.
	Result      string `json:"result"`
	Server      string `json:"server"`
	Tenant      string `json:"tenant"`
	Environment string `json:"environment"`
	Method      string `json:"method,omitempty"`
	Target      string `json:"target,omitempty"`
	Anonymous   bool   `json:"anonymous,omitempty"`
	// Need are the scopes the request needs (server require + item rule).
	Need []string `json:"need"`
	// TokenScopes are the scopes evaluated as the token's.
	TokenScopes   []string `json:"token_scopes"`
	ScopesAssumed bool     `json:"scopes_assumed,omitempty"`
	// Decision is the policy engine's decision (deciding policy, reason,
	// effective and missing scopes, report-mode verdict).
	Decision policy.Decision `json:"decision"`
	// Policies traces every configured policy: matched or why not.
	Policies []policy.PolicyTrace `json:"policies"`
	Notes    []string             `json:"notes,omitempty"`
}

// explainError carries the HTTP status the admin API answers with.
type explainError struct {
	status int
	msg    string
}

func (e *explainError) Error() string { return e.msg }

func badExplain(format string, a ...any) error {
	return &explainError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

// explainStatus returns the HTTP status for an explain error.
func explainStatus(err error) int {
	var ee *explainError
	if errors.As(err, &ee) {
		return ee.status
	}
	return http.StatusInternalServerError
}

// findServerConfig returns the server named name.
func findServerConfig(servers []*ServerConfig, name string) (*ServerConfig, error) {
	if name == "" {
		return nil, badExplain("server is required")
	}
	for _, s := range servers {
		if s.Name == name {
			return s, nil
		}
	}
	return nil, &explainError{status: http.StatusNotFound, msg: fmt.Sprintf("unknown server %q", name)}
}

// explain evaluates req against engine for the server cfg the way the
// request pipeline does (server.need, Handler.decide), and traces every
// policy.
func explain(engine *policy.Engine, cfg *ServerConfig, req *ExplainRequest) (*ExplainResult, error) {
	if engine == nil {
		return nil, errors.New("no policy engine")
	}
	if req.Tenant != "" && req.Tenant != cfg.Tenant {
		return nil, badExplain("server %q belongs to tenant %q, not %q", cfg.Name, cfg.Tenant, req.Tenant)
	}
	method, target, err := explainTarget(req)
	if err != nil {
		return nil, err
	}
	need, err := explainNeed(cfg, method, target)
	if err != nil {
		return nil, err
	}
	// A scope both required and named by the item rule counts once (the
	// decision is the same either way; the report reads better).
	need = dedupe(need)
	in := &policy.Input{Server: cfg.Name, Tenant: cfg.Tenant, Need: need}
	if req.IP != "" {
		ip, err := netip.ParseAddr(strings.Trim(req.IP, "[]"))
		if err != nil {
			return nil, badExplain("ip %q: not an IP address", req.IP)
		}
		in.ClientIP = ip.Unmap()
	}
	res := &ExplainResult{
		Server: cfg.Name, Tenant: cfg.Tenant, Environment: engine.Environment(),
		Method: method, Target: target, Anonymous: cfg.Anonymous, Need: need,
	}
	if res.Need == nil {
		res.Need = []string{}
	}
	if cfg.Anonymous {
		// The pipeline reads no token on an anonymous server: the caller
		// holds whatever scopes the server mentions, and policies for
		// agents * decide.
		in.TokenScopes = anonymousScopes(cfg)
		if req.ClientID != "" || req.Sub != "" || len(req.Groups) > 0 || len(req.Claims) > 0 || req.Scopes != nil {
			res.Notes = append(res.Notes, "server is anonymous: the agent and token scopes given are ignored (no token is read)")
		}
	} else {
		in.Agent = explainAgent(req)
		switch {
		case req.Scopes != nil:
			in.TokenScopes = req.Scopes
		case req.Claims["scope"] != nil || req.Claims["scp"] != nil:
			in.TokenScopes = policy.ScopesFromClaims(req.Claims)
		default:
			in.TokenScopes = need
			res.ScopesAssumed = true
			res.Notes = append(res.Notes, "no token scopes given: the token is assumed to carry every needed scope")
		}
	}
	res.TokenScopes = in.TokenScopes
	if res.TokenScopes == nil {
		res.TokenScopes = []string{}
	}
	ex := engine.Explain(in)
	res.Decision = ex.Decision
	res.Policies = ex.Policies
	if res.Policies == nil {
		res.Policies = []policy.PolicyTrace{}
	}
	res.Result = res.Decision.AuditDecision()
	return res, nil
}

func dedupe(list []string) []string {
	for i := range list {
		for j := 0; j < i; j++ {
			if list[i] == list[j] {
				out := make([]string, 0, len(list))
				seen := make(map[string]bool, len(list))
				for _, s := range list {
					if !seen[s] {
						seen[s] = true
						out = append(out, s)
					}
				}
				return out
			}
		}
	}
	return list
}

// explainTarget normalizes the method and the targeted item.
func explainTarget(req *ExplainRequest) (method, target string, err error) {
	n := 0
	for _, v := range []string{req.Tool, req.Name, req.URI} {
		if v != "" {
			target = v
			n++
		}
	}
	if n > 1 {
		return "", "", badExplain("give one of tool, name and uri")
	}
	method = req.Method
	if method == "" {
		switch {
		case req.Tool != "", req.Name != "":
			method = "tools/call"
		case req.URI != "":
			method = "resources/read"
		}
	}
	switch method {
	case "tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe":
		if target == "" {
			return "", "", badExplain("method %s needs a tool, name or uri", method)
		}
	}
	return method, target, nil
}

// explainNeed returns the scopes a request needs, like server.need: the
// server's require scopes plus those of the first matching item rule.
func explainNeed(cfg *ServerConfig, method, target string) ([]string, error) {
	var kind string
	var items []ItemRule
	switch method {
	case "tools/call":
		kind, items = "tool", cfg.Tools
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		kind, items = "resource", cfg.Resources
	case "prompts/get":
		kind, items = "prompt", cfg.Prompts
	default:
		return cfg.Require, nil
	}
	rules, err := compileRules(kind, items)
	if err != nil {
		return nil, fmt.Errorf("server %s: %v", cfg.Name, err)
	}
	return rules.Need(cfg.Require, target), nil
}

// explainAgent builds the agent from the request: explicit fields win over
// the claims (client_id / azp, sub, groups).
func explainAgent(req *ExplainRequest) policy.Agent {
	var a policy.Agent
	if req.Claims != nil {
		a = policy.AgentFromClaims(req.Claims, "", "")
	}
	if req.ClientID != "" {
		a.ClientID = req.ClientID
	}
	if req.Sub != "" {
		a.Subject = req.Sub
	}
	if len(req.Groups) > 0 {
		a.Groups = req.Groups
	}
	return a
}

// anonymousScopes is what an anonymous caller is taken to hold: every scope
// the server mentions (as in newServer).
func anonymousScopes(cfg *ServerConfig) []string {
	var out []string
	seen := map[string]bool{}
	add := func(list []string) {
		for _, sc := range list {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	add(cfg.Require)
	add(cfg.Scopes)
	for _, items := range [][]ItemRule{cfg.Tools, cfg.Resources, cfg.Prompts} {
		for _, it := range items {
			add(it.Scopes)
		}
	}
	return out
}

// explainConfig is what the explainer needs from a config: the compiled
// policies and every mcp_gateway server.
type explainConfig struct {
	engine  *policy.Engine
	servers []*ServerConfig
}

// explainConfigFromJSON extracts the mcp app and the mcp_gateway servers
// from a whole Caddy JSON config and compiles the policies, without
// provisioning anything (no storage, no network). environment overrides
// the app's when not empty.
func explainConfigFromJSON(cfgJSON []byte, environment string) (*explainConfig, error) {
	var root struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &root); err != nil {
		return nil, fmt.Errorf("decoding config: %v", err)
	}
	app := new(App)
	if raw := root.Apps["mcp"]; len(raw) > 0 {
		if err := json.Unmarshal(raw, app); err != nil {
			return nil, fmt.Errorf("decoding the mcp app: %v", err)
		}
	}
	if environment == "" {
		environment = app.Environment
	}
	tenants := map[string]bool{}
	for _, t := range app.Tenants {
		tenants[t.Name] = true
	}
	pols := make([]policy.Policy, len(app.Policies))
	for i, p := range app.Policies {
		pols[i] = *p
	}
	engine, err := policy.Compile(pols, environment, policy.Options{KnownTenant: func(n string) bool { return tenants[n] }})
	if err != nil {
		return nil, err
	}
	out := &explainConfig{engine: engine}
	if raw := root.Apps["http"]; len(raw) > 0 {
		var tree any
		if err := json.Unmarshal(raw, &tree); err != nil {
			return nil, fmt.Errorf("decoding the http app: %v", err)
		}
		var walkErr error
		walkJSON(tree, func(m map[string]any) {
			if m["handler"] != "mcp_gateway" || walkErr != nil {
				return
			}
			b, _ := json.Marshal(m)
			var h Handler
			if err := json.Unmarshal(b, &h); err != nil {
				walkErr = fmt.Errorf("decoding an mcp_gateway handler: %v", err)
				return
			}
			for _, s := range h.Servers {
				if s.Path == "" {
					s.Path = "/mcp"
				}
				out.servers = append(out.servers, s)
			}
		})
		if walkErr != nil {
			return nil, walkErr
		}
	}
	return out, nil
}

// walkJSON calls fn for every object in a decoded JSON tree.
func walkJSON(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v)
		for _, c := range v {
			walkJSON(c, fn)
		}
	case []any:
		for _, c := range v {
			walkJSON(c, fn)
		}
	}
}

// explain answers req from the config.
func (c *explainConfig) explain(req *ExplainRequest) (*ExplainResult, error) {
	cfg, err := findServerConfig(c.servers, req.Server)
	if err != nil {
		return nil, err
	}
	return explain(c.engine, cfg, req)
}
