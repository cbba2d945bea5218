package caddymcp

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/sessions"
)

// This file holds every configuration check, as plain functions over the
// config structs. The Caddyfile parsers call them (and add the Caddyfile
// line); App.checkConfig and validateServers call them for JSON configs, where
// the error names the object instead ("tenant "acme": connection "x": ...").
//
// Glob syntax is package policy's (policy.CompileGlob), for names of
// servers, tenants, tools and prompts, resource URIs, policy scopes, scope
// mappings and agent IDs: `*` matches any run of characters, including `/`
// and `:`; `?` matches exactly one character; every other character is
// literal (no classes, no escapes). In a pattern that starts with
// `scheme://`, a `*` in the authority never crosses into the path. A
// pattern is bad when it is empty, is not UTF-8 or contains whitespace or
// control characters. A pattern without `*` or `?` is an exact name.

// allowedAlgorithms are the JWS algorithms an issuer may list.
var allowedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// credentialKinds lists the credential kinds of a connection, in order.
var credentialKinds = []string{"oauth2", "api_key", "bearer", "token_exchange", "resource_token"}

// checkConfig checks the app configuration, once, at the start of
// Provision (so the app is not a caddy.Validator: Caddy would run the same
// checks a second time after provisioning). It is read-only; defaults
// are set in Provision.
func (a *App) checkConfig() error {
	if a.Environment != "" {
		if err := checkName("environment", a.Environment); err != nil {
			return err
		}
	}
	if err := validateIssuers(a.Issuers); err != nil {
		return err
	}
	if a.SessionKey != "" {
		if err := validateSessionKey(a.SessionKey); err != nil {
			return err
		}
	}
	if a.ResourceTokens != nil {
		if err := validateResourceTokens(a.ResourceTokens); err != nil {
			return fmt.Errorf("resource_tokens: %w", err)
		}
	}
	if a.Cache != nil {
		if err := validateCache(a.Cache); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	tenants := make(map[string]bool, len(a.Tenants))
	for i, t := range a.Tenants {
		if t == nil {
			return fmt.Errorf("tenants[%d]: empty", i)
		}
		if tenants[t.Name] {
			return errAlreadySpecified("tenant", t.Name)
		}
		tenants[t.Name] = true
		if err := checkName("tenant", t.Name); err != nil {
			return err
		}
		if err := validateTenant(t); err != nil {
			return fmt.Errorf("tenant %q: %w", t.Name, err)
		}
	}
	policies := make(map[string]bool, len(a.Policies))
	for i, p := range a.Policies {
		if p == nil {
			return fmt.Errorf("policies[%d]: empty", i)
		}
		if policies[p.Name] {
			return errAlreadySpecified("policy", p.Name)
		}
		policies[p.Name] = true
		if err := checkName("policy", p.Name); err != nil {
			return err
		}
		if err := validatePolicy(p); err != nil {
			return fmt.Errorf("policy %q: %w", p.Name, err)
		}
		if err := checkPolicyTenants(p, tenants); err != nil {
			return fmt.Errorf("policy %q: %w", p.Name, err)
		}
	}
	return nil
}

// findTenant returns the named tenant (the app may not be provisioned
// yet), through an index rebuilt whenever tenants were added, so checking
// thousands of servers stays linear.
func (a *App) findTenant(name string) *TenantConfig {
	if a == nil {
		return nil
	}
	if len(a.tenantIdx) != len(a.Tenants) {
		a.tenantIdx = make(map[string]*TenantConfig, len(a.Tenants))
		for _, t := range a.Tenants {
			if t != nil {
				if _, dup := a.tenantIdx[t.Name]; !dup {
					a.tenantIdx[t.Name] = t
				}
			}
		}
		if len(a.tenantIdx) != len(a.Tenants) {
			// duplicates or nils: fall back to a search (checkConfig reports them)
			for _, t := range a.Tenants {
				if t != nil && t.Name == name {
					return t
				}
			}
			return nil
		}
	}
	return a.tenantIdx[name]
}

// validateIssuers checks a list of issuers and that none is listed twice.
func validateIssuers(issuers []*IssuerConfig) error {
	seen := make(map[string]bool, len(issuers))
	for i, iss := range issuers {
		if iss == nil {
			return fmt.Errorf("issuers[%d]: empty", i)
		}
		if seen[iss.Issuer] {
			return errAlreadySpecified("issuer", iss.Issuer)
		}
		seen[iss.Issuer] = true
		if err := checkIssuerURL("issuer", iss.Issuer); err != nil {
			return err
		}
		if err := validateIssuer(iss); err != nil {
			return fmt.Errorf("issuer %q: %w", iss.Issuer, err)
		}
	}
	return nil
}

// validateIssuer checks one authorization server.
func validateIssuer(iss *IssuerConfig) error {
	if err := checkIssuerURL("issuer", iss.Issuer); err != nil {
		return err
	}
	if iss.JWKSURI != "" {
		if err := checkSecureURL("jwks_uri", iss.JWKSURI); err != nil {
			return err
		}
	}
	if err := checkAlgorithms(iss.Algorithms); err != nil {
		return err
	}
	for _, c := range []struct{ field, v string }{
		{"agent_claim", iss.AgentClaim}, {"groups_claim", iss.GroupsClaim}, {"tenant_claim", iss.TenantClaim},
	} {
		if err := checkClaimName(c.field, c.v); err != nil {
			return err
		}
	}
	return checkDuration("leeway", iss.Leeway)
}

// validateResourceTokens checks the resource token issuer settings.
func validateResourceTokens(rt *ResourceTokensConfig) error {
	if rt.Issuer != "" {
		if err := checkIssuerURL("issuer", rt.Issuer); err != nil {
			return err
		}
	}
	return checkDuration("ttl", rt.TTL)
}

// validateCache checks the cache budget.
func validateCache(c *CacheConfig) error {
	if c.MaxCost < 0 {
		return fmt.Errorf("max_cost must not be negative")
	}
	return nil
}

// validateTenant checks a tenant, its issuers and connections.
func validateTenant(t *TenantConfig) error {
	if err := validateIssuers(t.Issuers); err != nil {
		return err
	}
	seen := make(map[string]bool, len(t.Connections))
	for i, c := range t.Connections {
		if c == nil {
			return fmt.Errorf("connections[%d]: empty", i)
		}
		if seen[c.Name] {
			return errAlreadySpecified("connection", c.Name)
		}
		seen[c.Name] = true
		if err := checkName("connection", c.Name); err != nil {
			return err
		}
		if err := validateConnection(c); err != nil {
			return fmt.Errorf("connection %q: %w", c.Name, err)
		}
	}
	return nil
}

// connectionKinds returns the credential kinds a connection sets.
func connectionKinds(c *ConnectionConfig) []string {
	var kinds []string
	if c.OAuth2 != nil {
		kinds = append(kinds, "oauth2")
	}
	if c.APIKey != nil {
		kinds = append(kinds, "api_key")
	}
	if c.Bearer != "" {
		kinds = append(kinds, "bearer")
	}
	if c.TokenExchange != nil {
		kinds = append(kinds, "token_exchange")
	}
	if c.ResourceToken != nil {
		kinds = append(kinds, "resource_token")
	}
	return kinds
}

func errTwoCredentials(kinds []string) error {
	return fmt.Errorf("more than one credential (%s): a connection takes at most one of %s",
		strings.Join(kinds, ", "), strings.Join(credentialKinds, ", "))
}

var errNoCredential = fmt.Errorf("no credential: a connection needs one of %s, or header lines",
	strings.Join(credentialKinds, ", "))

// validateConnection checks a tenant connection: at most one credential
// kind, and at least one credential or header.
func validateConnection(c *ConnectionConfig) error {
	kinds := connectionKinds(c)
	if len(kinds) > 1 {
		return errTwoCredentials(kinds)
	}
	if len(kinds) == 0 && len(c.Headers) == 0 {
		return errNoCredential
	}
	if c.OAuth2 != nil {
		if err := validateOAuth2(c.OAuth2); err != nil {
			return fmt.Errorf("oauth2: %w", err)
		}
	}
	if c.APIKey != nil {
		if err := checkHeaderName("api_key", c.APIKey.Header); err != nil {
			return err
		}
		if c.APIKey.Value == "" {
			return fmt.Errorf("api_key: value is required")
		}
		if err := checkHeaderValue("api_key", c.APIKey.Value); err != nil {
			return err
		}
	}
	if c.Bearer != "" {
		if err := checkHeaderValue("bearer", c.Bearer); err != nil {
			return err
		}
	}
	if c.TokenExchange != nil {
		if err := validateTokenExchange(c.TokenExchange); err != nil {
			return fmt.Errorf("token_exchange: %w", err)
		}
	}
	if c.ResourceToken != nil {
		if err := validateResourceToken(c.ResourceToken); err != nil {
			return fmt.Errorf("resource_token: %w", err)
		}
	}
	seen := make(map[string]bool, len(c.Headers))
	for _, h := range c.Headers {
		if err := checkConnectionHeader(c, h, seen); err != nil {
			return err
		}
	}
	scopes := make(map[string]bool, len(c.ScopeMap))
	for _, m := range c.ScopeMap {
		if err := checkScopeMapping(m, scopes); err != nil {
			return err
		}
	}
	return nil
}

// reservedHeaders may not be set by a connection's header lines.
var reservedHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Te", "Trailer", "Mcp-Session-Id"}

// checkConnectionHeader checks one extra header of a connection; seen
// collects the canonical names so far.
func checkConnectionHeader(c *ConnectionConfig, h HeaderConfig, seen map[string]bool) error {
	if err := checkHeaderName("header", h.Name); err != nil {
		return err
	}
	if err := checkHeaderValue("header "+h.Name, h.Value); err != nil {
		return err
	}
	name := canonicalHeader(h.Name)
	if slices.Contains(reservedHeaders, name) {
		return fmt.Errorf("header %s: the gateway manages this header", h.Name)
	}
	if seen[name] {
		return errAlreadySpecified("header", h.Name)
	}
	seen[name] = true
	if c.APIKey != nil && canonicalHeader(c.APIKey.Header) == name {
		return fmt.Errorf("header %s: already set by api_key", h.Name)
	}
	if name == "Authorization" && (c.OAuth2 != nil || c.Bearer != "" || c.TokenExchange != nil || c.ResourceToken != nil) {
		return fmt.Errorf("header Authorization: already set by the connection's %s credential", connectionKinds(c)[0])
	}
	return nil
}

// checkScopeMapping checks one scope_map line; seen collects the gateway
// scopes so far.
func checkScopeMapping(m ScopeMapping, seen map[string]bool) error {
	if err := checkGlob("scope_map", m.Scope); err != nil {
		return err
	}
	if seen[m.Scope] {
		return errAlreadySpecified("scope_map", m.Scope)
	}
	seen[m.Scope] = true
	if len(m.Downstream) == 0 {
		return fmt.Errorf("scope_map %s: needs at least one downstream scope", m.Scope)
	}
	for _, s := range m.Downstream {
		if err := checkScope("scope_map", s); err != nil {
			return err
		}
	}
	return nil
}

// validateOAuth2 checks an oauth2 credential.
func validateOAuth2(o *OAuth2Config) error {
	if o.TokenURL == "" {
		return fmt.Errorf("token_url is required")
	}
	if err := checkSecureURL("token_url", o.TokenURL); err != nil {
		return err
	}
	if o.ClientID == "" {
		return fmt.Errorf("client_id is required")
	}
	if err := checkAuthMethod(o.AuthMethod); err != nil {
		return err
	}
	for _, s := range o.Scopes {
		if err := checkScope("scopes", s); err != nil {
			return err
		}
	}
	if o.Resource != "" {
		if err := checkAbsoluteURL("resource", o.Resource); err != nil {
			return err
		}
	}
	return nil
}

// validateTokenExchange checks a token_exchange credential.
func validateTokenExchange(te *TokenExchangeConfig) error {
	if te.TokenURL == "" {
		return fmt.Errorf("token_url is required")
	}
	if err := checkSecureURL("token_url", te.TokenURL); err != nil {
		return err
	}
	if te.ClientSecret != "" && te.ClientID == "" {
		return fmt.Errorf("client_secret needs a client_id")
	}
	if err := checkAuthMethod(te.AuthMethod); err != nil {
		return err
	}
	for _, s := range te.Scopes {
		if err := checkScope("scopes", s); err != nil {
			return err
		}
	}
	if te.Resource != "" {
		if err := checkAbsoluteURL("resource", te.Resource); err != nil {
			return err
		}
	}
	return nil
}

// validateResourceToken checks a resource_token credential.
func validateResourceToken(rt *ResourceTokenConfig) error {
	if rt.Audience == "" {
		return fmt.Errorf("audience is required")
	}
	return checkDuration("ttl", rt.TTL)
}

// validatePolicy checks one policy's syntax (not whether the tenants and
// servers it names exist).
func validatePolicy(p *PolicyConfig) error {
	switch p.Effect {
	case "allow", "deny":
	case "":
		return fmt.Errorf("needs allow or deny")
	default:
		return fmt.Errorf("effect %q: must be allow or deny", p.Effect)
	}
	if err := checkMode(p.Mode); err != nil {
		return err
	}
	for _, a := range p.Agents {
		if err := checkAgent(a); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		field string
		vals  []string
	}{{"servers", p.Servers}, {"tenants", p.Tenants}, {"scopes", p.Scopes}, {"environments", p.Environments}} {
		for _, v := range l.vals {
			if err := checkGlob(l.field, v); err != nil {
				return err
			}
		}
	}
	for _, ip := range p.IP {
		if err := checkIP(ip); err != nil {
			return err
		}
	}
	return nil
}

// checkPolicyCompiles refuses at adapt time whatever the policy engine
// would refuse at load. (At load, App.Provision compiles every policy once
// into the engine; this per-policy compile is for the Caddyfile line.)
func checkPolicyCompiles(p *PolicyConfig) error {
	if _, err := policy.Compile([]policy.Policy{*p}, "", policy.Options{}); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("policy %q: ", p.Name)))
	}
	return nil
}

// checkPolicyTenants refuses a policy naming, without glob characters, a
// tenant that is not configured.
func checkPolicyTenants(p *PolicyConfig, tenants map[string]bool) error {
	for _, t := range p.Tenants {
		if !isGlob(t) && !tenants[t] {
			return errUndefinedTenant(t)
		}
	}
	return nil
}

// validatePolicyServers refuses a policy naming, without glob characters, a
// server that no mcp_gateway handler defines. servers holds every server
// name of every handler; it is called once all handlers are known.
func validatePolicyServers(policies []*PolicyConfig, servers map[string]bool) error {
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, s := range p.Servers {
			if !isGlob(s) && !servers[s] {
				return fmt.Errorf("policy %q: server %q is not defined by any mcp_gateway", p.Name, s)
			}
		}
	}
	return nil
}

func errUndefinedTenant(name string) error {
	return fmt.Errorf("tenant %q is not defined in the mcp app", name)
}

func errNoConnection(tenant, conn string) error {
	return fmt.Errorf("tenant %q has no connection %q", tenant, conn)
}

func errAlreadySpecified(kind, name string) error {
	return fmt.Errorf("%s %q already specified", kind, name)
}

// validateServers checks the servers of one mcp_gateway handler against the
// app: each server, unique names, and no two servers on one host + path.
func validateServers(servers []*ServerConfig, app *App) error {
	names := make(map[string]bool, len(servers))
	endpoints := make(map[string]string, len(servers))
	for i, s := range servers {
		if s == nil {
			return fmt.Errorf("servers[%d]: empty", i)
		}
		if names[s.Name] {
			return errAlreadySpecified("server", s.Name)
		}
		names[s.Name] = true
		if err := checkName("server", s.Name); err != nil {
			return err
		}
		if err := validateServer(s, app); err != nil {
			return fmt.Errorf("server %q: %w", s.Name, err)
		}
		key := endpointKey(s)
		if other, ok := endpoints[key]; ok {
			return fmt.Errorf("server %q: %s", s.Name, errEndpointTaken(s, other))
		}
		endpoints[key] = s.Name
	}
	return nil
}

// endpointKey is the routing key of a server: lowercased host and path.
func endpointKey(s *ServerConfig) string {
	p := s.Path
	if p == "" {
		p = "/mcp"
	}
	return strings.ToLower(s.Host) + p
}

func errEndpointTaken(s *ServerConfig, other string) error {
	p := s.Path
	if p == "" {
		p = "/mcp"
	}
	host := "any host"
	if s.Host != "" {
		host = "host " + s.Host
	}
	return fmt.Errorf("%s and path %s are already served by server %q", host, p, other)
}

// validateServer checks one server; app (may be nil to skip) must define
// its tenant and connection.
func validateServer(s *ServerConfig, app *App) error {
	if s.Tenant == "" {
		return fmt.Errorf("tenant is required")
	}
	if s.Upstream == "" {
		return fmt.Errorf("upstream is required")
	}
	if err := checkUpstream(s.Upstream); err != nil {
		return err
	}
	if s.Path != "" {
		if err := checkPath("path", s.Path); err != nil {
			return err
		}
	}
	if s.Host != "" {
		if err := checkHost(s.Host); err != nil {
			return err
		}
	}
	if s.Resource != "" {
		if err := checkAbsoluteURL("resource", s.Resource); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		field string
		vals  []string
	}{{"scopes", s.Scopes}, {"require", s.Require}} {
		for _, v := range l.vals {
			if err := checkScope(l.field, v); err != nil {
				return err
			}
		}
	}
	for _, l := range []struct {
		field string
		rules []ItemRule
	}{{"tool", s.Tools}, {"resource", s.Resources}, {"prompt", s.Prompts}} {
		seen := make(map[string]bool, len(l.rules))
		for _, r := range l.rules {
			if err := checkItemRule(l.field, r, seen); err != nil {
				return err
			}
		}
	}
	for _, o := range s.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	if s.Session != nil {
		if err := checkDuration("session ttl", s.Session.TTL); err != nil {
			return err
		}
		if err := checkDuration("session idle", s.Session.Idle); err != nil {
			return err
		}
	}
	if b := s.Branding; b != nil {
		for _, u := range []struct{ field, v string }{
			{"logo_uri", b.LogoURI}, {"documentation", b.Documentation}, {"policy_uri", b.PolicyURI}, {"tos_uri", b.TOSURI},
		} {
			if u.v != "" {
				if err := checkAbsoluteURL(u.field, u.v); err != nil {
					return err
				}
			}
		}
	}
	if app != nil {
		t := app.findTenant(s.Tenant)
		if t == nil {
			return errUndefinedTenant(s.Tenant)
		}
		if s.Connection != "" && !slices.ContainsFunc(t.Connections, func(c *ConnectionConfig) bool {
			return c != nil && c.Name == s.Connection
		}) {
			return errNoConnection(s.Tenant, s.Connection)
		}
	}
	return nil
}

// checkItemRule checks a tool, resource or prompt rule; seen collects the
// patterns so far (a repeated pattern could never match).
func checkItemRule(field string, r ItemRule, seen map[string]bool) error {
	if r.Match == "" {
		return fmt.Errorf("%s: empty pattern", field)
	}
	if err := checkGlob(field, r.Match); err != nil {
		return err
	}
	if seen[r.Match] {
		return errAlreadySpecified(field, r.Match)
	}
	seen[r.Match] = true
	for _, sc := range r.Scopes {
		if err := checkScope(field+" "+r.Match, sc); err != nil {
			return err
		}
	}
	return nil
}

// checkTokenEndpoint checks the handler's token_endpoint against its
// servers' paths.
func checkTokenEndpoint(p string, servers []*ServerConfig) error {
	if err := checkPath("token_endpoint", p); err != nil {
		return err
	}
	for _, s := range servers {
		if s != nil && (s.Path == p || s.Path == "" && p == "/mcp") {
			return fmt.Errorf("token_endpoint %s: is also the path of server %q", p, s.Name)
		}
	}
	return nil
}

// --- field checks ---

// checkName checks the name of a tenant, connection, policy, server or
// environment: letters, digits, '.', '_' and '-', starting with a letter
// or digit (so that a name is never a glob and fits in a URL or a claim).
func checkName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is required", kind)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && (r == '.' || r == '_' || r == '-')
		if !ok {
			return fmt.Errorf("%s name %q: only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit", kind, name)
		}
	}
	return nil
}

// hasPlaceholder reports a runtime placeholder such as {env.X}.
func hasPlaceholder(s string) bool {
	i := strings.IndexByte(s, '{')
	return i >= 0 && strings.IndexByte(s[i:], '}') > 0
}

// parseAbsoluteURL parses an absolute http(s) URL without user info or
// fragment.
func parseAbsoluteURL(field, s string) (*url.URL, error) {
	if hasPlaceholder(s) {
		return nil, fmt.Errorf("%s %q: placeholders are not allowed in URLs (use {$VAR} to substitute at adapt time)", field, s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: not a valid URL", field, s)
	}
	if u.Scheme == "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%s %q: not an absolute URL", field, s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%s %q: scheme must be https", field, s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s %q: must not carry user info", field, s)
	}
	if u.Fragment != "" || strings.HasSuffix(s, "#") {
		return nil, fmt.Errorf("%s %q: must not have a fragment", field, s)
	}
	return u, nil
}

// checkAbsoluteURL checks an absolute http or https URL (branding links,
// resource identifiers).
func checkAbsoluteURL(field, s string) error {
	_, err := parseAbsoluteURL(field, s)
	return err
}

// checkSecureURL checks an https URL, or http to a loopback address.
func checkSecureURL(field, s string) error {
	u, err := parseAbsoluteURL(field, s)
	if err != nil {
		return err
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%s %q: must use https (http only for localhost, 127.0.0.0/8 or ::1)", field, s)
	}
	return nil
}

// checkIssuerURL checks an issuer identifier: a secure URL without query.
func checkIssuerURL(field, s string) error {
	if err := checkSecureURL(field, s); err != nil {
		return err
	}
	if strings.Contains(s, "?") {
		return fmt.Errorf("%s %q: must not have a query", field, s)
	}
	return nil
}

// checkUpstream checks a server's upstream MCP endpoint.
func checkUpstream(s string) error {
	if err := checkSecureURL("upstream", s); err != nil {
		return err
	}
	_, err := parseUpstream(s)
	return err
}

// isLoopback reports localhost, 127.0.0.0/8 and ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkOrigin checks a browser origin: scheme://host[:port], nothing else.
func checkOrigin(s string) error {
	u, err := parseAbsoluteURL("allowed_origins", s)
	if err != nil {
		return err
	}
	if u.Path != "" || u.RawQuery != "" || strings.HasSuffix(s, "?") {
		return fmt.Errorf("allowed_origins %q: an origin is scheme://host[:port], without path", s)
	}
	return nil
}

// checkPath checks an absolute request path.
func checkPath(field, p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%s %q: must start with /", field, p)
	}
	if strings.ContainsAny(p, "?#*{} \t") {
		return fmt.Errorf("%s %q: an exact path, without query, fragment, wildcard or placeholder", field, p)
	}
	if strings.HasPrefix(p, "/.well-known/") {
		return fmt.Errorf("%s %q: /.well-known/ is reserved for metadata", field, p)
	}
	return nil
}

// checkHost checks a host name to route by (no scheme, port or path).
func checkHost(h string) error {
	if strings.ContainsAny(h, "/:?#@ {}") && !(strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")) {
		return fmt.Errorf("host %q: a host name or IP address, without scheme, port or path", h)
	}
	return nil
}

// checkDuration refuses a negative duration (zero means the default).
func checkDuration(field string, d caddy.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s must not be negative", field)
	}
	return nil
}

// checkAlgorithms checks an allow-list of JWS algorithms.
func checkAlgorithms(algs []string) error {
	seen := make(map[string]bool, len(algs))
	for _, a := range algs {
		switch {
		case strings.EqualFold(a, "none"):
			return fmt.Errorf("algorithm %q: unsigned tokens are never accepted", a)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			return fmt.Errorf("algorithm %q: symmetric (HMAC) algorithms are never accepted", a)
		case !slices.Contains(allowedAlgorithms, a):
			return fmt.Errorf("algorithm %q: not supported (supported: %s)", a, strings.Join(allowedAlgorithms, " "))
		}
		if seen[a] {
			return fmt.Errorf("algorithm %q listed twice", a)
		}
		seen[a] = true
	}
	return nil
}

// checkAuthMethod checks a client authentication method.
func checkAuthMethod(m string) error {
	switch m {
	case "", "client_secret_basic", "client_secret_post":
		return nil
	}
	return fmt.Errorf("auth_method %q: must be client_secret_basic or client_secret_post", m)
}

// checkMode checks a policy mode.
func checkMode(m string) error {
	switch m {
	case "", "enforce", "report":
		return nil
	}
	return fmt.Errorf("mode %q: must be enforce or report", m)
}

// checkClaimName checks an optional claim name.
func checkClaimName(field, v string) error {
	if strings.ContainsAny(v, " \t\r\n") {
		return fmt.Errorf("%s %q: not a claim name", field, v)
	}
	return nil
}

// checkScope checks a literal OAuth scope (RFC 6749 scope-token).
func checkScope(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: empty scope", field)
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\\' || r > '~' {
			return fmt.Errorf("%s: scope %q: only printable ASCII, without space, '\"' and '\\'", field, s)
		}
	}
	return nil
}

// checkAgent checks an agent matcher: *, client:ID, group:NAME,
// sub:SUBJECT or claim:NAME=VALUE, with globs in IDs and values.
func checkAgent(a string) error {
	if a == "*" {
		return nil
	}
	kind, val, ok := strings.Cut(a, ":")
	if !ok {
		return fmt.Errorf("agents %q: must be *, client:ID, group:NAME, sub:SUBJECT or claim:NAME=VALUE", a)
	}
	switch kind {
	case "client", "group", "sub":
	case "claim":
		name, v, ok := strings.Cut(val, "=")
		if !ok || name == "" || v == "" {
			return fmt.Errorf("agents %q: claim matchers are claim:NAME=VALUE", a)
		}
		val = v
	default:
		return fmt.Errorf("agents %q: unknown kind %q (client, group, sub or claim)", a, kind)
	}
	if val == "" {
		return fmt.Errorf("agents %q: empty %s", a, kind)
	}
	return checkGlob("agents", val)
}

// checkIP checks a CIDR range or a single IP address (no zones).
func checkIP(s string) error {
	var a netip.Addr
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("ip %q: bad CIDR range", s)
		}
		a = p.Addr()
	} else {
		var err error
		if a, err = netip.ParseAddr(s); err != nil {
			return fmt.Errorf("ip %q: not an IP address or CIDR range", s)
		}
	}
	if a.Zone() != "" {
		return fmt.Errorf("ip %q: zones are not allowed", s)
	}
	return nil
}

// checkGlob checks a glob pattern's syntax (see the top of this file).
func checkGlob(field, pattern string) error {
	if pattern == "" {
		return fmt.Errorf("%s: empty pattern", field)
	}
	if _, err := policy.CompileGlob(pattern); err != nil {
		return fmt.Errorf("%s %q: bad pattern: %v", field, pattern, err)
	}
	return nil
}

// isGlob reports whether a pattern has glob characters.
func isGlob(p string) bool {
	return strings.ContainsAny(p, "*?")
}

// checkHeaderName checks an HTTP header field name (RFC 9110 token).
func checkHeaderName(field, n string) error {
	if n == "" {
		return fmt.Errorf("%s: empty header name", field)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return fmt.Errorf("%s: header name %q: not a valid field name", field, n)
		}
	}
	return nil
}

// checkHeaderValue refuses control characters in a header value.
func checkHeaderValue(field, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("%s: header value contains a line break or NUL", field)
	}
	return nil
}

func canonicalHeader(n string) string {
	return textproto.CanonicalMIMEHeaderKey(n)
}

// validateSessionKey accepts a runtime placeholder (resolved at load) or
// 32 bytes in base64.
func validateSessionKey(v string) error {
	if strings.HasPrefix(v, "{env.") || strings.HasPrefix(v, "{file.") {
		return nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(v); err == nil && len(k) == sessions.KeySize {
			return nil
		}
	}
	return fmt.Errorf("session_key must be %d random bytes in base64 (e.g. `head -c 32 /dev/urandom | base64`), or a {env.*} / {file.*} placeholder", sessions.KeySize)
}
