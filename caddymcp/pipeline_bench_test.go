package caddymcp

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkPipeline measures the gateway's own per-request work for an
// authenticated tools/call on a cache hit: routing, token validation (cached),
// JSON-RPC inspection, policy, header hygiene and the response wrapper — the
// upstream is an in-process stand-in. Compare with BenchmarkDispatch (routing
// only) and the load figures in BENCHMARKS.md.
func BenchmarkPipeline(b *testing.B) {
	t := &testing.T{}
	iss := newTestIssuer(t)
	app := &App{
		Policies: billingPolicies,
		Issuers:  []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks"}},
		Tenants:  []*TenantConfig{{Name: "acme"}},
	}
	h, _ := testHandler(b, app, &ServerConfig{Name: "acme-billing", Tenant: "acme", Path: "/mcp", Upstream: "http://127.0.0.1:1/",
		Require: []string{"mcp:read"},
		Tools:   []ItemRule{{Match: "create_invoice", Scopes: []string{"mcp:write:invoices"}}, {Match: "*", Scopes: []string{"mcp:read"}}}})
	run := pipelineCall(b, h, iss.token(t, "http://gw.test/mcp", map[string]any{"scope": "mcp:read mcp:write:invoices", "groups": []string{"internal"}}))
	b.Run("audit=off", func(b *testing.B) {
		app.audit = zap.NewNop()
		b.ReportAllocs()
		for b.Loop() {
			run()
		}
	})
	b.Run("audit=json-to-discard", func(b *testing.B) {
		enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		app.audit = zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zap.InfoLevel)).Named("mcp.audit")
		b.ReportAllocs()
		for b.Loop() {
			run()
		}
	})
}

// BenchmarkPipelineBigConfig is BenchmarkPipeline (audit off) inside a
// config of 10 000 servers over 1 000 tenants and 100 000 policies, each
// naming one client, one group, one server and its tenant.
func BenchmarkPipelineBigConfig(b *testing.B) {
	t := &testing.T{}
	iss := newTestIssuer(t)
	const nServers, nPolicies = 10000, 100000
	app := &App{Issuers: []*IssuerConfig{{Issuer: iss.url, JWKSURI: iss.url + "/jwks"}}}
	for i := 0; i < nServers/10; i++ {
		app.Tenants = append(app.Tenants, &TenantConfig{Name: fmt.Sprintf("t%d", i)})
	}
	app.Tenants = append(app.Tenants, &TenantConfig{Name: "acme"})
	for i := 0; i < nPolicies; i++ {
		s := i % nServers
		app.Policies = append(app.Policies, &PolicyConfig{Name: fmt.Sprintf("p%d", i), Effect: "allow",
			Agents:  []string{fmt.Sprintf("client:c%d", i), fmt.Sprintf("group:g%d", i)},
			Servers: []string{fmt.Sprintf("s%d", s)}, Tenants: []string{fmt.Sprintf("t%d", s/10)}, Scopes: []string{"mcp:read"}})
	}
	app.Policies = append(app.Policies, billingPolicies...)
	cfgs := []*ServerConfig{{Name: "acme-billing", Tenant: "acme", Path: "/mcp", Upstream: "http://127.0.0.1:1/",
		Require: []string{"mcp:read"},
		Tools:   []ItemRule{{Match: "create_invoice", Scopes: []string{"mcp:write:invoices"}}, {Match: "*", Scopes: []string{"mcp:read"}}}}}
	for i := 0; i < nServers; i++ {
		cfgs = append(cfgs, &ServerConfig{Name: fmt.Sprintf("s%d", i), Tenant: fmt.Sprintf("t%d", i/10),
			Path: fmt.Sprintf("/s%d/mcp", i), Upstream: "http://127.0.0.1:1/", Require: []string{"mcp:read"}})
	}
	h, _ := testHandler(b, app, cfgs...)
	app.audit = zap.NewNop()
	run := pipelineCall(b, h, iss.token(t, "http://gw.test/mcp", map[string]any{"scope": "mcp:read mcp:write:invoices", "groups": []string{"internal"}}))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
}

// pipelineCall returns a function that sends one authenticated tools/call
// for read_invoice through h, after checking once that it is answered 200.
func pipelineCall(b *testing.B, h *Handler, tok string) func() int {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice","arguments":{"id":"INV-1"}}}`
	run := func() int {
		r := httptest.NewRequest(http.MethodPost, "http://gw.test/mcp", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		return serve(h, r, "").Code
	}
	if code := run(); code != 200 {
		b.Fatalf("status %d", code)
	}
	return run
}
