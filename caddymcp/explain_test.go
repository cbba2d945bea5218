package caddymcp

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddymcp/gateway/policy"
)

// explainFixture is a small gateway: one authenticated server with tool
// rules, one anonymous server, and policies covering every outcome.
func explainFixture(t *testing.T) *explainConfig {
	t.Helper()
	pols := []policy.Policy{
		{Name: "staff", Effect: "allow", Agents: []string{"group:staff"}, Scopes: []string{"mcp:*"}},
		{Name: "partners", Effect: "allow", Agents: []string{"group:partners"}, Servers: []string{"invoices"}, Scopes: []string{"mcp:read"}},
		{Name: "no-bots", Effect: "deny", Agents: []string{"client:bot-*"}},
		{Name: "audit-writes", Effect: "deny", Mode: "report", Agents: []string{"*"}, Scopes: []string{"mcp:write:*"}, IP: []string{"192.0.2.0/24"}},
		{Name: "public", Effect: "allow", Agents: []string{"*"}, Servers: []string{"demo"}},
		{Name: "staging-only", Effect: "allow", Agents: []string{"*"}, Environments: []string{"staging"}},
	}
	engine, err := policy.Compile(pols, "", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &explainConfig{engine: engine, servers: []*ServerConfig{
		{Name: "invoices", Tenant: "acme", Path: "/mcp", Upstream: "http://127.0.0.1:1/", Require: []string{"mcp:read"},
			Tools: []ItemRule{{Match: "delete_*", Scopes: []string{"mcp:write:invoices"}}, {Match: "*"}}},
		{Name: "demo", Tenant: "public", Path: "/demo", Upstream: "http://127.0.0.1:1/", Anonymous: true, Require: []string{"demo:use"}},
	}}
}

func TestExplain(t *testing.T) {
	ec := explainFixture(t)
	cases := []struct {
		name        string
		req         ExplainRequest
		result      string
		policy      string
		reason      string // substring
		need        []string
		missing     []string
		wouldPolicy string
		assumed     bool
	}{
		{name: "allow", req: ExplainRequest{Server: "invoices", Tool: "read_invoice", Groups: []string{"staff"}, Scopes: []string{"mcp:read"}},
			result: "allow", policy: "staff", need: []string{"mcp:read"}},
		{name: "deny: no policy grants the tool's scope", req: ExplainRequest{Server: "invoices", Tool: "delete_invoice", Groups: []string{"partners"},
			Scopes: []string{"mcp:read", "mcp:write:invoices"}},
			result: "deny", reason: `no policy grants scope "mcp:write:invoices"`, need: []string{"mcp:read", "mcp:write:invoices"}},
		{name: "deny by policy", req: ExplainRequest{Server: "invoices", ClientID: "bot-7", Groups: []string{"staff"}, Scopes: []string{"mcp:read"}},
			result: "deny", policy: "no-bots", reason: `denied by policy "no-bots"`, need: []string{"mcp:read"}},
		{name: "deny: nothing matches", req: ExplainRequest{Server: "invoices", Sub: "stranger", Scopes: []string{"mcp:read"}},
			result: "deny", reason: "no policy grants access", need: []string{"mcp:read"}},
		{name: "step-up", req: ExplainRequest{Server: "invoices", Tool: "delete_invoice", Groups: []string{"staff"}, Scopes: []string{"mcp:read"}},
			result: "step_up", reason: "token lacks scope mcp:write:invoices", need: []string{"mcp:read", "mcp:write:invoices"}, missing: []string{"mcp:write:invoices"}},
		{name: "report mode: would deny", req: ExplainRequest{Server: "invoices", Tool: "delete_invoice", Groups: []string{"staff"},
			Scopes: []string{"mcp:read", "mcp:write:invoices"}, IP: "192.0.2.9"},
			result: "would_deny", policy: "staff", wouldPolicy: "audit-writes", need: []string{"mcp:read", "mcp:write:invoices"}},
		{name: "report mode: other network", req: ExplainRequest{Server: "invoices", Tool: "delete_invoice", Groups: []string{"staff"},
			Scopes: []string{"mcp:read", "mcp:write:invoices"}, IP: "198.51.100.1"},
			result: "allow", policy: "staff", need: []string{"mcp:read", "mcp:write:invoices"}},
		{name: "report mode: unknown IP counts for a deny with ip", req: ExplainRequest{Server: "invoices", Tool: "delete_invoice", Groups: []string{"staff"},
			Scopes: []string{"mcp:read", "mcp:write:invoices"}},
			result: "would_deny", policy: "staff", wouldPolicy: "audit-writes", need: []string{"mcp:read", "mcp:write:invoices"}},
		{name: "agent and scopes from claims", req: ExplainRequest{Server: "invoices", Tool: "read_invoice",
			Claims: map[string]any{"client_id": "cursor", "groups": []any{"staff"}, "scope": "mcp:read"}},
			result: "allow", policy: "staff", need: []string{"mcp:read"}},
		{name: "scopes assumed", req: ExplainRequest{Server: "invoices", Tool: "delete_invoice", Groups: []string{"staff"}, IP: "198.51.100.1"},
			result: "allow", policy: "staff", need: []string{"mcp:read", "mcp:write:invoices"}, assumed: true},
		{name: "token without scopes", req: ExplainRequest{Server: "invoices", Groups: []string{"staff"}, Scopes: []string{}},
			result: "step_up", need: []string{"mcp:read"}, missing: []string{"mcp:read"}},
		{name: "anonymous server", req: ExplainRequest{Server: "demo"},
			result: "allow", policy: "public", need: []string{"demo:use"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := ec.explain(&c.req)
			if err != nil {
				t.Fatal(err)
			}
			d := res.Decision
			if res.Result != c.result {
				t.Fatalf("result %s, want %s (reason %q)", res.Result, c.result, d.Reason)
			}
			if d.Policy != c.policy {
				t.Errorf("policy %q, want %q", d.Policy, c.policy)
			}
			if !strings.Contains(d.Reason, c.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, c.reason)
			}
			if !reflect.DeepEqual(res.Need, c.need) {
				t.Errorf("need %v, want %v", res.Need, c.need)
			}
			if !reflect.DeepEqual(d.Missing, c.missing) {
				t.Errorf("missing %v, want %v", d.Missing, c.missing)
			}
			if d.WouldPolicy != c.wouldPolicy {
				t.Errorf("would_policy %q, want %q", d.WouldPolicy, c.wouldPolicy)
			}
			if res.ScopesAssumed != c.assumed {
				t.Errorf("scopes_assumed %v", res.ScopesAssumed)
			}
			if len(res.Policies) != 6 {
				t.Errorf("%d policy traces, want 6 (every policy, inactive ones too)", len(res.Policies))
			}
		})
	}
}

func TestExplainTraces(t *testing.T) {
	ec := explainFixture(t)
	res, err := ec.explain(&ExplainRequest{Server: "invoices", Tool: "read_invoice", Groups: []string{"partners"}, Scopes: []string{"mcp:read"}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]policy.PolicyTrace{}
	for _, p := range res.Policies {
		byName[p.Name] = p
	}
	if p := byName["partners"]; !p.Matched || !reflect.DeepEqual(p.Covers, []string{"mcp:read"}) || !strings.Contains(p.Why, "group:partners") {
		t.Errorf("partners trace %+v", p)
	}
	if p := byName["staff"]; p.Matched || !strings.Contains(p.Why, "agent matches none") {
		t.Errorf("staff trace %+v", p)
	}
	if p := byName["staging-only"]; p.Active || p.Matched {
		t.Errorf("staging-only trace %+v", p)
	}
}

func TestExplainErrors(t *testing.T) {
	ec := explainFixture(t)
	cases := []struct {
		req    ExplainRequest
		status int
		msg    string
	}{
		{ExplainRequest{}, http.StatusBadRequest, "server is required"},
		{ExplainRequest{Server: "nope"}, http.StatusNotFound, `unknown server "nope"`},
		{ExplainRequest{Server: "invoices", Tenant: "globex"}, http.StatusBadRequest, `belongs to tenant "acme"`},
		{ExplainRequest{Server: "invoices", IP: "not-an-ip"}, http.StatusBadRequest, "not an IP address"},
		{ExplainRequest{Server: "invoices", Tool: "a", URI: "b"}, http.StatusBadRequest, "give one of"},
		{ExplainRequest{Server: "invoices", Method: "prompts/get"}, http.StatusBadRequest, "needs a tool, name or uri"},
	}
	for _, c := range cases {
		_, err := ec.explain(&c.req)
		if err == nil || explainStatus(err) != c.status || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: got %v (status %d), want %d %q", c.req, err, explainStatus(err), c.status, c.msg)
		}
	}
}

// The explainer computes Need exactly like the pipeline.
func TestExplainNeedMatchesPipeline(t *testing.T) {
	app := &App{Policies: allowAll, Tenants: []*TenantConfig{{Name: "acme"}}}
	cfg := &ServerConfig{Name: "n", Tenant: "acme", Upstream: "http://127.0.0.1:1/", Anonymous: true, Require: []string{"r"},
		Tools:     []ItemRule{{Match: "w_*", Scopes: []string{"w"}}},
		Resources: []ItemRule{{Match: "file:///secret/*", Scopes: []string{"s"}}},
		Prompts:   []ItemRule{{Match: "p", Scopes: []string{"p1", "p2"}}}}
	h, _ := testHandler(t, app, cfg)
	srv := h.router.lookup("gw.test", "/mcp")
	for _, c := range []struct{ method, target string }{
		{"tools/call", "w_x"}, {"tools/call", "r_x"}, {"resources/read", "file:///secret/a"}, {"resources/subscribe", "file:///pub"},
		{"prompts/get", "p"}, {"tools/list", ""}, {"", ""},
	} {
		got, err := explainNeed(cfg, c.method, c.target)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		switch c.method {
		case "tools/call":
			want = srv.tools.Need(cfg.Require, c.target)
		case "resources/read", "resources/subscribe":
			want = srv.resources.Need(cfg.Require, c.target)
		case "prompts/get":
			want = srv.prompts.Need(cfg.Require, c.target)
		default:
			want = cfg.Require
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %s: need %v, pipeline %v", c.method, c.target, got, want)
		}
	}
	if got := anonymousScopes(cfg); !reflect.DeepEqual(got, srv.anonScopes) {
		t.Errorf("anonymous scopes %v, pipeline %v", got, srv.anonScopes)
	}
}

func TestExplainConfigFromJSON(t *testing.T) {
	cfg := `{"apps":{
	  "mcp":{"environment":"prod","tenants":[{"name":"acme"}],
	    "policies":[{"name":"p","effect":"allow","agents":["*"],"environments":["prod"]}]},
	  "http":{"servers":{"srv0":{"routes":[{"handle":[{"handler":"subroute","routes":[{"handle":[
	    {"handler":"mcp_gateway","servers":[{"name":"s1","tenant":"acme","upstream":"http://127.0.0.1:1/","anonymous":true}]}]}]}]}]}}}}}`
	ec, err := explainConfigFromJSON([]byte(cfg), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ec.servers) != 1 || ec.servers[0].Name != "s1" || ec.servers[0].Path != "/mcp" {
		t.Fatalf("servers %+v", ec.servers)
	}
	res, err := ec.explain(&ExplainRequest{Server: "s1"})
	if err != nil || res.Result != "allow" || res.Environment != "prod" {
		t.Fatalf("%+v %v", res, err)
	}
	// Another environment: the policy is inactive.
	ec, err = explainConfigFromJSON([]byte(cfg), "dev")
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := ec.explain(&ExplainRequest{Server: "s1"}); res.Result != "deny" {
		t.Errorf("environment dev: %s", res.Result)
	}
	if _, err := explainConfigFromJSON([]byte(`{"apps":{"mcp":{"policies":[{"name":"x","effect":"maybe"}]}}}`), ""); err == nil {
		t.Error("a bad policy compiled")
	}
}
