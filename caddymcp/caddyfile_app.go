package caddymcp

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("mcp", parseGlobalOption)
}

// parseGlobalOption parses the `mcp` global option into the mcp app. Syntax
// (see the README's Caddyfile reference):
//
//	mcp {
//		environment <name>
//		issuer <url> {
//			jwks_uri     <url>
//			algorithms   <alg...>
//			agent_claim  <claim>
//			groups_claim <claim>
//			tenant_claim <claim>
//			leeway       <duration>
//		}
//		resource_tokens {
//			issuer      <url>
//			signing_key <pem>
//			ttl         <duration>
//		}
//		cache {
//			max_cost <size>
//		}
//		tenant <name> {
//			issuer <url> { ... }
//			connection <name> { ... }
//		}
//		policy <name> { ... }
//	}
//
// The option may appear more than once; later blocks add to earlier ones.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, fmt.Errorf("unexpected existing value for the mcp option: %T", existing)
		}
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, err
		}
	}
	if err := unmarshalApp(d, app); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "mcp", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the tokens of the `mcp` global
// option; see parseGlobalOption.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalApp(d, a)
}

func unmarshalApp(d *caddyfile.Dispenser, app *App) error {
	d.Next() // the option name
	start := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	// policies naming tenants are checked once every tenant of the block
	// is known, at the line of their `tenants` subdirective
	type tenantsRef struct {
		p   *PolicyConfig
		tok caddyfile.Token
	}
	var refs []tenantsRef
	// name sets, so thousands of tenants and policies adapt in linear time
	tenantNames := make(map[string]bool, len(app.Tenants))
	for _, t := range app.Tenants {
		tenantNames[t.Name] = true
	}
	policyNames := make(map[string]bool, len(app.Policies))
	for _, p := range app.Policies {
		policyNames[p.Name] = true
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "environment":
			if app.Environment != "" {
				return d.Err("environment already specified")
			}
			v, err := singleArg(d)
			if err != nil {
				return err
			}
			if err := checkName("environment", v); err != nil {
				return d.WrapErr(err)
			}
			app.Environment = v

		case "session_key":
			if app.SessionKey != "" {
				return d.Err("session_key already specified")
			}
			v, err := singleArg(d)
			if err != nil {
				return err
			}
			if err := validateSessionKey(v); err != nil {
				return d.WrapErr(err)
			}
			app.SessionKey = v

		case "issuer":
			iss, err := parseIssuer(d)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(app.Issuers, func(o *IssuerConfig) bool { return o.Issuer == iss.Issuer }) {
				return d.WrapErr(errAlreadySpecified("issuer", iss.Issuer))
			}
			app.Issuers = append(app.Issuers, iss)

		case "resource_tokens":
			if app.ResourceTokens != nil {
				return d.Err("resource_tokens already specified")
			}
			rt, err := parseResourceTokens(d)
			if err != nil {
				return err
			}
			app.ResourceTokens = rt

		case "cache":
			if app.Cache != nil {
				return d.Err("cache already specified")
			}
			c, err := parseCache(d)
			if err != nil {
				return err
			}
			app.Cache = c

		case "tenant":
			tok := d.Token()
			t, err := parseTenant(d)
			if err != nil {
				return err
			}
			if tenantNames[t.Name] {
				return errAt(tok, errAlreadySpecified("tenant", t.Name))
			}
			tenantNames[t.Name] = true
			app.Tenants = append(app.Tenants, t)

		case "policy":
			tok := d.Token()
			p, ttok, err := parsePolicy(d)
			if err != nil {
				return err
			}
			if policyNames[p.Name] {
				return errAt(tok, errAlreadySpecified("policy", p.Name))
			}
			policyNames[p.Name] = true
			app.Policies = append(app.Policies, p)
			if len(p.Tenants) > 0 {
				refs = append(refs, tenantsRef{p, ttok})
			}

		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
	}
	tenants := make(map[string]bool, len(app.Tenants))
	for _, t := range app.Tenants {
		tenants[t.Name] = true
	}
	for _, r := range refs {
		if err := checkPolicyTenants(r.p, tenants); err != nil {
			return errAt(r.tok, err)
		}
	}
	// a last net under the checks above, at the line of the option
	if err := app.checkConfig(); err != nil {
		return errAt(start, err)
	}
	return nil
}

// parseIssuer parses `issuer <url> [{ ... }]`.
func parseIssuer(d *caddyfile.Dispenser) (*IssuerConfig, error) {
	tok := d.Token()
	v, err := argThenBlock(d)
	if err != nil {
		return nil, err
	}
	if err := checkIssuerURL("issuer", v); err != nil {
		return nil, d.WrapErr(err)
	}
	iss := &IssuerConfig{Issuer: v}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return nil, d.Errf("%s already specified", dir)
		}
		seen[dir] = true
		switch dir {
		case "jwks_uri":
			if iss.JWKSURI, err = singleArg(d); err != nil {
				return nil, err
			}
			if err := checkSecureURL(dir, iss.JWKSURI); err != nil {
				return nil, d.WrapErr(err)
			}
		case "algorithms":
			if iss.Algorithms, err = someArgs(d); err != nil {
				return nil, err
			}
			if err := checkAlgorithms(iss.Algorithms); err != nil {
				return nil, d.WrapErr(err)
			}
		case "agent_claim":
			if iss.AgentClaim, err = singleArg(d); err != nil {
				return nil, err
			}
		case "groups_claim":
			if iss.GroupsClaim, err = singleArg(d); err != nil {
				return nil, err
			}
		case "tenant_claim":
			if iss.TenantClaim, err = singleArg(d); err != nil {
				return nil, err
			}
		case "leeway":
			if iss.Leeway, err = durationArg(d); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized subdirective %q", dir)
		}
	}
	if err := validateIssuer(iss); err != nil {
		return nil, errAt(tok, fmt.Errorf("issuer %q: %w", iss.Issuer, err))
	}
	return iss, nil
}

// parseResourceTokens parses `resource_tokens [{ ... }]`.
func parseResourceTokens(d *caddyfile.Dispenser) (*ResourceTokensConfig, error) {
	tok := d.Token()
	rt := new(ResourceTokensConfig)
	err := eachSubdirective(d, func(dir string) (err error) {
		switch dir {
		case "issuer":
			if rt.Issuer, err = singleArg(d); err != nil {
				return err
			}
			if err := checkIssuerURL("issuer", rt.Issuer); err != nil {
				return d.WrapErr(err)
			}
		case "signing_key":
			rt.SigningKey, err = singleArg(d)
		case "ttl":
			rt.TTL, err = durationArg(d)
		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := validateResourceTokens(rt); err != nil {
		return nil, errAt(tok, fmt.Errorf("resource_tokens: %w", err))
	}
	return rt, nil
}

// parseCache parses `cache { max_cost <size> }`.
func parseCache(d *caddyfile.Dispenser) (*CacheConfig, error) {
	c := new(CacheConfig)
	err := eachSubdirective(d, func(dir string) error {
		if dir != "max_cost" {
			return d.Errf("unrecognized subdirective %q", dir)
		}
		v, err := singleArg(d)
		if err != nil {
			return err
		}
		n, err := humanize.ParseBytes(v)
		if err != nil || n > 1<<62 {
			return d.Errf("max_cost %q: bad size (for example 64MiB)", v)
		}
		c.MaxCost = int64(n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parseTenant parses `tenant <name> [{ issuer ...; connection ... }]`.
func parseTenant(d *caddyfile.Dispenser) (*TenantConfig, error) {
	tok := d.Token()
	name, err := argThenBlock(d)
	if err != nil {
		return nil, err
	}
	if err := checkName("tenant", name); err != nil {
		return nil, d.WrapErr(err)
	}
	t := &TenantConfig{Name: name}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "issuer":
			iss, err := parseIssuer(d)
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(t.Issuers, func(o *IssuerConfig) bool { return o.Issuer == iss.Issuer }) {
				return nil, d.WrapErr(errAlreadySpecified("issuer", iss.Issuer))
			}
			t.Issuers = append(t.Issuers, iss)
		case "connection":
			ctok := d.Token()
			c, err := parseConnection(d)
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(t.Connections, func(o *ConnectionConfig) bool { return o.Name == c.Name }) {
				return nil, errAt(ctok, errAlreadySpecified("connection", c.Name))
			}
			t.Connections = append(t.Connections, c)
		default:
			return nil, d.Errf("unrecognized subdirective %q", dir)
		}
	}
	if err := validateTenant(t); err != nil {
		return nil, errAt(tok, fmt.Errorf("tenant %q: %w", t.Name, err))
	}
	return t, nil
}

// parseConnection parses `connection <name> { ... }`.
func parseConnection(d *caddyfile.Dispenser) (*ConnectionConfig, error) {
	tok := d.Token()
	name, err := argThenBlock(d)
	if err != nil {
		return nil, err
	}
	if err := checkName("connection", name); err != nil {
		return nil, d.WrapErr(err)
	}
	c := &ConnectionConfig{Name: name}
	headers := map[string]bool{}
	scopes := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		switch dir {
		case "oauth2", "api_key", "bearer", "token_exchange", "resource_token":
			if kinds := connectionKinds(c); len(kinds) > 0 {
				if slices.Contains(kinds, dir) {
					return nil, d.Errf("%s already specified", dir)
				}
				return nil, d.WrapErr(errTwoCredentials(append(kinds, dir)))
			}
		}
		switch dir {
		case "oauth2":
			if c.OAuth2, err = parseOAuth2(d); err != nil {
				return nil, err
			}
		case "api_key":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.ArgErr()
			}
			if err := noBlock(d, dir); err != nil {
				return nil, err
			}
			c.APIKey = &APIKeyConfig{Header: args[0], Value: args[1]}
			if err := checkHeaderName("api_key", args[0]); err != nil {
				return nil, d.WrapErr(err)
			}
		case "bearer":
			if c.Bearer, err = singleArg(d); err != nil {
				return nil, err
			}
		case "token_exchange":
			if c.TokenExchange, err = parseTokenExchange(d); err != nil {
				return nil, err
			}
		case "resource_token":
			if c.ResourceToken, err = parseResourceToken(d); err != nil {
				return nil, err
			}
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.ArgErr()
			}
			if err := noBlock(d, dir); err != nil {
				return nil, err
			}
			h := HeaderConfig{Name: args[0], Value: args[1]}
			if err := checkConnectionHeader(c, h, headers); err != nil {
				return nil, d.WrapErr(err)
			}
			c.Headers = append(c.Headers, h)
		case "scope_map":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return nil, d.ArgErr()
			}
			if err := noBlock(d, dir); err != nil {
				return nil, err
			}
			m := ScopeMapping{Scope: args[0], Downstream: args[1:]}
			if err := checkScopeMapping(m, scopes); err != nil {
				return nil, d.WrapErr(err)
			}
			c.ScopeMap = append(c.ScopeMap, m)
		default:
			return nil, d.Errf("unrecognized subdirective %q", dir)
		}
	}
	if err := validateConnection(c); err != nil {
		return nil, errAt(tok, fmt.Errorf("connection %q: %w", c.Name, err))
	}
	return c, nil
}

// parseOAuth2 parses `oauth2 { ... }`.
func parseOAuth2(d *caddyfile.Dispenser) (*OAuth2Config, error) {
	tok := d.Token()
	o, err := parseClientBlock(d, true)
	if err != nil {
		return nil, err
	}
	if err := validateOAuth2(o); err != nil {
		return nil, errAt(tok, fmt.Errorf("oauth2: %w", err))
	}
	return o, nil
}

// parseTokenExchange parses `token_exchange { ... }`: the subdirectives of
// `oauth2` but refresh_token.
func parseTokenExchange(d *caddyfile.Dispenser) (*TokenExchangeConfig, error) {
	tok := d.Token()
	o, err := parseClientBlock(d, false)
	if err != nil {
		return nil, err
	}
	te := &TokenExchangeConfig{TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		AuthMethod: o.AuthMethod, Audience: o.Audience, Resource: o.Resource, Scopes: o.Scopes}
	if err := validateTokenExchange(te); err != nil {
		return nil, errAt(tok, fmt.Errorf("token_exchange: %w", err))
	}
	return te, nil
}

// parseClientBlock parses the block of an OAuth client of a tenant's
// authorization server (`oauth2`, `token_exchange`).
func parseClientBlock(d *caddyfile.Dispenser, refresh bool) (*OAuth2Config, error) {
	o := new(OAuth2Config)
	err := eachSubdirective(d, func(dir string) (err error) {
		switch dir {
		case "token_url":
			if o.TokenURL, err = singleArg(d); err != nil {
				return err
			}
			if err := checkSecureURL(dir, o.TokenURL); err != nil {
				return d.WrapErr(err)
			}
		case "client_id":
			o.ClientID, err = singleArg(d)
		case "client_secret":
			o.ClientSecret, err = singleArg(d)
		case "auth_method":
			if o.AuthMethod, err = singleArg(d); err == nil {
				if err := checkAuthMethod(o.AuthMethod); err != nil {
					return d.WrapErr(err)
				}
			}
		case "refresh_token":
			if !refresh {
				return d.Errf("unrecognized subdirective %q", dir)
			}
			o.RefreshToken, err = singleArg(d)
		case "scopes":
			o.Scopes, err = someArgs(d)
		case "audience":
			o.Audience, err = singleArg(d)
		case "resource":
			if o.Resource, err = singleArg(d); err == nil {
				if err := checkAbsoluteURL(dir, o.Resource); err != nil {
					return d.WrapErr(err)
				}
			}
		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// eachSubdirective runs fn for every subdirective of the block that follows
// the current token, refusing arguments on the block's own line and a
// subdirective given twice ("X already specified").
func eachSubdirective(d *caddyfile.Dispenser, fn func(dir string) error) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("%s already specified", dir)
		}
		seen[dir] = true
		if err := fn(dir); err != nil {
			return err
		}
	}
	return nil
}

// parseResourceToken parses `resource_token { audience <aud>; ttl <d> }`.
func parseResourceToken(d *caddyfile.Dispenser) (*ResourceTokenConfig, error) {
	tok := d.Token()
	rt := new(ResourceTokenConfig)
	err := eachSubdirective(d, func(dir string) (err error) {
		switch dir {
		case "audience":
			rt.Audience, err = singleArg(d)
		case "ttl":
			rt.TTL, err = durationArg(d)
		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := validateResourceToken(rt); err != nil {
		return nil, errAt(tok, fmt.Errorf("resource_token: %w", err))
	}
	return rt, nil
}

// parsePolicy parses `policy <name> { ... }`. It also returns the token of
// the first `tenants` line, for the check that the tenants exist.
func parsePolicy(d *caddyfile.Dispenser) (*PolicyConfig, caddyfile.Token, error) {
	tok := d.Token()
	var ttok caddyfile.Token
	name, err := argThenBlock(d)
	if err != nil {
		return nil, ttok, err
	}
	if err := checkName("policy", name); err != nil {
		return nil, ttok, d.WrapErr(err)
	}
	p := &PolicyConfig{Name: name}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		switch dir {
		case "allow", "deny":
			if p.Effect != "" {
				return nil, ttok, d.Errf("%s: effect already specified (%s)", dir, p.Effect)
			}
			if err := noArgs(d); err != nil {
				return nil, ttok, err
			}
			p.Effect = dir
		case "mode":
			if p.Mode != "" {
				return nil, ttok, d.Err("mode already specified")
			}
			if p.Mode, err = singleArg(d); err != nil {
				return nil, ttok, err
			}
			if err := checkMode(p.Mode); err != nil {
				return nil, ttok, d.WrapErr(err)
			}
		case "agents", "servers", "tenants", "scopes", "ip", "environments":
			if dir == "tenants" && ttok.Text == "" {
				ttok = d.Token()
			}
			args, err := someArgs(d)
			if err != nil {
				return nil, ttok, err
			}
			for _, a := range args {
				var err error
				switch dir {
				case "agents":
					err = checkAgent(a)
				case "ip":
					if a != "private_ranges" {
						err = checkIP(a)
					}
				default:
					err = checkGlob(dir, a)
				}
				if err != nil {
					return nil, ttok, d.WrapErr(err)
				}
			}
			switch dir {
			case "agents":
				p.Agents = append(p.Agents, args...)
			case "servers":
				p.Servers = append(p.Servers, args...)
			case "tenants":
				p.Tenants = append(p.Tenants, args...)
			case "scopes":
				p.Scopes = append(p.Scopes, args...)
			case "ip":
				for _, a := range args {
					if a == "private_ranges" {
						p.IP = append(p.IP, caddyhttp.PrivateRangesCIDR()...)
					} else {
						p.IP = append(p.IP, a)
					}
				}
			case "environments":
				p.Environments = append(p.Environments, args...)
			}
		default:
			return nil, ttok, d.Errf("unrecognized subdirective %q", dir)
		}
	}
	if err := validatePolicy(p); err != nil {
		return nil, ttok, errAt(tok, fmt.Errorf("policy %q: %w", name, err))
	}
	if err := checkPolicyCompiles(p); err != nil {
		return nil, ttok, errAt(tok, fmt.Errorf("policy %q: %w", name, err))
	}
	return p, ttok, nil
}

// --- dispenser helpers ---

// errAt adds the file and line of tok to err, as Dispenser.WrapErr does.
func errAt(tok caddyfile.Token, err error) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.WrapErr(err)
}

// noBlock refuses a block after a subdirective that takes none.
func noBlock(d *caddyfile.Dispenser, dir string) error {
	tok := d.Token()
	// NextBlock also consumes an empty block ({ }) while returning false
	if d.NextBlock(d.Nesting()) || d.Val() != tok.Text || d.Line() != tok.Line {
		return errAt(tok, fmt.Errorf("%s takes no block", dir))
	}
	return nil
}

// noArgs refuses arguments and a block.
func noArgs(d *caddyfile.Dispenser) error {
	dir := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return noBlock(d, dir)
}

// singleArg reads exactly one argument and no block.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	dir := d.Val()
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, noBlock(d, dir)
}

// someArgs reads one or more arguments and no block.
func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	dir := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, noBlock(d, dir)
}

// argThenBlock reads exactly one argument that may be followed by a block
// (which the caller reads).
func argThenBlock(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// durationArg reads one non-negative duration.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	dir := d.Val()
	v, err := singleArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s %q: bad duration", dir, v)
	}
	if dur < 0 {
		return 0, d.Errf("%s must not be negative", dir)
	}
	return caddy.Duration(dur), nil
}
