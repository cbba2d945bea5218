package caddymcp

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestValidateJSON checks that JSON configs get the checks the Caddyfile
// gets: the same message, prefixed with the object path instead of
// followed by the Caddyfile line.
func TestValidateJSON(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"ok", `{"tenants":[{"name":"acme"}]}`, ""},
		{"issuer http", `{"issuers":[{"issuer":"http://auth.example.com"}]}`,
			`issuer "http://auth.example.com": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"issuer loopback", `{"issuers":[{"issuer":"http://[::1]:8080"},{"issuer":"http://localhost"},{"issuer":"http://127.1.2.3"}]}`, ""},
		{"issuer twice", `{"issuers":[{"issuer":"https://a.example"},{"issuer":"https://a.example"}]}`, `issuer "https://a.example" already specified`},
		{"jwks http", `{"issuers":[{"issuer":"https://a.example","jwks_uri":"http://a.example/k"}]}`,
			`issuer "https://a.example": jwks_uri "http://a.example/k": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"alg HS", `{"issuers":[{"issuer":"https://a.example","algorithms":["HS512"]}]}`,
			`issuer "https://a.example": algorithm "HS512": symmetric (HMAC) algorithms are never accepted`},
		{"alg none", `{"issuers":[{"issuer":"https://a.example","algorithms":["none"]}]}`,
			`issuer "https://a.example": algorithm "none": unsigned tokens are never accepted`},
		{"leeway negative", `{"issuers":[{"issuer":"https://a.example","leeway":"-1s"}]}`, `issuer "https://a.example": leeway must not be negative`},
		{"resource_tokens http", `{"resource_tokens":{"issuer":"http://mcp.example.com"}}`,
			`resource_tokens: issuer "http://mcp.example.com": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"cache negative", `{"cache":{"max_cost":-1}}`, `cache: max_cost must not be negative`},
		{"tenant twice", `{"tenants":[{"name":"acme"},{"name":"acme"}]}`, `tenant "acme" already specified`},
		{"tenant bad name", `{"tenants":[{"name":"a b"}]}`, `tenant name "a b": only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit`},
		{"connection twice", `{"tenants":[{"name":"acme","connections":[{"name":"c","bearer":"x"},{"name":"c","bearer":"y"}]}]}`,
			`tenant "acme": connection "c" already specified`},
		{"connection empty", `{"tenants":[{"name":"acme","connections":[{"name":"c"}]}]}`,
			`tenant "acme": connection "c": no credential: a connection needs one of oauth2, api_key, bearer, token_exchange, resource_token, or header lines`},
		{"connection headers only", `{"tenants":[{"name":"acme","connections":[{"name":"c","headers":[{"name":"X-A","value":"1"}]}]}]}`, ""},
		{"connection two kinds", `{"tenants":[{"name":"acme","connections":[{"name":"c","bearer":"x","api_key":{"header":"X-K","value":"v"}}]}]}`,
			`tenant "acme": connection "c": more than one credential (api_key, bearer): a connection takes at most one of oauth2, api_key, bearer, token_exchange, resource_token`},
		{"oauth2 http", `{"tenants":[{"name":"acme","connections":[{"name":"c","oauth2":{"token_url":"http://as.example/t","client_id":"x"}}]}]}`,
			`tenant "acme": connection "c": oauth2: token_url "http://as.example/t": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"oauth2 auth_method", `{"tenants":[{"name":"acme","connections":[{"name":"c","oauth2":{"token_url":"https://as.example/t","client_id":"x","auth_method":"none"}}]}]}`,
			`tenant "acme": connection "c": oauth2: auth_method "none": must be client_secret_basic or client_secret_post`},
		{"token_exchange no url", `{"tenants":[{"name":"acme","connections":[{"name":"c","token_exchange":{}}]}]}`,
			`tenant "acme": connection "c": token_exchange: token_url is required`},
		{"resource_token no audience", `{"tenants":[{"name":"acme","connections":[{"name":"c","resource_token":{}}]}]}`,
			`tenant "acme": connection "c": resource_token: audience is required`},
		{"api_key no value", `{"tenants":[{"name":"acme","connections":[{"name":"c","api_key":{"header":"X-K"}}]}]}`,
			`tenant "acme": connection "c": api_key: value is required`},
		{"scope_map bad", `{"tenants":[{"name":"acme","connections":[{"name":"c","bearer":"x","scope_map":[{"scope":"a"}]}]}]}`,
			`tenant "acme": connection "c": scope_map a: needs at least one downstream scope`},
		{"policy no effect", `{"policies":[{"name":"p"}]}`, `policy "p": needs allow or deny`},
		{"policy mode", `{"policies":[{"name":"p","effect":"allow","mode":"dry"}]}`, `policy "p": mode "dry": must be enforce or report`},
		{"policy agent", `{"policies":[{"name":"p","effect":"allow","agents":["user:x"]}]}`, `policy "p": agents "user:x": unknown kind "user" (client, group, sub or claim)`},
		{"policy cidr", `{"policies":[{"name":"p","effect":"allow","ip":["10.0.0.0/40"]}]}`, `policy "p": ip "10.0.0.0/40": bad CIDR range`},
		{"policy zone", `{"policies":[{"name":"p","effect":"allow","ip":["fe80::1%eth0"]}]}`, `policy "p": ip "fe80::1%eth0": zones are not allowed`},
		{"policy glob", `{"policies":[{"name":"p","effect":"allow","scopes":["a b"]}]}`, `policy "p": scopes "a b": bad pattern: pattern "a b" contains whitespace or a control character`},
		{"policy tenant", `{"tenants":[{"name":"acme"}],"policies":[{"name":"p","effect":"allow","tenants":["acme","globex"]}]}`, `policy "p": tenant "globex" is not defined in the mcp app`},
		{"policy tenant glob", `{"tenants":[{"name":"acme"}],"policies":[{"name":"p","effect":"allow","tenants":["glob*"]}]}`, ""},
		{"policy twice", `{"policies":[{"name":"p","effect":"allow"},{"name":"p","effect":"deny"}]}`, `policy "p" already specified`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := new(App)
			if err := json.Unmarshal([]byte(tc.json), a); err != nil {
				t.Fatal(err)
			}
			checkErr(t, a.checkConfig(), tc.want)
		})
	}
}

func TestValidateServersJSON(t *testing.T) {
	app := new(App)
	if err := json.Unmarshal([]byte(`{"tenants":[{"name":"acme","connections":[{"name":"billing","bearer":"x"}]},{"name":"globex"}]}`), app); err != nil {
		t.Fatal(err)
	}
	const ok = `"tenant":"acme","upstream":"https://u.example/mcp"`
	for _, tc := range []struct {
		name, json, want string
	}{
		{"ok", `[{"name":"a",` + ok + `},{"name":"b",` + ok + `,"path":"/b"}]`, ""},
		{"no tenant", `[{"name":"a","upstream":"https://u.example"}]`, `server "a": tenant is required`},
		{"no upstream", `[{"name":"a","tenant":"acme"}]`, `server "a": upstream is required`},
		{"undefined tenant", `[{"name":"a","tenant":"initech","upstream":"https://u.example"}]`, `server "a": tenant "initech" is not defined in the mcp app`},
		{"missing connection", `[{"name":"a","tenant":"globex","connection":"billing","upstream":"https://u.example"}]`, `server "a": tenant "globex" has no connection "billing"`},
		{"upstream http", `[{"name":"a","tenant":"acme","upstream":"http://u.example"}]`, `server "a": upstream "http://u.example": must use https (http only for localhost, 127.0.0.0/8 or ::1)`},
		{"upstream loopback", `[{"name":"a","tenant":"acme","upstream":"http://127.0.0.1:3000/mcp"}]`, ""},
		{"path", `[{"name":"a",` + ok + `,"path":"mcp"}]`, `server "a": path "mcp": must start with /`},
		{"same endpoint", `[{"name":"a",` + ok + `},{"name":"b",` + ok + `,"path":"/mcp"}]`, `server "b": any host and path /mcp are already served by server "a"`},
		{"bad name", `[{"name":"a b",` + ok + `}]`, `server name "a b": only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit`},
		{"same name", `[{"name":"a",` + ok + `},{"name":"a",` + ok + `,"path":"/b"}]`, `server "a" already specified`},
		{"tool glob", `[{"name":"a",` + ok + `,"tools":[{"match":""}]}]`, `server "a": tool: empty pattern`},
		{"tool twice", `[{"name":"a",` + ok + `,"tools":[{"match":"x"},{"match":"x"}]}]`, `server "a": tool "x" already specified`},
		{"origin", `[{"name":"a",` + ok + `,"allowed_origins":["app.example"]}]`, `server "a": allowed_origins "app.example": not an absolute URL`},
		{"session", `[{"name":"a",` + ok + `,"session":{"idle":-1}}]`, `server "a": session idle must not be negative`},
		{"branding", `[{"name":"a",` + ok + `,"branding":{"tos_uri":"terms"}}]`, `server "a": tos_uri "terms": not an absolute URL`},
		{"resource", `[{"name":"a",` + ok + `,"resource":"https://a.example/mcp#x"}]`, `server "a": resource "https://a.example/mcp#x": must not have a fragment`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var servers []*ServerConfig
			if err := json.Unmarshal([]byte(tc.json), &servers); err != nil {
				t.Fatal(err)
			}
			checkErr(t, validateServers(servers, app), tc.want)
		})
	}
}

func TestValidatePolicyServers(t *testing.T) {
	policies := []*PolicyConfig{{Name: "p", Effect: "allow", Servers: []string{"acme-*", "billing"}}}
	checkErr(t, validatePolicyServers(policies, map[string]bool{"billing": true}), "")
	checkErr(t, validatePolicyServers(policies, map[string]bool{"acme-x": true}), `policy "p": server "billing" is not defined by any mcp_gateway`)
}

func TestCheckTokenEndpoint(t *testing.T) {
	servers := []*ServerConfig{{Name: "a"}}
	checkErr(t, checkTokenEndpoint("/mcp", servers), `token_endpoint /mcp: is also the path of server "a"`)
	checkErr(t, checkTokenEndpoint("/token", servers), "")
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want %s", want)
	case want != "" && err.Error() != want:
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// TestSameMessagesAsCaddyfile checks that a bad config gets the same
// message from the Caddyfile and from JSON, minus the line.
func TestSameMessagesAsCaddyfile(t *testing.T) {
	core := `token_url "http://as.example/t": must use https (http only for localhost, 127.0.0.0/8 or ::1)`
	_, cfErr := adaptCaddyfile(globalCaddyfile("tenant acme {\n\tconnection c {\n\t\toauth2 {\n\t\t\ttoken_url http://as.example/t\n\t\t}\n\t}\n}"))
	a := new(App)
	_ = json.Unmarshal([]byte(`{"tenants":[{"name":"acme","connections":[{"name":"c","oauth2":{"token_url":"http://as.example/t","client_id":"x"}}]}]}`), a)
	jsErr := a.checkConfig()
	if cfErr == nil || jsErr == nil || !strings.Contains(cfErr.Error(), core+", at Caddyfile:6") || !strings.HasSuffix(jsErr.Error(), core) {
		t.Fatalf("caddyfile: %v\njson: %v", cfErr, jsErr)
	}
}
