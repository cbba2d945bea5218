// Command mcp-demo runs the MCP gateway demo in one process: the local demo parts (an OAuth
// authorization server and upstream MCP servers, see internal/demo) and Caddy with the gateway
// on Caddyfile.example.
//
//	go run ./cmd/mcp-demo                      # demo parts + Caddy on Caddyfile.example
//	go run ./cmd/mcp-demo parts                # only the demo parts (run Caddy yourself)
//	go run ./cmd/mcp-demo token --agent cursor-acme --aud http://localhost:8080/acme/tools/mcp
//	go run ./cmd/mcp-demo call --url http://localhost:8080/demo/mcp [--token JWT] [TOOL [JSON]]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	_ "github.com/caddymcp/gateway/caddymcp"
	"github.com/caddymcp/gateway/internal/demo"
)

const gatewayURL = "http://localhost:8080"

func main() {
	cmd := "run"
	args := os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = run(args, true)
	case "parts":
		err = run(args, false)
	case "token":
		err = token(args)
	case "call":
		err = call(args)
	case "help", "-h", "--help":
		usage()
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcp-demo:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  mcp-demo [run] [--config Caddyfile.example]   demo parts + Caddy with the gateway
  mcp-demo parts                                only the demo parts (ports 9400-9407)
  mcp-demo token --agent ID --aud URL [--group G]... [--tenant T] [--scope "mcp:read mcp:write"]
                                                print an agent access token (JWT) from the demo AS
  mcp-demo call --url URL [--token JWT] [--version V] [TOOL [JSON-ARGS]]
                                                list the tools of an MCP endpoint, or call one
`)
}

func run(args []string, withCaddy bool) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	config := fs.String("config", "Caddyfile.example", "Caddyfile to run")
	verbose := fs.Bool("v", false, "log every request to the demo parts")
	fs.Parse(args)

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	d, err := demo.Start(demo.Config{
		Ports:      demo.DefaultPorts,
		GatewayURL: gatewayURL,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return err
	}
	defer d.Close()

	if withCaddy {
		body, err := os.ReadFile(*config)
		if err != nil {
			return fmt.Errorf("%w (run from the repository root, or pass --config)", err)
		}
		adapter := caddyconfig.GetAdapter("caddyfile")
		abs, _ := filepath.Abs(*config)
		cfgJSON, warnings, err := adapter.Adapt(body, map[string]any{"filename": abs})
		if err != nil {
			return fmt.Errorf("adapting %s: %w", *config, err)
		}
		for _, w := range warnings {
			fmt.Fprintf(os.Stderr, "%s:%d: %s\n", w.File, w.Line, w.Message)
		}
		if err := caddy.Load(cfgJSON, true); err != nil {
			return fmt.Errorf("loading %s: %w", *config, err)
		}
		defer caddy.Stop()
		waitFor("localhost:8080", 10*time.Second)
	}
	banner(d, withCaddy, *config)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(os.Stderr, "\nmcp-demo: stopping")
	return nil
}

func waitFor(addr string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func banner(d *demo.Demo, withCaddy bool, config string) {
	var b strings.Builder
	line := strings.Repeat("─", 96)
	fmt.Fprintf(&b, "\n%s\nMCP gateway demo\n%s\n", line, line)
	if withCaddy {
		fmt.Fprintf(&b, "  %-22s %-34s %s\n", "gateway (Caddy)", gatewayURL, "on "+config+"; admin API http://localhost:2019")
	} else {
		fmt.Fprintf(&b, "  %-22s %-34s %s\n", "gateway", "(not started)", "run: go run ./cmd/caddy run --config Caddyfile.example")
	}
	rows := [][3]string{
		{"authorization server", d.ASURL, "issuer of agent tokens; acme's notion OAuth client"},
		{"notion-like (3rd party)", d.NotionURL + "/mcp", "behind /acme/notion/mcp, acme's OAuth connection token"},
		{"tools (internal)", d.ToolsURL + "/mcp", "behind /acme/tools/mcp, gateway resource token"},
		{"customer acme", d.AcmeURL + "/mcp", "behind /acme/mcp (scenario 2)"},
		{"customer globex", d.GlobexURL + "/mcp", "behind /globex/mcp (same code)"},
		{"billing API (API B)", d.BillingURL, "API keys, reached via the gateway's token endpoint"},
		{"analytics API (API A)", d.AnalyticsURL, "gateway resource tokens"},
		{"public demo", d.PublicURL + "/mcp", "behind /demo/mcp, anonymous"},
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-22s %-34s %s\n", r[0], r[1], r[2])
	}
	fmt.Fprintf(&b, "\nDemo agents (client credentials at the AS; secret demo-secret-<id>):\n")
	for _, a := range demo.Agents {
		fmt.Fprintf(&b, "  %-14s groups=%-16s tenant=%-7s %s\n", a.ID, strings.Join(a.Groups, ","), a.Tenant, a.About)
	}
	fmt.Fprintf(&b, `
Try it (another terminal, repository root):

1. No token at all, the anonymous server:
   go run ./cmd/mcp-demo call --url %[1]s/demo/mcp
   go run ./cmd/mcp-demo call --url %[1]s/demo/mcp roll_dice '{"sides":20}'

   or with curl (2025-06-18, sessions):
   SID=$(curl -si %[1]s/demo/mcp -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
     -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' \
     | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}' | tr -d '\r')
   curl -s %[1]s/demo/mcp -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
     -H 'MCP-Protocol-Version: 2025-06-18' -H "Mcp-Session-Id: $SID" -d '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

2. A protected server without a token: 401 and where to get one
   curl -si %[1]s/acme/tools/mcp -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
   curl -s %[1]s/.well-known/oauth-protected-resource/acme/tools/mcp

3. Scenario 1 with acme's internal agent (read + write):
   TOKEN=$(go run ./cmd/mcp-demo token --agent cursor-acme --aud %[1]s/acme/tools/mcp)
   go run ./cmd/mcp-demo call --url %[1]s/acme/tools/mcp --token "$TOKEN"
   go run ./cmd/mcp-demo call --url %[1]s/acme/tools/mcp --token "$TOKEN" whoami
   curl -s %[1]s/acme/tools/mcp -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
     -H 'Accept: application/json, text/event-stream' \
     -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

   The third-party server, with acme's OAuth connection token injected:
   TOKEN=$(go run ./cmd/mcp-demo token --agent cursor-acme --aud %[1]s/acme/notion/mcp)
   go run ./cmd/mcp-demo call --url %[1]s/acme/notion/mcp --token "$TOKEN" search '{"query":"roadmap"}'

4. A partner gets only mcp:read tools (no update_page, no deploy):
   TOKEN=$(go run ./cmd/mcp-demo token --agent partner-bot --aud %[1]s/acme/notion/mcp)
   go run ./cmd/mcp-demo call --url %[1]s/acme/notion/mcp --token "$TOKEN"

5. Scenario 2, one server per customer; the upstream exchanges its resource token at the
   gateway (%[1]s/oauth2/token) for acme's billing API key and for an analytics token:
   TOKEN=$(go run ./cmd/mcp-demo token --agent cursor-acme --aud %[1]s/acme/mcp)
   go run ./cmd/mcp-demo call --url %[1]s/acme/mcp --token "$TOKEN" list_invoices
   go run ./cmd/mcp-demo call --url %[1]s/acme/mcp --token "$TOKEN" usage_report
   globex's agent cannot use acme's server:
   TOKEN=$(go run ./cmd/mcp-demo token --agent globex-agent --aud %[1]s/acme/mcp)
   go run ./cmd/mcp-demo call --url %[1]s/acme/mcp --token "$TOKEN"

   Any agent, group or tenant: mcp-demo token --agent my-bot --group partners --tenant acme --aud URL

The gateway's audit log (logger mcp.audit, on stderr) records each decision. Ctrl-C stops everything.
%s
`, gatewayURL, line)
	fmt.Fprint(os.Stderr, b.String())
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ExitOnError)
	agent := fs.String("agent", "", "agent (OAuth client) id, e.g. cursor-acme, partner-bot, globex-agent, or a new one")
	aud := fs.String("aud", "", "resource (audience) of the token: the gateway server's URL, e.g. "+gatewayURL+"/acme/tools/mcp")
	var groups multi
	fs.Var(&groups, "group", "group of the agent (repeatable; default: the preset agent's)")
	tenant := fs.String("tenant", "", "tenant claim (default: the preset agent's)")
	scope := fs.String("scope", "mcp:read mcp:write", "scopes to request")
	as := fs.String("as", "http://127.0.0.1:9400", "demo authorization server")
	fs.Parse(args)
	if *agent == "" || *aud == "" {
		fs.Usage()
		return errors.New("--agent and --aud are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var g []string
	if len(groups) > 0 {
		g = groups
	}
	tok, err := demo.RequestAgentToken(ctx, *as, *agent, g, *tenant, *aud, *scope)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func call(args []string) error {
	fs := flag.NewFlagSet("call", flag.ExitOnError)
	url := fs.String("url", gatewayURL+"/demo/mcp", "MCP endpoint")
	tok := fs.String("token", "", "agent access token (Authorization: Bearer)")
	version := fs.String("version", "", "protocol version (default: the Go SDK's, 2026-07-28)")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := http.DefaultClient
	if *tok != "" {
		hc = &http.Client{Transport: bearerTransport{*tok}}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcp-demo", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: *url, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true},
		&mcp.ClientSessionOptions{ProtocolVersion: *version})
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", *url, err)
	}
	defer cs.Close()
	if fs.NArg() == 0 {
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			return err
		}
		fmt.Printf("%d tool(s) at %s:\n", len(res.Tools), *url)
		for _, t := range res.Tools {
			fmt.Printf("  %-16s %s\n", t.Name, t.Description)
		}
		return nil
	}
	var params map[string]any
	if fs.NArg() > 1 {
		if err := json.Unmarshal([]byte(fs.Arg(1)), &params); err != nil {
			return fmt.Errorf("arguments must be a JSON object: %w", err)
		}
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: fs.Arg(0), Arguments: params})
	if err != nil {
		return err
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			fmt.Println(t.Text)
		} else {
			out, _ := json.Marshal(c)
			fmt.Println(string(out))
		}
	}
	if res.IsError {
		return errors.New("the tool reported an error")
	}
	return nil
}
