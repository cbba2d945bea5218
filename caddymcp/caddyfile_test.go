package caddymcp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// globalCaddyfile puts body (lines starting at Caddyfile line 3) into the
// `mcp` global option.
func globalCaddyfile(body string) string {
	return "{\n\tmcp {\n" + body + "\n\t}\n}\n"
}

// gatewayPrefix defines tenants acme (connection billing) and globex.
const gatewayPrefix = `{
	mcp {
		tenant acme {
			connection billing {
				api_key X-Api-Key secret
			}
		}
		tenant globex
	}
}
example.com {
	mcp_gateway {
`

// gatewayCaddyfile puts body into an mcp_gateway block; body's first line
// is Caddyfile line 13.
func gatewayCaddyfile(body string) string {
	return gatewayPrefix + body + "\n\t}\n}\n"
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		line int // within body, 1-based
		want string
	}{
		// global option
		{"unknown subdirective", "foo bar", 1, `unrecognized subdirective "foo"`},
		{"environment twice", "environment a\nenvironment b", 2, "environment already specified"},
		{"environment no arg", "environment", 1, "wrong argument count or unexpected line ending after 'environment'"},
		{"environment two args", "environment a b", 1, "wrong argument count or unexpected line ending after 'b'"},
		{"issuer http", "issuer http://auth.example.com", 1, `issuer "http://auth.example.com": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"issuer not url", "issuer auth.example.com", 1, `issuer "auth.example.com": not an absolute URL`},
		{"issuer placeholder", "issuer {env.ISSUER}", 1, `issuer "{env.ISSUER}": placeholders are not allowed in URLs (use {$VAR} to substitute at adapt time)`},
		{"issuer query", "issuer https://a.example/?x=1", 1, `issuer "https://a.example/?x=1": must not have a query`},
		{"issuer twice", "issuer https://a.example\nissuer https://a.example", 2, `issuer "https://a.example" already specified`},
		{"issuer unknown sub", "issuer https://a.example {\n\tjwks https://a.example/k\n}", 2, `unrecognized subdirective "jwks"`},
		{"jwks_uri http", "issuer https://a.example {\n\tjwks_uri http://a.example/k\n}", 2, `jwks_uri "http://a.example/k": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"jwks_uri twice", "issuer https://a.example {\n\tjwks_uri https://a.example/k\n\tjwks_uri https://a.example/k\n}", 3, "jwks_uri already specified"},
		{"alg none", "issuer https://a.example {\n\talgorithms RS256 none\n}", 2, `algorithm "none": unsigned tokens are never accepted`},
		{"alg HS256", "issuer https://a.example {\n\talgorithms HS256\n}", 2, `algorithm "HS256": symmetric (HMAC) algorithms are never accepted`},
		{"alg unknown", "issuer https://a.example {\n\talgorithms RS1\n}", 2, `algorithm "RS1": not supported (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)`},
		{"algorithms empty", "issuer https://a.example {\n\talgorithms\n}", 2, "wrong argument count or unexpected line ending after 'algorithms'"},
		{"leeway bad", "issuer https://a.example {\n\tleeway soon\n}", 2, `leeway "soon": bad duration`},
		{"leeway negative", "issuer https://a.example {\n\tleeway -5s\n}", 2, "leeway must not be negative"},
		{"agent_claim extra", "issuer https://a.example {\n\tagent_claim a b\n}", 2, "wrong argument count or unexpected line ending after 'b'"},
		{"subdirective with block", "issuer https://a.example {\n\tleeway 5s {\n\t}\n}", 2, "leeway takes no block"},
		{"block after args", "tenant acme {\n\tconnection a {\n\t\theader X-A 1 {\n\t\t\tfoo\n\t\t}\n\t}\n}", 3, "header takes no block"},
		{"resource_tokens twice", "resource_tokens\nresource_tokens", 2, "resource_tokens already specified"},
		{"resource_tokens http issuer", "resource_tokens {\n\tissuer http://mcp.example.com\n}", 2, `issuer "http://mcp.example.com": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"resource_tokens bad ttl", "resource_tokens {\n\tttl 5 minutes\n}", 2, "wrong argument count or unexpected line ending after 'minutes'"},
		{"resource_tokens unknown", "resource_tokens {\n\tkey x\n}", 2, `unrecognized subdirective "key"`},
		{"cache bad size", "cache {\n\tmax_cost lots\n}", 2, `max_cost "lots": bad size (for example 64MiB)`},
		{"cache twice", "cache\ncache", 2, "cache already specified"},
		{"tenant twice", "tenant acme\ntenant acme", 2, `tenant "acme" already specified`},
		{"tenant bad name", "tenant acme*", 1, `tenant name "acme*": only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit`},
		{"tenant no name", "tenant {\n}", 1, "wrong argument count or unexpected line ending after 'tenant'"},
		{"tenant unknown sub", "tenant acme {\n\tserver x\n}", 2, `unrecognized subdirective "server"`},
		{"connection twice", "tenant acme {\n\tconnection a {\n\t\tbearer x\n\t}\n\tconnection a {\n\t\tbearer y\n\t}\n}", 5, `connection "a" already specified`},
		{"connection empty", "tenant acme {\n\tconnection a\n}", 2, `connection "a": no credential: a connection needs one of oauth2, api_key, bearer, token_exchange, resource_token, or header lines`},
		{"connection two kinds", "tenant acme {\n\tconnection a {\n\t\tbearer x\n\t\tapi_key X-Key y\n\t}\n}", 4, "more than one credential (bearer, api_key): a connection takes at most one of oauth2, api_key, bearer, token_exchange, resource_token"},
		{"connection kind twice", "tenant acme {\n\tconnection a {\n\t\tbearer x\n\t\tbearer y\n\t}\n}", 4, "bearer already specified"},
		{"api_key one arg", "tenant acme {\n\tconnection a {\n\t\tapi_key X-Key\n\t}\n}", 3, "wrong argument count or unexpected line ending after 'X-Key'"},
		{"api_key bad header", "tenant acme {\n\tconnection a {\n\t\tapi_key X(Key) v\n\t}\n}", 3, `api_key: header name "X(Key)": not a valid field name`},
		{"header reserved", "tenant acme {\n\tconnection a {\n\t\theader host x\n\t}\n}", 3, "header host: the gateway manages this header"},
		{"header twice", "tenant acme {\n\tconnection a {\n\t\theader X-A 1\n\t\theader x-a 2\n\t}\n}", 4, `header "x-a" already specified`},
		{"header vs api_key", "tenant acme {\n\tconnection a {\n\t\tapi_key X-Key v\n\t\theader X-Key 2\n\t}\n}", 4, "header X-Key: already set by api_key"},
		{"header authorization", "tenant acme {\n\tconnection a {\n\t\tbearer t\n\t\theader Authorization x\n\t}\n}", 4, "header Authorization: already set by the connection's bearer credential"},
		{"scope_map one arg", "tenant acme {\n\tconnection a {\n\t\tbearer t\n\t\tscope_map mcp:read\n\t}\n}", 4, "wrong argument count or unexpected line ending after 'mcp:read'"},
		{"scope_map twice", "tenant acme {\n\tconnection a {\n\t\tbearer t\n\t\tscope_map s a\n\t\tscope_map s b\n\t}\n}", 5, `scope_map "s" already specified`},
		{"oauth2 http token_url", "tenant acme {\n\tconnection a {\n\t\toauth2 {\n\t\t\ttoken_url http://as.example/token\n\t\t}\n\t}\n}", 4, `token_url "http://as.example/token": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"oauth2 no token_url", "tenant acme {\n\tconnection a {\n\t\toauth2 {\n\t\t\tclient_id x\n\t\t}\n\t}\n}", 3, "oauth2: token_url is required"},
		{"oauth2 no client_id", "tenant acme {\n\tconnection a {\n\t\toauth2 {\n\t\t\ttoken_url https://as.example/token\n\t\t}\n\t}\n}", 3, "oauth2: client_id is required"},
		{"oauth2 auth_method", "tenant acme {\n\tconnection a {\n\t\toauth2 {\n\t\t\tauth_method private_key_jwt\n\t\t}\n\t}\n}", 4, `auth_method "private_key_jwt": must be client_secret_basic or client_secret_post`},
		{"oauth2 unknown", "tenant acme {\n\tconnection a {\n\t\toauth2 {\n\t\t\tgrant x\n\t\t}\n\t}\n}", 4, `unrecognized subdirective "grant"`},
		{"token_exchange no url", "tenant acme {\n\tconnection a {\n\t\ttoken_exchange {\n\t\t\tclient_id x\n\t\t}\n\t}\n}", 3, "token_exchange: token_url is required"},
		{"token_exchange loopback ok, bad method", "tenant acme {\n\tconnection a {\n\t\ttoken_exchange {\n\t\t\ttoken_url http://127.0.0.2/t\n\t\t\tauth_method basic\n\t\t}\n\t}\n}", 5, `auth_method "basic": must be client_secret_basic or client_secret_post`},
		{"resource_token no audience", "tenant acme {\n\tconnection a {\n\t\tresource_token {\n\t\t\tttl 1m\n\t\t}\n\t}\n}", 3, "resource_token: audience is required"},
		{"resource_token bad ttl", "tenant acme {\n\tconnection a {\n\t\tresource_token {\n\t\t\tttl x\n\t\t}\n\t}\n}", 4, `ttl "x": bad duration`},
		{"connection unknown", "tenant acme {\n\tconnection a {\n\t\tbasic_auth u p\n\t}\n}", 3, `unrecognized subdirective "basic_auth"`},
		{"policy no effect", "policy p {\n\tagents *\n}", 1, `policy "p": needs allow or deny`},
		{"policy both effects", "policy p {\n\tallow\n\tdeny\n}", 3, "deny: effect already specified (allow)"},
		{"policy allow arg", "policy p {\n\tallow all\n}", 2, "wrong argument count or unexpected line ending after 'all'"},
		{"policy mode", "policy p {\n\tallow\n\tmode dry-run\n}", 3, `mode "dry-run": must be enforce or report`},
		{"policy mode twice", "policy p {\n\tallow\n\tmode report\n\tmode report\n}", 4, "mode already specified"},
		{"policy agent kind", "policy p {\n\tallow\n\tagents user:bob\n}", 3, `agents "user:bob": unknown kind "user" (client, group, sub or claim)`},
		{"policy agent no kind", "policy p {\n\tallow\n\tagents bob\n}", 3, `agents "bob": must be *, client:ID, group:NAME, sub:SUBJECT or claim:NAME=VALUE`},
		{"policy agent claim", "policy p {\n\tallow\n\tagents claim:org\n}", 3, `agents "claim:org": claim matchers are claim:NAME=VALUE`},
		{"policy agent empty", "policy p {\n\tallow\n\tagents client:\n}", 3, `agents "client:": empty client`},
		{"policy bad cidr", "policy p {\n\tallow\n\tip 10.0.0.0/33\n}", 3, `ip "10.0.0.0/33": bad CIDR range`},
		{"policy bad ip", "policy p {\n\tallow\n\tip 10.0.0.256\n}", 3, `ip "10.0.0.256": not an IP address or CIDR range`},
		{"policy unknown tenant", "policy p {\n\tallow\n\ttenants nobody\n}", 3, `tenant "nobody" is not defined in the mcp app`},
		{"policy unknown", "policy p {\n\tallow\n\tusers x\n}", 3, `unrecognized subdirective "users"`},
		{"policy twice", "policy p {\n\tallow\n}\npolicy p {\n\tdeny\n}", 4, `policy "p" already specified`},
		{"policy empty list", "policy p {\n\tallow\n\tscopes\n}", 3, "wrong argument count or unexpected line ending after 'scopes'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptCaddyfile(globalCaddyfile(tc.body))
			want := fmt.Sprintf("parsing caddyfile tokens for 'mcp': %s, at Caddyfile:%d", tc.want, tc.line+2)
			if err == nil || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
		})
	}
}

func TestCaddyfileGatewayErrors(t *testing.T) {
	const at = 12 // body line 1 is Caddyfile line 13
	for _, tc := range []struct {
		name string
		body string
		line int
		want string
	}{
		{"unknown subdirective", "serve x", 1, `unrecognized subdirective "serve"`},
		{"token_endpoint relative", "token_endpoint oauth2/token", 1, `token_endpoint "oauth2/token": must start with /`},
		{"token_endpoint twice", "token_endpoint /a\ntoken_endpoint /b", 2, "token_endpoint already specified"},
		{"no tenant", "server s {\n\tupstream https://u.example\n}", 1, `server "s": tenant is required`},
		{"no upstream", "server s {\n\ttenant acme\n}", 1, `server "s": upstream is required`},
		{"empty server", "server s", 1, `server "s": tenant is required`},
		{"undefined tenant", "server s {\n\ttenant initech\n\tupstream https://u.example\n}", 2, `tenant "initech" is not defined in the mcp app`},
		{"missing connection", "server s {\n\ttenant globex\n\tupstream https://u.example\n\tconnection billing\n}", 4, `tenant "globex" has no connection "billing"`},
		{"upstream http", "server s {\n\ttenant acme\n\tupstream http://u.example/mcp\n}", 3, `upstream "http://u.example/mcp": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"upstream query", "server s {\n\ttenant acme\n\tupstream https://u.example/mcp?a=b\n}", 3, `upstream "https://u.example/mcp?a=b": must not carry user info, query or fragment`},
		{"upstream twice", "server s {\n\ttenant acme\n\tupstream https://u.example\n\tupstream https://u.example\n}", 4, "upstream already specified"},
		{"path relative", "server s {\n\tpath mcp\n}", 2, `path "mcp": must start with /`},
		{"path well-known", "server s {\n\tpath /.well-known/x\n}", 2, `path "/.well-known/x": /.well-known/ is reserved for metadata`},
		{"host with scheme", "server s {\n\thost https://a.example\n}", 2, `host "https://a.example": a host name or IP address, without scheme, port or path`},
		{"resource audience bad", "server s {\n\tresource /acme/mcp\n}", 2, `resource "/acme/mcp": not an absolute URL`},
		{"resource audience twice", "server s {\n\tresource https://a.example/mcp\n\tresource https://b.example/mcp\n}", 3, "resource (the audience) already specified"},
		{"resource rule twice", "server s {\n\tresource file:///* a\n\tresource file:///* b\n}", 3, `resource "file:///*" already specified`},
		{"tool no args", "server s {\n\ttool\n}", 2, "wrong argument count or unexpected line ending after 'tool'"},
		{"tool twice", "server s {\n\ttool * a\n\ttool * b\n}", 3, `tool "*" already specified`},
		{"tool bad scope", "server s {\n\ttool x a\"b\n}", 2, `tool x: scope "a\"b": only printable ASCII, without space, '"' and '\'`},
		{"prompt bad pattern", "server s {\n\tprompt \"a b\" s\n}", 2, `prompt "a b": bad pattern: pattern "a b" contains whitespace or a control character`},
		{"origin with path", "server s {\n\tallowed_origins https://a.example/app\n}", 2, `allowed_origins "https://a.example/app": an origin is scheme://host[:port], without path`},
		{"anonymous arg", "server s {\n\tanonymous yes\n}", 2, "wrong argument count or unexpected line ending after 'yes'"},
		{"anonymous twice", "server s {\n\tanonymous\n\tanonymous\n}", 3, "anonymous already specified"},
		{"session bad", "server s {\n\tsession {\n\t\tttl forever\n\t}\n}", 3, `ttl "forever": bad duration`},
		{"session unknown", "server s {\n\tsession {\n\t\tmax 1h\n\t}\n}", 3, `unrecognized subdirective "max"`},
		{"branding bad url", "server s {\n\tbranding {\n\t\tlogo_uri logo.png\n\t}\n}", 3, `logo_uri "logo.png": not an absolute URL`},
		{"branding unknown", "server s {\n\tbranding {\n\t\tcolor red\n\t}\n}", 3, `unrecognized subdirective "color"`},
		{"reverse_proxy twice", "server s {\n\treverse_proxy {\n\t}\n\treverse_proxy {\n\t}\n}", 4, "reverse_proxy already specified"},
		{"reverse_proxy bad sub", "server s {\n\ttenant acme\n\tupstream https://u.example\n\treverse_proxy {\n\t\tlb_polic first\n\t}\n}", 5, "unrecognized subdirective lb_polic"},
		{"server unknown", "server s {\n\tupstreams https://u.example\n}", 2, `unrecognized subdirective "upstreams"`},
		{"server twice", "server s {\n\ttenant acme\n\tupstream https://u.example\n\tpath /a\n}\nserver s {\n\ttenant acme\n\tupstream https://u.example\n\tpath /b\n}", 6, `server "s" already specified`},
		{"same endpoint", "server a {\n\ttenant acme\n\tupstream https://u.example\n}\nserver b {\n\ttenant globex\n\tupstream https://v.example\n}", 5, `server "b": any host and path /mcp are already served by server "a"`},
		{"same host endpoint", "server a {\n\ttenant acme\n\thost A.example\n\tpath /x\n\tupstream https://u.example\n}\nserver b {\n\ttenant globex\n\thost a.example\n\tpath /x\n\tupstream https://v.example\n}", 7, `server "b": host a.example and path /x are already served by server "a"`},
		{"token_endpoint is server path", "token_endpoint /mcp\nserver a {\n\ttenant acme\n\tupstream https://u.example\n}", 1, `token_endpoint /mcp: is also the path of server "a"`},
		{"bad server name", "server a/b {\n}", 1, `server name "a/b": only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptCaddyfile(gatewayCaddyfile(tc.body))
			want := fmt.Sprintf("parsing caddyfile tokens for 'mcp_gateway': %s, at Caddyfile:%d", tc.want, tc.line+at)
			if err == nil || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
		})
	}
}

// checkRoundTrip decodes the mcp app and every mcp_gateway handler of an
// adapted config into their Go types, checks them with the JSON-config
// validation, and checks that they encode back to the same JSON.
func checkRoundTrip(t *testing.T, adapted []byte) {
	t.Helper()
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	app := new(App)
	if raw, ok := cfg.Apps["mcp"]; ok {
		sameJSON(t, raw, app)
	}
	if err := app.checkConfig(); err != nil {
		t.Errorf("App.Validate on adapted JSON: %v", err)
	}
	var tree any
	if raw, ok := cfg.Apps["http"]; ok {
		if err := json.Unmarshal(raw, &tree); err != nil {
			t.Fatal(err)
		}
	}
	servers := map[string]bool{}
	for _, raw := range findHandlers(tree, "mcp_gateway") {
		h := new(Handler)
		sameJSON(t, raw, h)
		if err := validateServers(h.Servers, app); err != nil {
			t.Errorf("validateServers on adapted JSON: %v", err)
		}
		for _, s := range h.Servers {
			servers[s.Name] = true
			if len(s.ProxyRaw) == 0 {
				t.Errorf("server %s: no reverse_proxy in the adapted JSON", s.Name)
			}
		}
	}
	if err := validatePolicyServers(app.Policies, servers); err != nil && len(servers) > 0 {
		t.Errorf("validatePolicyServers: %v", err)
	}
}

// sameJSON decodes raw into v, encodes v again and compares.
func sameJSON(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decoding %T: %v", v, err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal(raw, &a)
	_ = json.Unmarshal(again, &b)
	if m, ok := a.(map[string]any); ok {
		delete(m, "handler") // the module name is not a field
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("%T does not round-trip:\n%s\n%s", v, raw, again)
	}
}

// findHandlers returns every JSON object in tree whose "handler" is name.
func findHandlers(tree any, name string) []json.RawMessage {
	var out []json.RawMessage
	switch v := tree.(type) {
	case map[string]any:
		if v["handler"] == name {
			raw, _ := json.Marshal(v)
			return append(out, raw)
		}
		for _, c := range v {
			out = append(out, findHandlers(c, name)...)
		}
	case []any:
		for _, c := range v {
			out = append(out, findHandlers(c, name)...)
		}
	}
	return out
}

func TestUnmarshalCaddyfileDirect(t *testing.T) {
	d := caddyfile.NewTestDispenser(`mcp_gateway {
		server s {
			tenant anyone
			upstream https://u.example/mcp
			connection c
			reverse_proxy {
				lb_policy first
			}
		}
	}`)
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if len(h.Servers) != 1 || h.Servers[0].Tenant != "anyone" || !strings.Contains(string(h.Servers[0].ProxyRaw), `"policy":"first"`) {
		t.Fatalf("unexpected %+v", h.Servers[0])
	}
	// without global options the tenant is checked at provision
	if err := validateServers(h.Servers, new(App)); err == nil || err.Error() != `server "s": tenant "anyone" is not defined in the mcp app` {
		t.Fatalf("validateServers: %v", err)
	}

	d = caddyfile.NewTestDispenser(`mcp_gateway {
		server s {
			tenant anyone
			upstream https://u.example/mcp
			reverse_proxy {
				handle_response {
					respond 502
				}
			}
		}
	}`)
	if err := new(Handler).UnmarshalCaddyfile(d); err == nil || err.Error() != "handle_response needs the Caddyfile adapter, at Testfile:5" {
		t.Fatalf("handle_response without adapter: %v", err)
	}

	a := new(App)
	d = caddyfile.NewTestDispenser(`mcp {
		tenant acme
		policy p {
			allow
			tenants acme
		}
	}`)
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if len(a.Tenants) != 1 || len(a.Policies) != 1 || a.Policies[0].Effect != "allow" {
		t.Fatalf("unexpected %+v", a)
	}
}

func TestGlobalOptionMerges(t *testing.T) {
	out, err := adaptCaddyfile("{\n\tmcp {\n\t\ttenant acme\n\t}\n\tmcp {\n\t\ttenant globex\n\t\tpolicy p {\n\t\t\tallow\n\t\t\ttenants acme globex\n\t\t}\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"name": "acme"`) || !strings.Contains(out, `"name": "globex"`) {
		t.Fatalf("merged option lost a tenant:\n%s", out)
	}
	_, err = adaptCaddyfile("{\n\tmcp {\n\t\ttenant acme\n\t}\n\tmcp {\n\t\ttenant acme\n\t}\n}\n")
	if want := `parsing caddyfile tokens for 'mcp': tenant "acme" already specified, at Caddyfile:6`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestServerNamesUniqueAcrossSites(t *testing.T) {
	_, err := adaptCaddyfile(`{
	mcp {
		tenant acme
	}
}
a.example.com {
	mcp_gateway {
		server s {
			tenant acme
			upstream https://u.example
		}
	}
}
b.example.com {
	mcp_gateway {
		server s {
			tenant acme
			upstream https://u.example
		}
	}
}
`)
	want := `parsing caddyfile tokens for 'mcp_gateway': server "s" already specified in another mcp_gateway, at Caddyfile:16`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestNoGlobalOption(t *testing.T) {
	_, err := adaptCaddyfile("example.com {\n\tmcp_gateway {\n\t\tserver s {\n\t\t\ttenant acme\n\t\t\tupstream https://u.example\n\t\t}\n\t}\n}\n")
	want := `parsing caddyfile tokens for 'mcp_gateway': tenant "acme" is not defined in the mcp app, at Caddyfile:4`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestGlobalOptionArgs(t *testing.T) {
	_, err := adaptCaddyfile("{\n\tmcp on\n}\n")
	want := "parsing caddyfile tokens for 'mcp': wrong argument count or unexpected line ending after 'on', at Caddyfile:2"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, err = adaptCaddyfile("example.com {\n\tmcp_gateway on\n}\n")
	want = "parsing caddyfile tokens for 'mcp_gateway': wrong argument count or unexpected line ending after 'on', at Caddyfile:2"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestSessionKeyOption(t *testing.T) {
	good := "{\n\tmcp {\n\t\tsession_key " + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(good), nil); err != nil {
		t.Fatalf("good key refused: %v", err)
	}
	for _, v := range []string{"{env.MCP_SESSION_KEY}", "{file./run/secrets/mcp-session}"} {
		cf := "{\n\tmcp {\n\t\tsession_key " + v + "\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil); err != nil {
			t.Fatalf("%s refused: %v", v, err)
		}
	}
	bad := "{\n\tmcp {\n\t\tsession_key c2hvcnQ=\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(bad), nil)
	if err == nil || !strings.Contains(err.Error(), "session_key must be 32 random bytes in base64") || !strings.Contains(err.Error(), "Caddyfile:3") {
		t.Fatalf("short key: %v", err)
	}
}
