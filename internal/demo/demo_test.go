package demo

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func connect(t *testing.T, url, token, version string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "demo-test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             url,
		HTTPClient:           &http.Client{Transport: bearerTransport{token}},
		DisableStandaloneSSE: true,
	}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s (%s): %v", url, version, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func callText(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) string {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if res.IsError {
		return "ERROR: " + b.String()
	}
	return b.String()
}

func TestUpstreamsAnswerMCP(t *testing.T) {
	d, err := Start(Config{GatewayURL: "http://127.0.0.1:1"}) // no gateway in this test
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	ctx := context.Background()

	// the notion-like server wants a token of the demo AS for itself, with downstream scopes
	notionTok, err := d.AS.AgentToken(ctx, NotionClientID, "", "read_content")
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, url, token string
		tools            []string
		call             string
		args             map[string]any
		want             string
	}{
		{"notion", d.NotionURL + "/mcp", notionTok, []string{"create_page", "get_page", "search", "update_page"}, "search", map[string]any{"query": "roadmap"}, "p1: Roadmap"},
		{"tools", d.ToolsURL + "/mcp", "", []string{"deploy", "echo", "whoami"}, "echo", map[string]any{"text": "hi"}, "hi"},
		{"acme", d.AcmeURL + "/mcp", "", []string{"list_invoices", "profile", "usage_report", "whoami"}, "profile", nil, "customer acme"},
		{"globex", d.GlobexURL + "/mcp", "", []string{"list_invoices", "profile", "usage_report", "whoami"}, "profile", nil, "customer globex"},
		{"public", d.PublicURL + "/mcp", "", []string{"echo", "roll_dice", "time"}, "echo", map[string]any{"text": "hello"}, "hello"},
	}
	for _, version := range []string{"", "2025-11-25", "2025-03-26"} {
		for _, c := range cases {
			t.Run(c.name+"/"+version, func(t *testing.T) {
				cs := connect(t, c.url, c.token, version)
				res, err := cs.ListTools(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, tool := range res.Tools {
					names = append(names, tool.Name)
				}
				slices.Sort(names)
				if !slices.Equal(names, c.tools) {
					t.Errorf("tools %v, want %v", names, c.tools)
				}
				if got := callText(t, cs, c.call, c.args); !strings.Contains(got, c.want) {
					t.Errorf("%s: %q, want %q", c.call, got, c.want)
				}
			})
		}
	}

	t.Run("notion refuses without a valid token", func(t *testing.T) {
		for _, tok := range []string{"", "not-a-jwt"} {
			req, _ := http.NewRequest("POST", d.NotionURL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			req.Header.Set("Content-Type", "application/json")
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("token %q: %d", tok, resp.StatusCode)
			}
		}
		// a token for another audience is refused too
		other, _ := d.AS.AgentToken(ctx, "cursor-acme", "http://localhost:8080/acme/tools/mcp", "mcp:read")
		cs := mcp.NewClient(&mcp.Implementation{Name: "x", Version: "1"}, nil)
		if _, err := cs.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: d.NotionURL + "/mcp",
			HTTPClient: &http.Client{Transport: bearerTransport{other}}, MaxRetries: -1}, nil); err == nil {
			t.Error("token for another audience accepted")
		}
	})

	t.Run("notion scope check", func(t *testing.T) {
		cs := connect(t, d.NotionURL+"/mcp", notionTok, "")
		if got := callText(t, cs, "update_page", map[string]any{"id": "p1", "content": "x"}); !strings.Contains(got, "lacks update_content") {
			t.Errorf("update with read-only token: %q", got)
		}
	})

	t.Run("whoami shows the credential, not the secret", func(t *testing.T) {
		cs := connect(t, d.ToolsURL+"/mcp", notionTok, "")
		got := callText(t, cs, "whoami", nil)
		if !strings.Contains(got, "client_id: "+NotionClientID) || strings.Contains(got, notionTok) {
			t.Errorf("whoami: %q", got)
		}
	})

	t.Run("customer server reports an unreachable gateway", func(t *testing.T) {
		cs := connect(t, d.AcmeURL+"/mcp", "", "")
		if got := callText(t, cs, "list_invoices", nil); !strings.Contains(got, "token exchange for the billing connection failed") {
			t.Errorf("list_invoices: %q", got)
		}
	})

	t.Run("billing API", func(t *testing.T) {
		for key, want := range map[string]int{AcmeBillingKey: 200, GlobexBillingKey: 200, "": 401, "nope": 401} {
			req, _ := http.NewRequest("GET", d.BillingURL+"/invoices", nil)
			req.Header.Set("X-Api-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("key %q: %d %s", key, resp.StatusCode, body)
			}
		}
	})

	t.Run("mcp-demo token", func(t *testing.T) {
		tok, err := RequestAgentToken(ctx, d.ASURL, "new-agent", []string{"partners"}, "acme", "http://localhost:8080/acme/notion/mcp", "mcp:read")
		if err != nil {
			t.Fatal(err)
		}
		claims, err := d.AS.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if claims["client_id"] != "new-agent" || claims["tenant"] != "acme" || claims["scope"] != "mcp:read" ||
			!slices.Equal(audienceOf(claims), []string{"http://localhost:8080/acme/notion/mcp"}) {
			t.Errorf("claims %v", claims)
		}
		// a preset agent keeps its groups when none are given
		tok, err = RequestAgentToken(ctx, d.ASURL, "cursor-acme", nil, "", "http://localhost:8080/acme/tools/mcp", "mcp:read mcp:write")
		if err != nil {
			t.Fatal(err)
		}
		claims, _ = d.AS.Verify(tok)
		if g, _ := claims["groups"].([]any); len(g) != 1 || g[0] != "internal-tools" {
			t.Errorf("groups %v", claims["groups"])
		}
	})
}

func TestStartFailsOnBusyPort(t *testing.T) {
	d, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	port := strings.TrimPrefix(d.ASURL, "http://127.0.0.1:")
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	if _, err := Start(Config{Ports: Ports{AS: p}}); err == nil || !strings.Contains(err.Error(), "authorization server") {
		t.Errorf("busy port: %v", err)
	}
}
