package integration

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/gateway/internal/demo"
)

// TestCaddyfileExample runs the real binary on the repository's
// Caddyfile.example, exactly as the README's first command does (the demo
// parts on their fixed loopback ports, the gateway on localhost:8080), and
// walks through both scenarios the file documents.
func TestCaddyfileExample(t *testing.T) {
	bin := needCaddy(t)
	d, err := demo.Start(demo.Config{Ports: demo.DefaultPorts})
	if err != nil {
		t.Fatalf("demo parts (the example needs ports 9400-9407 and 8080 free): %v", err)
	}
	t.Cleanup(d.Close)

	root, _ := filepath.Abs("..")
	dir := t.TempDir()
	out := new(syncBuffer)
	cmd := exec.Command(bin, "run", "--config", filepath.Join(root, "Caddyfile.example"), "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("caddy output:\n%s", out.String())
		}
	})
	const gw = "http://localhost:8080"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(gw + "/.well-known/oauth-protected-resource/acme/tools/mcp")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway on Caddyfile.example did not come up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	connect := func(path, agent string) (*mcp.ClientSession, error) {
		hdr := http.Header{}
		if agent != "" {
			var groups []string
			tenant := "acme"
			for _, a := range demo.Agents {
				if a.ID == agent {
					groups, tenant = a.Groups, a.Tenant
				}
			}
			tok, err := demo.RequestAgentToken(ctx, d.ASURL, agent, groups, tenant, gw+path, "mcp:read mcp:write")
			if err != nil {
				t.Fatal(err)
			}
			hdr.Set("Authorization", "Bearer "+tok)
		}
		client := mcp.NewClient(&mcp.Implementation{Name: "example-test", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: gw + path, MaxRetries: -1,
			HTTPClient: &http.Client{Transport: &headerTransport{base: http.DefaultTransport, header: hdr}}}, nil)
		if err == nil {
			t.Cleanup(func() { _ = cs.Close() })
		}
		return cs, err
	}
	tools := func(cs *mcp.ClientSession) []string {
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range res.Tools {
			names = append(names, tl.Name)
		}
		return names
	}
	text := func(cs *mcp.ClientSession, tool string) string {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		if res.IsError {
			t.Fatalf("%s failed: %s", tool, b.String())
		}
		return b.String()
	}

	// No token: the anonymous demo server.
	pub, err := connect("/demo/mcp", "")
	if err != nil {
		t.Fatal(err)
	}
	if names := tools(pub); !slices.Contains(names, "roll_dice") {
		t.Fatalf("anonymous server tools %v", names)
	}
	// Scenario 1: the internal server gets a resource token it can verify.
	alice, err := connect("/acme/tools/mcp", "cursor-acme")
	if err != nil {
		t.Fatal(err)
	}
	if who := text(alice, "whoami"); !strings.Contains(who, "signature: verified") || !strings.Contains(who, "tenant: acme") {
		t.Fatalf("whoami: %s", who)
	}
	// The partner sees only read tools on the third-party server.
	partner, err := connect("/acme/notion/mcp", "partner-bot")
	if err != nil {
		t.Fatal(err)
	}
	if names := tools(partner); slices.Contains(names, "update_page") || !slices.Contains(names, "search") {
		t.Fatalf("partner's notion tools %v", names)
	}
	// Scenario 2: acme's server exchanges its resource token for acme's
	// API key and for an API A token.
	acme, err := connect("/acme/mcp", "cursor-acme")
	if err != nil {
		t.Fatal(err)
	}
	if inv := text(acme, "list_invoices"); !strings.Contains(inv, "tenant acme") {
		t.Fatalf("list_invoices: %s", inv)
	}
	if rep := text(acme, "usage_report"); !strings.Contains(rep, "tenant acme") {
		t.Fatalf("usage_report: %s", rep)
	}
	// globex's agent cannot use acme's server.
	if _, err := connect("/acme/mcp", "globex-agent"); err == nil {
		t.Fatal("globex's agent connected to acme's server")
	}
}
