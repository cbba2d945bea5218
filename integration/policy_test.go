package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// TestPolicyEnforcementThroughGateway drives the policy pipeline through
// the real binary at the HTTP level: step-up for a scope policy would
// grant, the duplicate-key smuggling body, a 2026-07-28 header mismatch,
// and a report-mode deny that lets the call through and is audited.
func TestPolicyEnforcementThroughGateway(t *testing.T) {
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "cursor-acme", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read", "mcp:write:invoices"}, Groups: []string{"internal-tools"}},
	))
	up := newUpstream(t, "billing")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %s
	tenant acme
	policy internal {
		allow
		agents group:internal-tools
		scopes mcp:read mcp:write:*
	}
	policy no-countdown-yet {
		deny
		mode report
		agents *
		scopes mcp:write:invoices
	}
}`, op.Issuer()),
		Sites: fmt.Sprintf(`%s {
	mcp_gateway {
		server acme-billing {
			tenant acme
			path /acme/billing/mcp
			upstream %s
			require mcp:read
			tool countdown mcp:write:invoices
			tool * mcp:read
		}
	}
}`, base, up.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 60)
	defer cancel()
	endpoint := base + "/acme/billing/mcp"
	readOnly, err := op.AgentToken(ctx, "cursor-acme", endpoint, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	readWrite, err := op.AgentToken(ctx, "cursor-acme", endpoint, "mcp:read", "mcp:write:invoices")
	if err != nil {
		t.Fatal(err)
	}
	post := func(tok, body string, hdr map[string]string) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}`
	v26 := func(method, name string) map[string]string {
		return map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": method, "Mcp-Name": name}
	}
	countdown := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":1,"delay_ms":1},` + meta + `}}`

	// Step-up: the policy would grant mcp:write:invoices, the token lacks it.
	resp, _ := post(readOnly, countdown, v26("tools/call", "countdown"))
	want := `Bearer error="insufficient_scope", scope="mcp:read mcp:write:invoices", resource_metadata="` + base + `/.well-known/oauth-protected-resource/acme/billing/mcp"`
	if resp.StatusCode != 403 || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("step-up: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// The duplicate-key smuggling body is refused and never forwarded.
	resp, body := post(readWrite, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"countdown"}}`, nil)
	if resp.StatusCode != 400 || !strings.Contains(body, `"code":-32600`) {
		t.Fatalf("smuggling body: %d %s", resp.StatusCode, body)
	}
	// Headers that disagree with the body (2026-07-28): -32020, not forwarded.
	resp, body = post(readWrite, countdown, v26("tools/call", "whoami"))
	if resp.StatusCode != 400 || !strings.Contains(body, `"code":-32020`) {
		t.Fatalf("header mismatch: %d %s", resp.StatusCode, body)
	}
	if n := len(up.RequestsWith("Mcp-Name", "countdown")) + len(up.RequestsWith("Mcp-Name", "whoami")); n != 0 {
		t.Fatalf("the upstream received %d refused requests:\n%s", n, up.Summary())
	}
	// With the scope, the call goes through although the report-mode
	// policy would deny it; the audit log says so.
	resp, body = post(readWrite, countdown, v26("tools/call", "countdown"))
	if resp.StatusCode != 200 || !strings.Contains(body, "result") {
		t.Fatalf("report mode changed the outcome: %d %s", resp.StatusCode, body)
	}
	if len(up.RequestsWith("Mcp-Name", "countdown")) != 1 {
		t.Fatal("the allowed call did not reach the upstream")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.Output.String(), `"decision":"would_deny"`) {
		if time.Now().After(deadline) {
			t.Fatal("no would_deny audit entry")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(c.Output.String(), "\n") {
		if strings.Contains(line, `"would_deny"`) && !(strings.Contains(line, `"logger":"mcp.audit"`) &&
			strings.Contains(line, `"would_deny_policy":"no-countdown-yet"`) && strings.Contains(line, `"tool":"countdown"`)) {
			t.Errorf("audit entry lacks fields: %s", line)
		}
	}
	assertNoSecretsLogged(t, c, readOnly, readWrite, agentSecret)
}
