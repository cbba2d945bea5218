package policy

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"acme", "acme", true},
		{"acme", "acme2", false},
		{"*", "", true},
		{"*", "a/b:c", true},
		{"acme-*", "acme-billing", true},
		{"acme-*", "acme-", true},
		{"acme-*", "globex-billing", false},
		{"*-billing", "acme-billing", true},
		{"*bill*", "acme-billing-2", true},
		{"mcp:write:*", "mcp:write:invoices", true},
		{"mcp:write:*", "mcp:read", false},
		{"mcp:*:invoices", "mcp:write:invoices", true},
		{"mcp:*:invoices", "mcp:write:x:invoices", true},
		{"mcp:*:invoices", "mcp:write:invoices2", false},
		{"https://*.example.com/*", "https://app.example.com/oauth/client.json", true},
		{"https://*.example.com/*", "https://evil.com/x.example.com/", false}, // host star stays in the host
		{"https://*.example.com/*", "https://a.b.example.com/", true},
		{"https://*.example.com/*", "https://evil.com?.example.com/", false},
		{"https://*.example.com/*", "https://evil.com#.example.com/", false},
		{"https://*.example.com/*", "https://evil.com@a.example.com/", false},
		{"https://*.example.com/*", "https://a.example.com", false},
		{"https://*.example.com", "https://a.example.com", true},
		{"https://*.example.com", "https://a.example.com/x", false},
		{"https://app.example.com/*", "https://app.example.com/clients/a.json", true},
		{"https://app.example.com/*", "https://app.example.com.evil.com/a.json", false},
		{"file:///*", "file:///etc/x", true},
		{"file:///secret/*", "file:///public/x", false},
		{"*://x/*", "a://x/y/z", true},                      // non-literal scheme: plain glob
		{"*.example.com/*", "evil.com/.example.com/", true}, // not a URL pattern: plain glob
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true}, // one code point
		{"a?c", "abbc", false},
		{"*a*b?c*", "xxaxxbyczz", true},
		{"*a*b?c*", "xxaxxbcz", false},
		{"**x", "abx", true},
		{"é*", "éa", true},
		{"*é", "aé", true},
		{"?*?", "a", false},
		{"?*?", "ab", true},
	}
	for _, c := range cases {
		g := MustGlob(c.pat)
		if got := g.Match(c.s); got != c.want {
			t.Errorf("Glob(%q).Match(%q) = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
	for _, bad := range []string{"", "a b", "a\tb", "a\x00"} {
		if _, err := CompileGlob(bad); err == nil {
			t.Errorf("CompileGlob(%q) succeeded", bad)
		}
	}
}

// pol is shorthand for building policies in tests.
func pol(name, effect string, kv ...string) Policy {
	p := Policy{Name: name, Effect: effect}
	for i := 0; i < len(kv); i += 2 {
		f := strings.Fields(kv[i+1])
		switch kv[i] {
		case "mode":
			p.Mode = kv[i+1]
		case "agents":
			p.Agents = f
		case "servers":
			p.Servers = f
		case "tenants":
			p.Tenants = f
		case "scopes":
			p.Scopes = f
		case "ip":
			p.IP = f
		case "env":
			p.Environments = f
		default:
			panic(kv[i])
		}
	}
	return p
}

func in(server, tenant string, agent Agent, token, need string) *Input {
	return &Input{Agent: agent, Server: server, Tenant: tenant, TokenScopes: strings.Fields(token), Need: strings.Fields(need)}
}

func withIP(i *Input, ip string) *Input {
	i.ClientIP = netip.MustParseAddr(ip)
	return i
}

var (
	partner  = Agent{ClientID: "cursor-partner", Subject: "u1", Groups: []string{"partners"}}
	internal = Agent{ClientID: "cursor-acme", Subject: "u2", Groups: []string{"staff", "internal-tools"}}
	cimd     = Agent{ClientID: "https://app.example.com/oauth/client.json", Subject: "u3"}
	anon     = Agent{}
)

func TestDecide(t *testing.T) {
	base := []Policy{
		pol("internal-all", "allow", "agents", "group:internal-tools", "servers", "acme-*", "tenants", "acme", "scopes", "mcp:read mcp:write:*"),
		pol("partners-read", "allow", "agents", "group:partners", "servers", "acme-*", "scopes", "mcp:read"),
		pol("no-delete", "deny", "agents", "*", "servers", "acme-billing", "scopes", "mcp:write:delete"),
		pol("cimd", "allow", "agents", "client:https://*.example.com/*", "servers", "public", "scopes", "mcp:read"),
		pol("office", "allow", "agents", "sub:u9", "ip", "10.0.0.0/8 2001:db8::/32 192.0.2.7", "scopes", "mcp:*"),
		pol("block-bad-net", "deny", "agents", "*", "servers", "secure", "ip", "203.0.113.0/24"),
		pol("secure-all", "allow", "agents", "*", "servers", "secure", "scopes", "mcp:read"),
		pol("prod-only", "allow", "agents", "client:prod-bot", "env", "production"),
		pol("staging-only", "allow", "agents", "client:staging-bot", "env", "staging"),
		pol("claims", "allow", "agents", "claim:department=finance claim:roles=admin claim:level=3 claim:beta=true claim:realm.roles=op*", "servers", "claims", "scopes", "mcp:read"),
		pol("dry-run-deny", "deny", "mode", "report", "agents", "group:partners", "servers", "acme-analytics", "scopes", "mcp:read"),
		pol("dry-run-allow", "allow", "mode", "report", "agents", "group:partners", "servers", "acme-tools"),
		pol("blanket-deny", "deny", "agents", "client:evil"),
		pol("evil-allow", "allow", "agents", "client:evil"),
	}
	e, err := Compile(base, "production", Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub9 := Agent{Subject: "u9"}
	type want struct {
		outcome   Outcome
		policy    string
		reason    string // substring
		effective string
		missing   string
		stepUp    string
		wouldDeny string // would-policy, "" = none
	}
	claimAgent := func(k string, v any) Agent { return Agent{Subject: "c", Claims: map[string]any{k: v}} }
	cases := []struct {
		name string
		in   *Input
		want want
	}{
		{"internal allowed", in("acme-billing", "acme", internal, "mcp:read mcp:write:invoices", "mcp:read mcp:write:invoices"),
			want{outcome: OutcomeAllow, policy: "internal-all", effective: "mcp:read mcp:write:invoices"}},
		{"scope glob grants write sub-scope", in("acme-tools", "acme", internal, "mcp:write:x", "mcp:write:x"),
			want{outcome: OutcomeAllow, policy: "internal-all", effective: "mcp:write:x"}},
		{"deny wins over allow", in("acme-billing", "acme", internal, "mcp:read mcp:write:delete", "mcp:read mcp:write:delete"),
			want{outcome: OutcomeDeny, policy: "no-delete", reason: `scope "mcp:write:delete" is denied by policy "no-delete"`, effective: "mcp:read"}},
		{"denied scope not needed: allowed, not effective", in("acme-billing", "acme", internal, "mcp:read mcp:write:delete", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "internal-all", effective: "mcp:read"}},
		{"partner read ok", in("acme-billing", "acme", partner, "mcp:read mcp:write:invoices", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "partners-read", effective: "mcp:read"}},
		{"partner write: not granted => deny not step-up", in("acme-billing", "acme", partner, "mcp:read", "mcp:read mcp:write:invoices"),
			want{outcome: OutcomeDeny, reason: `no policy grants scope "mcp:write:invoices"`, effective: "mcp:read"}},
		{"step-up: granted but missing from token", in("acme-billing", "acme", internal, "mcp:read", "mcp:read mcp:write:invoices"),
			want{outcome: OutcomeStepUp, effective: "mcp:read", missing: "mcp:write:invoices", stepUp: "mcp:read mcp:write:invoices"}},
		{"step-up with empty token", in("acme-billing", "acme", internal, "", "mcp:read mcp:read"),
			want{outcome: OutcomeStepUp, missing: "mcp:read", stepUp: "mcp:read"}},
		{"denied beats step-up", in("acme-billing", "acme", internal, "", "mcp:read mcp:write:delete"),
			want{outcome: OutcomeDeny, policy: "no-delete"}},
		{"server glob: other tenant's server", in("globex-billing", "globex", internal, "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"tenant mismatch", in("acme-billing", "globex", internal, "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"no match => denied", in("acme-billing", "acme", Agent{ClientID: "stranger"}, "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"anonymous: no match", in("acme-billing", "acme", anon, "", ""),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"client URL glob", in("public", "x", cimd, "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "cimd", effective: "mcp:read"}},
		{"client URL glob other host", in("public", "x", Agent{ClientID: "https://evil.com/client.json"}, "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"ip v4 cidr", withIP(in("any", "t", sub9, "mcp:read", "mcp:read"), "10.1.2.3"),
			want{outcome: OutcomeAllow, policy: "office", effective: "mcp:read"}},
		{"ip v4-mapped v6", withIP(in("any", "t", sub9, "mcp:read", "mcp:read"), "::ffff:10.1.2.3"),
			want{outcome: OutcomeAllow, policy: "office", effective: "mcp:read"}},
		{"ip v6 cidr", withIP(in("any", "t", sub9, "mcp:read", "mcp:read"), "2001:db8::1"),
			want{outcome: OutcomeAllow, policy: "office", effective: "mcp:read"}},
		{"ip single address", withIP(in("any", "t", sub9, "mcp:read", "mcp:read"), "192.0.2.7"),
			want{outcome: OutcomeAllow, policy: "office", effective: "mcp:read"}},
		{"ip single address neighbour", withIP(in("any", "t", sub9, "mcp:read", "mcp:read"), "192.0.2.8"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"ip outside", withIP(in("any", "t", sub9, "mcp:read", "mcp:read"), "11.0.0.1"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"ip unknown: allow with ip does not match", in("any", "t", sub9, "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"ip deny matches", withIP(in("secure", "t", partner, "mcp:read", "mcp:read"), "203.0.113.5"),
			want{outcome: OutcomeDeny, policy: "block-bad-net", reason: `denied by policy "block-bad-net"`}},
		{"ip deny other net", withIP(in("secure", "t", partner, "mcp:read", "mcp:read"), "198.51.100.1"),
			want{outcome: OutcomeAllow, policy: "secure-all", effective: "mcp:read"}},
		{"ip unknown: deny with ip applies (fail closed)", in("secure", "t", partner, "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny, policy: "block-bad-net"}},
		{"environment matches", in("x", "t", Agent{ClientID: "prod-bot"}, "a b", "a"),
			want{outcome: OutcomeAllow, policy: "prod-only", effective: "a b"}},
		{"environment other: dropped", in("x", "t", Agent{ClientID: "staging-bot"}, "a", "a"),
			want{outcome: OutcomeDeny, reason: "no policy grants access"}},
		{"claim string", in("claims", "t", claimAgent("department", "finance"), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim string mismatch", in("claims", "t", claimAgent("department", "sales"), "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny}},
		{"claim array", in("claims", "t", claimAgent("roles", []any{"user", "admin"}), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim []string", in("claims", "t", claimAgent("roles", []string{"admin"}), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim array mismatch", in("claims", "t", claimAgent("roles", []any{"user"}), "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny}},
		{"claim number", in("claims", "t", claimAgent("level", float64(3)), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim json.Number", in("claims", "t", claimAgent("level", json.Number("3")), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim number mismatch", in("claims", "t", claimAgent("level", 3.5), "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny}},
		{"claim bool", in("claims", "t", claimAgent("beta", true), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim bool false", in("claims", "t", claimAgent("beta", false), "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny}},
		{"claim nested path glob", in("claims", "t", claimAgent("realm", map[string]any{"roles": []any{"operator"}}), "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"claim object never matches", in("claims", "t", claimAgent("department", map[string]any{"x": "finance"}), "mcp:read", "mcp:read"),
			want{outcome: OutcomeDeny}},
		{"claim lookup func", in("claims", "t", Agent{Claim: func(n string) (any, bool) { return "finance", n == "department" }}, "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "claims", effective: "mcp:read"}},
		{"report deny: outcome unchanged, would_deny", in("acme-analytics", "acme", partner, "mcp:read", "mcp:read"),
			want{outcome: OutcomeAllow, policy: "partners-read", effective: "mcp:read", wouldDeny: "dry-run-deny"}},
		{"report deny not covering need", in("acme-analytics", "acme", partner, "mcp:read", ""),
			want{outcome: OutcomeAllow, policy: "partners-read", effective: "mcp:read"}},
		{"report allow grants nothing", in("acme-tools", "acme", partner, "mcp:read mcp:write:x", "mcp:write:x"),
			want{outcome: OutcomeDeny, reason: `no policy grants scope "mcp:write:x"`, effective: "mcp:read"}},
		{"deny without scopes denies everything", in("any", "t", Agent{ClientID: "evil"}, "a", ""),
			want{outcome: OutcomeDeny, policy: "blanket-deny"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.Decide(c.in)
			w := c.want
			if d.Outcome != w.outcome || d.Allowed != (w.outcome == OutcomeAllow) {
				t.Fatalf("outcome %s (reason %q), want %s", d.Outcome, d.Reason, w.outcome)
			}
			if w.policy != "" && d.Policy != w.policy {
				t.Errorf("policy %q, want %q", d.Policy, w.policy)
			}
			if !strings.Contains(d.Reason, w.reason) {
				t.Errorf("reason %q, want it to contain %q", d.Reason, w.reason)
			}
			if w.outcome == OutcomeAllow && d.Reason != "" {
				t.Errorf("allowed with reason %q", d.Reason)
			}
			if w.outcome != OutcomeDeny || w.effective != "" {
				if got := strings.Join(d.Effective, " "); got != w.effective {
					t.Errorf("effective %q, want %q", got, w.effective)
				}
			}
			if got := strings.Join(d.Missing, " "); got != w.missing {
				t.Errorf("missing %q, want %q", got, w.missing)
			}
			if got := strings.Join(d.StepUpScopes, " "); got != w.stepUp {
				t.Errorf("step-up scopes %q, want %q", got, w.stepUp)
			}
			if d.WouldDeny != (w.wouldDeny != "") || d.WouldPolicy != w.wouldDeny {
				t.Errorf("would deny %v %q (%s), want %q", d.WouldDeny, d.WouldPolicy, d.WouldReason, w.wouldDeny)
			}
			if len(d.Matched) == 0 && d.Policy != "" {
				t.Errorf("deciding policy %q not in Matched", d.Policy)
			}
			if d.Policy != "" && !contains(d.Matched, d.Policy) {
				t.Errorf("deciding policy %q not in Matched %v", d.Policy, d.Matched)
			}
		})
	}
}

func TestAuditDecision(t *testing.T) {
	e, err := Compile([]Policy{
		pol("a", "allow", "scopes", "s"),
		pol("r", "deny", "mode", "report", "scopes", "s"),
	}, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Decide(in("x", "t", partner, "s", "s"))
	if !d.Allowed || d.AuditDecision() != "would_deny" || d.WouldPolicy != "r" || !strings.Contains(d.WouldReason, `"r"`) {
		t.Fatalf("%+v", d)
	}
	if got := strings.Join(d.Matched, ","); got != "a,r" {
		t.Errorf("matched %q", got)
	}
}

func TestAllowWithoutScopesGrantsAll(t *testing.T) {
	e, err := Compile([]Policy{pol("open", "allow", "agents", "*", "servers", "public-*")}, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Decide(in("public-docs", "t", anon, "x y", "x"))
	if !d.Allowed || strings.Join(d.Effective, " ") != "x y" {
		t.Fatalf("%+v", d)
	}
	if d := e.Decide(in("private", "t", anon, "x", "")); d.Allowed {
		t.Fatalf("%+v", d)
	}
}

func TestAgentMatchersNeverMatchAbsentIdentity(t *testing.T) {
	e, err := Compile([]Policy{pol("any-client", "allow", "agents", "client:* sub:* group:*")}, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(in("s", "t", anon, "", "")); d.Allowed {
		t.Fatal("anonymous matched client:*")
	}
	if d := e.Decide(in("s", "t", Agent{Subject: "x"}, "", "")); !d.Allowed {
		t.Fatal("sub:* did not match")
	}
}

func TestCompileErrors(t *testing.T) {
	known := func(names ...string) func(string) bool {
		return func(s string) bool { return contains(names, s) }
	}
	cases := []struct {
		p    Policy
		opts Options
		want string
	}{
		{Policy{Effect: "allow"}, Options{}, "missing name"},
		{pol("p", "permit"), Options{}, "want allow or deny"},
		{pol("p", ""), Options{}, "missing effect"},
		{pol("p", "allow", "mode", "dry"), Options{}, "want enforce or report"},
		{pol("p", "allow", "agents", "user:bob"), Options{}, "unknown kind"},
		{pol("p", "allow", "agents", "bob"), Options{}, "bad agent matcher"},
		{pol("p", "allow", "agents", "claim:=x"), Options{}, "claim:NAME=VALUE"},
		{pol("p", "allow", "agents", "claim:dept"), Options{}, "claim:NAME=VALUE"},
		{pol("p", "allow", "agents", "client:"), Options{}, "empty pattern"},
		{pol("p", "allow", "ip", "10.0.0.0/33"), Options{}, "bad CIDR"},
		{pol("p", "allow", "ip", "10.0.0.300"), Options{}, "bad IP"},
		{pol("p", "allow", "servers", "nope"), Options{KnownServer: known("acme-billing")}, `unknown server "nope"`},
		{pol("p", "allow", "tenants", "nope"), Options{KnownTenant: known("acme")}, `unknown tenant "nope"`},
	}
	for _, c := range cases {
		_, err := Compile([]Policy{c.p}, "", c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.p, err, c.want)
		}
	}
	// Globs are not checked against known names; existing names pass.
	_, err := Compile([]Policy{pol("p", "allow", "servers", "acme-* acme-billing", "tenants", "acme")}, "",
		Options{KnownServer: known("acme-billing"), KnownTenant: known("acme")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile([]Policy{pol("p", "allow"), pol("p", "deny")}, "", Options{})
	if err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatal(err)
	}
}

func TestRules(t *testing.T) {
	r, err := CompileRules([]Rule{
		{Match: "create_invoice", Scopes: []string{"mcp:write:invoices"}},
		{Match: "admin_*", Scopes: []string{"mcp:admin"}},
		{Match: "admin_public"}, // shadowed by admin_* (first match wins)
		{Match: "free_tool"},    // needs nothing extra, stops the walk
		{Match: "*", Scopes: []string{"mcp:read"}},
		{Match: "create_invoice", Scopes: []string{"never"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		scopes  string
		matched bool
	}{
		{"create_invoice", "mcp:write:invoices", true},
		{"admin_x", "mcp:admin", true},
		{"admin_public", "mcp:admin", true},
		{"free_tool", "", true},
		{"read_invoice", "mcp:read", true},
	}
	for _, c := range cases {
		s, ok := r.Lookup(c.name)
		if strings.Join(s, " ") != c.scopes || ok != c.matched {
			t.Errorf("Lookup(%q) = %v %v", c.name, s, ok)
		}
	}
	if !r.Allowed("read_invoice", []string{"mcp:read"}) || r.Allowed("create_invoice", []string{"mcp:read"}) || !r.Allowed("free_tool", nil) {
		t.Error("Allowed")
	}
	if got := r.Need([]string{"mcp:read"}, "create_invoice"); strings.Join(got, " ") != "mcp:read mcp:write:invoices" {
		t.Error(got)
	}
	var none *Rules
	if s, ok := none.Lookup("x"); s != nil || ok || !none.Allowed("x", nil) {
		t.Error("nil rules")
	}
	res, _ := CompileRules([]Rule{{Match: "file:///secret/*", Scopes: []string{"mcp:secret"}}, {Match: "file:///*", Scopes: []string{"mcp:read"}}})
	if s, _ := res.Lookup("file:///secret/a.txt"); s[0] != "mcp:secret" {
		t.Error(s)
	}
	if _, ok := res.Lookup("https://x"); ok {
		t.Error("matched")
	}
	if _, err := CompileRules([]Rule{{Match: "x", Scopes: []string{"a b"}}}); err == nil {
		t.Error("bad scope accepted")
	}
}

func TestExplain(t *testing.T) {
	e, err := Compile([]Policy{
		pol("a", "allow", "agents", "group:partners", "scopes", "mcp:read"),
		pol("b", "allow", "agents", "group:staff"),
		pol("c", "allow", "servers", "other"),
		pol("d", "allow", "env", "staging"),
		pol("e", "deny", "ip", "10.0.0.0/8", "scopes", "mcp:write"),
	}, "production", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ex := e.Explain(in("s", "t", partner, "mcp:read", "mcp:read"))
	if !ex.Decision.Allowed {
		t.Fatal(ex.Decision)
	}
	want := map[string]struct {
		matched bool
		why     string
	}{
		"a": {true, "agent matches group:partners"},
		"b": {false, "agent matches none of group:staff"},
		"c": {false, `server "s" does not match other`},
		"d": {false, `environments staging do not include "production"`},
		"e": {true, "client IP unknown"},
	}
	if len(ex.Policies) != 5 {
		t.Fatal(ex.Policies)
	}
	for _, p := range ex.Policies {
		w := want[p.Name]
		if p.Matched != w.matched || !strings.Contains(p.Why, w.why) {
			t.Errorf("%s: %v %q, want %v %q", p.Name, p.Matched, p.Why, w.matched, w.why)
		}
	}
	ex = e.Explain(withIP(in("s", "t", partner, "mcp:read", "mcp:read"), "192.0.2.1"))
	if ex.Policies[4].Matched || !strings.Contains(ex.Policies[4].Why, "not in 10.0.0.0/8") {
		t.Error(ex.Policies[4])
	}
}

// TestIndexEquivalence checks the indexed Decide against a linear scan
// over random policies and inputs.
func TestIndexEquivalence(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pick := func(l ...string) string { return l[rng.Intn(len(l))] }
	servers := []string{"s1", "s2", "s3", "acme-1", "acme-2"}
	tenants := []string{"acme", "globex"}
	var ps []Policy
	for i := range 300 {
		kv := []string{}
		if rng.Intn(3) > 0 {
			kv = append(kv, "servers", pick("s1", "s2", "acme-*", "s1 s3", "*", "s?"))
		}
		if rng.Intn(2) > 0 {
			kv = append(kv, "tenants", pick("acme", "globex", "acme globex", "g*"))
		}
		if rng.Intn(4) > 0 {
			kv = append(kv, "agents", pick("client:c1", "client:c2 group:g1", "group:g1 group:g2", "sub:u1", "client:c*", "claim:x=1", "*", "sub:u1 client:c1"))
		}
		if rng.Intn(3) == 0 {
			kv = append(kv, "scopes", pick("r", "w", "r w", "*", "w*"))
		}
		if rng.Intn(6) == 0 {
			kv = append(kv, "ip", pick("10.0.0.0/8", "192.0.2.1"))
		}
		if rng.Intn(5) == 0 {
			kv = append(kv, "mode", "report")
		}
		eff := "allow"
		if rng.Intn(4) == 0 {
			eff = "deny"
		}
		ps = append(ps, pol(fmt.Sprintf("p%d", i), eff, kv...))
	}
	e, err := Compile(ps, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		a := Agent{ClientID: pick("", "c1", "c2", "c3"), Subject: pick("", "u1", "u2"), Groups: strings.Fields(pick("", "g1", "g2 g1", "g3")), Claims: map[string]any{"x": pick("1", "2")}}
		input := in(pick(servers...), pick(tenants...), a, pick("r", "r w", "w", ""), pick("r", "w", "r w", ""))
		if rng.Intn(2) == 0 {
			input.ClientIP = netip.MustParseAddr(pick("10.1.1.1", "192.0.2.1", "8.8.8.8"))
		}
		got := e.Decide(input)
		var lin []*cpol
		for _, cp := range e.all {
			if ok, _ := cp.explain(input, e.env); ok {
				lin = append(lin, cp)
			}
		}
		want := e.decide(input, lin)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %+v\nindexed %+v\nlinear  %+v", input, got, want)
		}
	}
}

// benchEngine builds a fixed set of policies that concern the benchmark
// request plus n unrelated ones spread over 10 000 servers and 1 000 tenants
// (a tenth of those on the request's own server, but for other clients).
func benchEngine(b *testing.B, n int) *Engine {
	ps := make([]Policy, 0, n+8)
	ps = append(ps,
		pol("staff-read", "allow", "agents", "group:staff", "servers", "srv-0", "tenants", "tenant-0", "scopes", "mcp:read mcp:write:*"),
		pol("no-delete", "deny", "agents", "*", "servers", "srv-0", "scopes", "mcp:write:delete"),
		pol("tenant-read", "allow", "agents", "sub:u3", "tenants", "tenant-0", "scopes", "mcp:read"),
		pol("global-deny", "deny", "agents", "client:evil-*"),
		pol("global-cimd", "allow", "agents", "client:https://*.example.com/*", "servers", "public-*", "scopes", "mcp:read"),
		pol("global-report", "deny", "mode", "report", "agents", "group:partners", "servers", "*-billing", "scopes", "mcp:write:*"),
	)
	for i := range n {
		srv := fmt.Sprintf("srv-%d", i%10000)
		if i%10 == 0 {
			srv = "srv-0"
		}
		ten := fmt.Sprintf("tenant-%d", 1+(i%999))
		switch i % 4 {
		case 0:
			ps = append(ps, pol(fmt.Sprintf("p%d", i), "allow", "agents", fmt.Sprintf("client:c%d", i), "servers", srv, "scopes", "mcp:read mcp:write:*"))
		case 1:
			ps = append(ps, pol(fmt.Sprintf("p%d", i), "allow", "agents", fmt.Sprintf("group:g%d", i), "servers", srv, "tenants", ten, "scopes", "mcp:read"))
		case 2:
			ps = append(ps, pol(fmt.Sprintf("p%d", i), "deny", "agents", "*", "servers", srv+"-x", "scopes", "mcp:write:delete"))
		case 3:
			ps = append(ps, pol(fmt.Sprintf("p%d", i), "allow", "agents", fmt.Sprintf("sub:u%d", i+10), "tenants", ten, "scopes", "mcp:read"))
		}
	}
	e, err := Compile(ps, "", Options{})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{100, 10_000, 100_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			e := benchEngine(b, n)
			input := &Input{
				Agent:       Agent{ClientID: "c1", Subject: "u3", Groups: []string{"g0", "staff", "partners"}},
				Server:      "srv-0",
				Tenant:      "tenant-0",
				TokenScopes: []string{"mcp:read", "mcp:write:invoices", "profile"},
				Need:        []string{"mcp:read", "mcp:write:invoices"},
			}
			d := e.Decide(input)
			if !d.Allowed || len(d.Matched) != 3 {
				b.Fatalf("%+v", d)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				_ = e.Decide(input)
			}
			b.ReportMetric(float64(candidates(e, input)), "candidates/op")
		})
	}
}

func TestAgentFromClaims(t *testing.T) {
	c := map[string]any{"azp": "cli", "sub": "u", "groups": []any{"a", 1, "b"}, "scope": "mcp:read  mcp:write", "roles": "admin"}
	a := AgentFromClaims(c, "", "")
	if a.ClientID != "cli" || a.Subject != "u" || strings.Join(a.Groups, ",") != "a,b" {
		t.Fatalf("%+v", a)
	}
	if a := AgentFromClaims(c, "sub", "roles"); a.ClientID != "u" || strings.Join(a.Groups, ",") != "admin" {
		t.Fatalf("%+v", a)
	}
	if s := ScopesFromClaims(c); strings.Join(s, ",") != "mcp:read,mcp:write" {
		t.Fatal(s)
	}
	if s := ScopesFromClaims(map[string]any{"scp": []any{"x", "y"}}); strings.Join(s, ",") != "x,y" {
		t.Fatal(s)
	}
	d, _ := json.Marshal(Decision{Outcome: OutcomeAllow, Allowed: true, Effective: []string{"x"}})
	if string(d) != `{"outcome":"allow","allowed":true,"effective":["x"],"matched":null}` {
		t.Fatal(string(d))
	}
}

// candidates counts the policies Decide examines for in (index slots
// reached), a load-independent measure of decision cost.
func candidates(e *Engine, in *Input) int {
	n := 0
	count := func(b *bucket) {
		if b == nil {
			return
		}
		n += len(b.byClient[in.Agent.ClientID]) + len(b.bySub[in.Agent.Subject]) + len(b.other)
		for _, g := range in.Agent.Groups {
			n += len(b.byGroup[g])
		}
	}
	count(e.byServer[in.Server])
	count(e.byTenant[in.Tenant])
	count(&e.global)
	return n
}
