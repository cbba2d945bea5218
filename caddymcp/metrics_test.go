package caddymcp

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/tokens"
)

// metricValue returns the value of the counter, gauge or histogram sample
// count named name whose labels include want, and whether it was found.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestMetricsRegisterTwiceAndSurviveReload(t *testing.T) {
	app := &App{Tenants: []*TenantConfig{{Name: "acme"}}}
	testHandler(t, app) // provisions auth state and the idle tracker

	reg1 := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg1, app); err != nil {
		t.Fatal(err)
	}
	// A second app or handler of the same config registers again.
	if err := registerMetrics(reg1, app); err != nil {
		t.Fatalf("second registration: %v", err)
	}

	sm := newServerMetrics("metrics-reload", "acme")
	sm.observe("deny", &policy.Decision{Outcome: policy.OutcomeDeny, Reason: "no policy grants access"}, 0, 0)
	labels := map[string]string{"server": "metrics-reload", "tenant": "acme", "decision": "deny", "reason_class": "no_policy"}
	if v, ok := metricValue(t, reg1, "caddy_mcp_decisions_total", labels); !ok || v != 1 {
		t.Fatalf("decisions_total = %v (found %v), want 1", v, ok)
	}

	// A reload: a fresh registry, the same collectors, the count kept; the
	// new config's servers resolve the same children.
	reg2 := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg2, app); err != nil {
		t.Fatal(err)
	}
	newServerMetrics("metrics-reload", "acme").observe("deny", &policy.Decision{Outcome: policy.OutcomeDeny, Reason: "no policy grants access"}, 0, 0)
	if v, _ := metricValue(t, reg2, "caddy_mcp_decisions_total", labels); v != 2 {
		t.Fatalf("after reload decisions_total = %v, want 2", v)
	}
}

func TestMetricsObserveDecisionAndLatency(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg, nil); err != nil {
		t.Fatal(err)
	}
	sm := newServerMetrics("metrics-observe", "globex")
	sm.observe("allow", &policy.Decision{Outcome: policy.OutcomeAllow, Allowed: true}, 200, 150*time.Millisecond)
	sm.observe("allow", &policy.Decision{Outcome: policy.OutcomeAllow, Allowed: true}, 200, 2*time.Second)
	sm.observe("step_up", &policy.Decision{Outcome: policy.OutcomeStepUp}, 0, 0)
	sm.observe("would_deny", &policy.Decision{Outcome: policy.OutcomeAllow, Allowed: true, WouldDeny: true}, 502, time.Millisecond)

	for _, c := range []struct {
		decision, class string
		want            float64
	}{
		{"allow", "ok", 2},
		{"step_up", "step_up", 1},
		{"would_deny", "report", 1},
	} {
		v, ok := metricValue(t, reg, "caddy_mcp_decisions_total",
			map[string]string{"server": "metrics-observe", "tenant": "globex", "decision": c.decision, "reason_class": c.class})
		if !ok || v != c.want {
			t.Errorf("decisions_total{decision=%s,reason_class=%s} = %v (found %v), want %v", c.decision, c.class, v, ok, c.want)
		}
	}
	// Only requests that reached the upstream are timed.
	if v, ok := metricValue(t, reg, "caddy_mcp_upstream_request_duration_seconds", map[string]string{"server": "metrics-observe"}); !ok || v != 3 {
		t.Errorf("upstream histogram count = %v (found %v), want 3", v, ok)
	}
	// Unused combinations export nothing.
	if _, ok := metricValue(t, reg, "caddy_mcp_decisions_total", map[string]string{"server": "metrics-observe", "decision": "deny"}); ok {
		t.Error("a deny series exists without a deny")
	}
	// A nil receiver (a server built without metrics) is a no-op.
	var nilMetrics *serverMetrics
	nilMetrics.observe("allow", nil, 200, time.Second)
}

func TestReasonClass(t *testing.T) {
	cases := []struct {
		decision string
		d        policy.Decision
		want     string
	}{
		{"allow", policy.Decision{}, "ok"},
		{"would_deny", policy.Decision{}, "report"},
		{"step_up", policy.Decision{Reason: "token lacks scope x"}, "step_up"},
		{"deny", policy.Decision{Policy: "no-evil", Reason: `denied by policy "no-evil"`}, "policy"},
		{"deny", policy.Decision{Policy: "d", Reason: `scope "a" is denied by policy "d"`}, "policy"},
		{"deny", policy.Decision{Reason: "no policy grants access"}, "no_policy"},
		{"deny", policy.Decision{Reason: `no policy grants scope "mcp:write"`}, "scope"},
		{"deny", policy.Decision{Reason: "something new"}, "other"},
		{"invalid", policy.Decision{Reason: "Mcp-Method header does not match"}, "header_mismatch"},
		{"session_refused", policy.Decision{Reason: "session: expired"}, "session"},
		{"surprise", policy.Decision{}, "other"},
	}
	for _, c := range cases {
		if got := reasonNames[reasonClass(c.decision, &c.d)]; got != c.want {
			t.Errorf("reasonClass(%s, %q) = %s, want %s", c.decision, c.d.Reason, got, c.want)
		}
	}
	if decisionNames[decisionIndex("surprise")] != "other" || decisionNames[decisionIndex("session_refused")] != "session_refused" {
		t.Error("decisionIndex")
	}
}

func TestMetricsTokenValidations(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg, nil); err != nil {
		t.Fatal(err)
	}
	get := func(result string) float64 {
		v, _ := metricValue(t, reg, "caddy_mcp_token_validations_total", map[string]string{"result": result})
		return v
	}
	before := map[string]float64{}
	for _, r := range tokenResultNames {
		before[r] = get(r)
	}
	observeTokenValidation(nil)
	observeTokenValidation(tokens.ErrNoToken)
	observeTokenValidation(&tokens.Error{Code: tokens.CodeInvalidToken})
	observeTokenValidation(&tokens.Error{Code: tokens.CodeInvalidRequest})
	observeTokenValidation(errors.New("wrapped elsewhere"))
	want := map[string]float64{"valid": 1, "missing": 1, "invalid_token": 2, "invalid_request": 1}
	for r, n := range want {
		if d := get(r) - before[r]; d != n {
			t.Errorf("token_validations_total{result=%s} grew by %v, want %v", r, d, n)
		}
	}
}

func TestMetricsStatsCollector(t *testing.T) {
	iss := newTestIssuer(t)
	app := &App{
		Policies: allowAll,
		Issuers:  []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks"}},
		// The same issuer URL with other settings is another key set: the
		// collector must sum them (a pedantic registry refuses duplicates).
		Tenants: []*TenantConfig{{Name: "acme", Issuers: []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks", TenantClaim: "tenant"}}}},
	}
	h, _ := testHandler(t, app, &ServerConfig{Name: "stats", Tenant: "acme", Upstream: "http://127.0.0.1:1/"})
	tok := iss.token(t, "http://gw.test/mcp", nil)
	for range 3 {
		r := newPost("http://gw.test/mcp", pingBody)
		r.Header.Set("Authorization", "Bearer "+tok)
		if w := serve(h, r, ""); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg, app); err != nil {
		t.Fatal(err)
	}
	if v, ok := metricValue(t, reg, "caddy_mcp_token_verifications_total", nil); !ok || v < 1 {
		t.Errorf("token_verifications_total = %v (found %v)", v, ok)
	}
	hits, _ := metricValue(t, reg, "caddy_mcp_token_cache_hits_total", nil)
	misses, ok := metricValue(t, reg, "caddy_mcp_token_cache_misses_total", nil)
	if !ok || hits+misses < 3 {
		t.Errorf("token cache hits %v + misses %v < 3", hits, misses)
	}
	if v, ok := metricValue(t, reg, "caddy_mcp_jwks_refreshes_total", map[string]string{"issuer": iss.url}); !ok || v < 1 {
		t.Errorf("jwks_refreshes_total{issuer} = %v (found %v)", v, ok)
	}
	for _, name := range []string{"caddy_mcp_jwks_refresh_failures_total", "caddy_mcp_jwks_keys", "caddy_mcp_token_cache_entries", "caddy_mcp_sessions_tracked"} {
		if _, ok := metricValue(t, reg, name, nil); !ok {
			t.Errorf("%s missing", name)
		}
	}
}

func newPost(url, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, url, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	return r
}
