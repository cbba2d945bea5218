package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// newIssuer serves an empty JWKS at /jwks.json on loopback and returns its
// base URL, to be configured as an issuer.
func newIssuer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks.json" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"keys":[]}`)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// protectedResourceMetadata is the RFC 9728 document.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name"`
	ResourceDocumentation  string   `json:"resource_documentation"`
	ResourcePolicyURI      string   `json:"resource_policy_uri"`
	ResourceTOSURI         string   `json:"resource_tos_uri"`
	ResourceLogoURI        string   `json:"resource_logo_uri"`
}

// TestMetadataAndChallenge: RFC 9728 metadata for every server at
// /.well-known/oauth-protected-resource<path>, with the tenant's issuers
// when it has some and the global ones otherwise; a protected server
// answers 401 with the challenge and its upstream sees nothing.
func TestMetadataAndChallenge(t *testing.T) {
	t.Parallel()
	globalIss, acmeIss := newIssuer(t), newIssuer(t)
	acmeUp, globexUp, hostUp := newUpstream(t, "acme-billing"), newUpstream(t, "globex-billing"), newUpstream(t, "acme-host")
	port := freePort(t)
	startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %[1]s {
		jwks_uri %[1]s/jwks.json
	}
	tenant acme {
		issuer %[2]s {
			jwks_uri %[2]s/jwks.json
		}
	}
	tenant globex {
	}
%[3]s}`, globalIss, acmeIss, openPolicy),
		Sites: fmt.Sprintf(`http://:%d {
	route {
	mcp_gateway {
		server acme-billing {
			tenant acme
			path /acme/billing/mcp
			upstream %s
			scopes mcp:read mcp:write:invoices
			require mcp:read
			branding {
				name "Acme Billing"
				logo_uri https://acme.example/logo.png
				documentation https://docs.acme.example/mcp
				policy_uri https://acme.example/privacy
				tos_uri https://acme.example/terms
			}
		}
		server globex-billing {
			tenant globex
			path /globex/billing/mcp
			upstream %s
			scopes mcp:read
			require mcp:read mcp:write
		}
		server acme-host {
			tenant acme
			host acme.test
			path /mcp
			upstream %s
			resource https://mcp.acme.example/mcp
			anonymous
		}
	}
	respond "fallthrough" 200
	}
}
`, port, acmeUp.URL, globexUp.URL, hostUp.URL),
		WaitPorts: []int{port},
	})
	hc := newLoopbackClient(port, nil)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	getMeta := func(t *testing.T, url string) *protectedResourceMetadata {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", url, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s Content-Type %q, want application/json", url, ct)
		}
		var m protectedResourceMetadata
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
		return &m
	}

	t.Run("tenant issuers and branding", func(t *testing.T) {
		m := getMeta(t, base+"/.well-known/oauth-protected-resource/acme/billing/mcp")
		want := &protectedResourceMetadata{
			Resource:               base + "/acme/billing/mcp",
			AuthorizationServers:   []string{acmeIss},
			ScopesSupported:        []string{"mcp:read", "mcp:write:invoices"},
			BearerMethodsSupported: []string{"header"},
			ResourceName:           "Acme Billing",
			ResourceDocumentation:  "https://docs.acme.example/mcp",
			ResourcePolicyURI:      "https://acme.example/privacy",
			ResourceTOSURI:         "https://acme.example/terms",
			ResourceLogoURI:        "https://acme.example/logo.png",
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("metadata\n got %+v\nwant %+v", m, want)
		}
	})

	t.Run("global issuers", func(t *testing.T) {
		m := getMeta(t, base+"/.well-known/oauth-protected-resource/globex/billing/mcp")
		if m.Resource != base+"/globex/billing/mcp" {
			t.Errorf("resource = %q, want %q", m.Resource, base+"/globex/billing/mcp")
		}
		if !reflect.DeepEqual(m.AuthorizationServers, []string{globalIss}) {
			t.Errorf("authorization_servers = %v, want the global issuer %v (globex has none of its own)", m.AuthorizationServers, []string{globalIss})
		}
		if !reflect.DeepEqual(m.BearerMethodsSupported, []string{"header"}) {
			t.Errorf("bearer_methods_supported = %v", m.BearerMethodsSupported)
		}
	})

	t.Run("host server with explicit resource", func(t *testing.T) {
		m := getMeta(t, "http://acme.test/.well-known/oauth-protected-resource/mcp")
		if m.Resource != "https://mcp.acme.example/mcp" {
			t.Errorf("resource = %q, want the configured https://mcp.acme.example/mcp", m.Resource)
		}
		if !reflect.DeepEqual(m.AuthorizationServers, []string{acmeIss}) {
			t.Errorf("authorization_servers = %v, want acme's %v", m.AuthorizationServers, []string{acmeIss})
		}
		// Another host has no server at /mcp: no metadata there.
		resp, err := hc.Get("http://globex.test/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "fallthrough" {
			t.Errorf("metadata for a host without the server = %d %q, want the next handler's answer", resp.StatusCode, b)
		}
	})

	t.Run("no metadata for unknown paths", func(t *testing.T) {
		resp, err := hc.Get(base + "/.well-known/oauth-protected-resource/nope/mcp")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "fallthrough" {
			t.Errorf("metadata for an unknown server = %d %q, want the next handler's answer", resp.StatusCode, b)
		}
	})

	challenge := func(t *testing.T, path, scope string, up *upstream) {
		t.Helper()
		body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a token = %d, want 401", path, resp.StatusCode)
		}
		got := resp.Header.Get("WWW-Authenticate")
		metaURL := base + "/.well-known/oauth-protected-resource" + path
		params := parseChallenge(got)
		if !strings.HasPrefix(got, "Bearer ") {
			t.Errorf("WWW-Authenticate %q is not a Bearer challenge", got)
		}
		if params["resource_metadata"] != metaURL {
			t.Errorf("WWW-Authenticate %q: resource_metadata = %q, want %q", got, params["resource_metadata"], metaURL)
		}
		if params["scope"] != scope {
			t.Errorf("WWW-Authenticate %q: scope = %q, want %q", got, params["scope"], scope)
		}
		if n := len(up.Requests()); n != 0 {
			t.Errorf("the protected upstream received %d requests:\n%s", n, up.Summary())
		}
		// A token in the query string is no token.
		req, _ = http.NewRequest("POST", base+path+"?access_token=abc", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if resp, err := hc.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// The exact path has a query: the server still matches by path.
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s?access_token=... = %d, want 401 or 400", path, resp.StatusCode)
			}
		}
		if n := len(up.Requests()); n != 0 {
			t.Errorf("the protected upstream received %d requests:\n%s", n, up.Summary())
		}
	}
	t.Run("401 challenge acme", func(t *testing.T) { challenge(t, "/acme/billing/mcp", "mcp:read", acmeUp) })
	t.Run("401 challenge globex", func(t *testing.T) { challenge(t, "/globex/billing/mcp", "mcp:read mcp:write", globexUp) })

	t.Run("go-sdk client refused", func(t *testing.T) {
		ctx, cancel := testContext(t, 15)
		defer cancel()
		if _, err := mcpConnect(ctx, t, port, base+"/acme/billing/mcp", clientOptions{}); err == nil {
			t.Errorf("the go-sdk client connected to a protected server without a token")
		}
		if n := len(acmeUp.Requests()); n != 0 {
			t.Errorf("the protected upstream received %d requests:\n%s", n, acmeUp.Summary())
		}
	})
}

// parseChallenge returns the auth-params of a WWW-Authenticate challenge.
func parseChallenge(h string) map[string]string {
	out := map[string]string{}
	_, rest, ok := strings.Cut(h, " ")
	if !ok {
		return out
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.TrimSpace(k)
		if strings.HasPrefix(v, `"`) {
			end := 1
			var val strings.Builder
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' && end+1 < len(v) {
					end++
				}
				val.WriteByte(v[end])
				end++
			}
			out[k] = val.String()
			rest = v[min(end+1, len(v)):]
		} else {
			val, r, _ := strings.Cut(v, ",")
			out[k] = strings.TrimSpace(val)
			rest = r
		}
	}
	return out
}
