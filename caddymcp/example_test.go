package caddymcp

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestCaddyfileExampleAdapts adapts the repository's Caddyfile.example (the
// file the README runs) and checks the result passes the load-time checks
// a JSON config gets. The integration test TestCaddyfileExample runs it.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("Caddyfile.example does not adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s:%d %s", w.File, w.Line, w.Message)
	}
	var cfg struct {
		Apps struct {
			MCP  App `json:"mcp"`
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	app := &cfg.Apps.MCP
	if err := app.checkConfig(); err != nil {
		t.Fatalf("adapted mcp app refused: %v", err)
	}
	app.tenants = map[string]*TenantConfig{}
	for _, tn := range app.Tenants {
		app.tenants[tn.Name] = tn
	}
	// Find the mcp_gateway handlers (possibly nested in subroutes) and
	// check their servers against the app.
	var servers []*ServerConfig
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var h struct {
			Handler string            `json:"handler"`
			Servers []*ServerConfig   `json:"servers"`
			Routes  []json.RawMessage `json:"routes"`
		}
		if json.Unmarshal(raw, &h) != nil {
			return
		}
		if h.Handler == "mcp_gateway" {
			servers = append(servers, h.Servers...)
		}
		for _, r := range h.Routes {
			var route struct {
				Handle []json.RawMessage `json:"handle"`
			}
			if json.Unmarshal(r, &route) == nil {
				for _, hh := range route.Handle {
					walk(hh)
				}
			}
		}
	}
	for _, s := range cfg.Apps.HTTP.Servers {
		for _, r := range s.Routes {
			for _, h := range r.Handle {
				walk(h)
			}
		}
	}
	if len(servers) < 5 {
		t.Fatalf("found %d servers in the adapted example", len(servers))
	}
	if err := validateServers(servers, app); err != nil {
		t.Fatalf("adapted servers refused: %v", err)
	}
	names := map[string]bool{}
	for _, s := range servers {
		names[s.Name] = true
	}
	if err := validatePolicyServers(app.Policies, names); err != nil {
		t.Fatal(err)
	}
}

// TestReadmeCaddyfiles adapts every complete Caddyfile in README.md (a
// ```caddyfile block that starts with the global options block or a site
// address), so the documented examples keep working. Fragments meant to
// go inside a block (a single subdirective, a `tenant { }`) and syntax
// outlines (`{ ... }`) are skipped.
func TestReadmeCaddyfiles(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	site := regexp.MustCompile(`^[a-z0-9.:/*-]+\.[a-z]+(:[0-9]+)? \{$|^:[0-9]+ \{$|^https?://`)
	adapted := 0
	for i, b := range blocks {
		text := b[1]
		first, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
		if first != "{" && !site.MatchString(first) || strings.Contains(text, "{ ... }") {
			continue // a fragment, or a syntax outline with { ... } for blocks
		}
		adapted++
		if _, err := adaptCaddyfile(text); err != nil {
			t.Errorf("README caddyfile block %d (starting %q) does not adapt: %v", i+1, first, err)
		}
	}
	if adapted < 4 {
		t.Fatalf("only %d complete Caddyfiles found in README.md", adapted)
	}
}
