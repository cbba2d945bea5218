package caddymcp

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mcp_gateway", parseGatewayDirective)
	httpcaddyfile.RegisterDirectiveOrder("mcp_gateway", httpcaddyfile.Before, "respond")
}

// stateServerNames is the httpcaddyfile.Helper.State key holding the server
// names of every mcp_gateway adapted so far (names are unique across sites).
const stateServerNames = "mcp_gateway.server_names"

// parseGatewayDirective parses the `mcp_gateway` site directive. Syntax
// (see the README's Caddyfile reference):
//
//	mcp_gateway [<matcher>] {
//		token_endpoint <path>
//		server <name> {
//			tenant     <name>
//			path       <path>
//			host       <host>
//			upstream   <url>
//			connection <name>
//			resource   <url>
//			resource   <uri-glob> <scopes...>
//			scopes     <scopes...>
//			require    <scopes...>
//			tool       <name-glob> [<scopes...>]
//			prompt     <name-glob> [<scopes...>]
//			allowed_origins <origins...>
//			anonymous
//			session {
//				ttl  <duration>
//				idle <duration>
//			}
//			branding {
//				name          <text>
//				logo_uri      <url>
//				documentation <url>
//				policy_uri    <url>
//				tos_uri       <url>
//			}
//			reverse_proxy {
//				<any reverse_proxy subdirective>
//			}
//		}
//	}
//
// Tenants and connections are checked against the global `mcp` option.
func parseGatewayDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	app, err := appFromOption(h.Option("mcp"))
	if err != nil {
		return nil, h.WrapErr(err)
	}
	if app == nil {
		app = new(App) // no global mcp option: no tenant is defined
	}
	gw := new(Handler)
	if err := gw.unmarshal(h.Dispenser, app, &h); err != nil {
		return nil, err
	}
	return gw, nil
}

// appFromOption decodes the value of the `mcp` global option (nil if
// absent).
func appFromOption(opt any) (*App, error) {
	if opt == nil {
		return nil, nil
	}
	v, ok := opt.(httpcaddyfile.App)
	if !ok {
		return nil, fmt.Errorf("unexpected value of the mcp global option: %T", opt)
	}
	app := new(App)
	if err := json.Unmarshal(v.Value, app); err != nil {
		return nil, fmt.Errorf("decoding the mcp global option: %v", err)
	}
	return app, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens (see
// parseGatewayDirective). Without the Caddyfile adapter there are no global
// options: tenants and connections are checked when the handler is
// provisioned, and reverse_proxy's handle_response is not available.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return h.unmarshal(d, nil, nil)
}

// unmarshal parses the directive. app (nil: skip) defines the tenants;
// helper (nil: none) parses handle_response routes and carries State.
func (h *Handler) unmarshal(d *caddyfile.Dispenser, app *App, helper *httpcaddyfile.Helper) error {
	d.Next() // directive name
	start := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	var global map[string]bool
	if helper != nil {
		global, _ = helper.State[stateServerNames].(map[string]bool)
		if global == nil {
			global = make(map[string]bool)
			helper.State[stateServerNames] = global
		}
	}
	endpoints := make(map[string]string)
	var tokTokenEndpoint caddyfile.Token
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "token_endpoint":
			if h.TokenEndpoint != "" {
				return d.Err("token_endpoint already specified")
			}
			tokTokenEndpoint = d.Token()
			v, err := singleArg(d)
			if err != nil {
				return err
			}
			if err := checkPath("token_endpoint", v); err != nil {
				return d.WrapErr(err)
			}
			h.TokenEndpoint = v
		case "server":
			tok := d.Token()
			s, err := parseServer(d, app, helper)
			if err != nil {
				return err
			}
			for _, o := range h.Servers {
				if o.Name == s.Name {
					return errAt(tok, errAlreadySpecified("server", s.Name))
				}
			}
			if global[s.Name] {
				return errAt(tok, fmt.Errorf("server %q already specified in another mcp_gateway", s.Name))
			}
			key := endpointKey(s)
			if other, ok := endpoints[key]; ok {
				return errAt(tok, fmt.Errorf("server %q: %w", s.Name, errEndpointTaken(s, other)))
			}
			endpoints[key] = s.Name
			h.Servers = append(h.Servers, s)
		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
	}
	if h.TokenEndpoint != "" {
		if err := checkTokenEndpoint(h.TokenEndpoint, h.Servers); err != nil {
			return errAt(tokTokenEndpoint, err)
		}
	}
	for _, s := range h.Servers {
		if global != nil {
			global[s.Name] = true
		}
	}
	// a last net under the checks above, at the line of the directive
	if err := validateServers(h.Servers, app); err != nil {
		return errAt(start, err)
	}
	return nil
}

// parseServer parses `server <name> { ... }`.
func parseServer(d *caddyfile.Dispenser, app *App, helper *httpcaddyfile.Helper) (*ServerConfig, error) {
	tok := d.Token()
	name, err := argThenBlock(d)
	if err != nil {
		return nil, err
	}
	if err := checkName("server", name); err != nil {
		return nil, d.WrapErr(err)
	}
	s := &ServerConfig{Name: name}
	seen := map[string]bool{}
	var tokConnection caddyfile.Token
	var proxySeg caddyfile.Segment
	rules := map[string]map[string]bool{"tool": {}, "resource": {}, "prompt": {}}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		switch dir {
		case "tenant", "path", "host", "upstream", "connection", "anonymous", "session", "branding", "reverse_proxy":
			if seen[dir] {
				return nil, d.Errf("%s already specified", dir)
			}
			seen[dir] = true
		}
		switch dir {
		case "tenant":
			if s.Tenant, err = singleArg(d); err != nil {
				return nil, err
			}
			if app != nil && app.findTenant(s.Tenant) == nil {
				return nil, d.WrapErr(errUndefinedTenant(s.Tenant))
			}
		case "path":
			if s.Path, err = singleArg(d); err != nil {
				return nil, err
			}
			if err := checkPath(dir, s.Path); err != nil {
				return nil, d.WrapErr(err)
			}
		case "host":
			if s.Host, err = singleArg(d); err != nil {
				return nil, err
			}
			if err := checkHost(s.Host); err != nil {
				return nil, d.WrapErr(err)
			}
		case "upstream":
			if s.Upstream, err = singleArg(d); err != nil {
				return nil, err
			}
			if err := checkUpstream(s.Upstream); err != nil {
				return nil, d.WrapErr(err)
			}
		case "connection":
			tokConnection = d.Token()
			if s.Connection, err = singleArg(d); err != nil {
				return nil, err
			}
		case "resource", "tool", "prompt":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			if err := noBlock(d, dir); err != nil {
				return nil, err
			}
			if dir == "resource" && len(args) == 1 {
				// one argument: the audience
				if s.Resource != "" {
					return nil, d.Err("resource (the audience) already specified")
				}
				s.Resource = args[0]
				if err := checkAbsoluteURL(dir, s.Resource); err != nil {
					return nil, d.WrapErr(err)
				}
				continue
			}
			r := ItemRule{Match: args[0], Scopes: args[1:]}
			if err := checkItemRule(dir, r, rules[dir]); err != nil {
				return nil, d.WrapErr(err)
			}
			switch dir {
			case "tool":
				s.Tools = append(s.Tools, r)
			case "resource":
				s.Resources = append(s.Resources, r)
			case "prompt":
				s.Prompts = append(s.Prompts, r)
			}
		case "scopes", "require":
			args, err := someArgs(d)
			if err != nil {
				return nil, err
			}
			for _, a := range args {
				if err := checkScope(dir, a); err != nil {
					return nil, d.WrapErr(err)
				}
			}
			if dir == "scopes" {
				s.Scopes = append(s.Scopes, args...)
			} else {
				s.Require = append(s.Require, args...)
			}
		case "allowed_origins":
			args, err := someArgs(d)
			if err != nil {
				return nil, err
			}
			for _, a := range args {
				if err := checkOrigin(a); err != nil {
					return nil, d.WrapErr(err)
				}
			}
			s.AllowedOrigins = append(s.AllowedOrigins, args...)
		case "anonymous":
			if err := noArgs(d); err != nil {
				return nil, err
			}
			s.Anonymous = true
		case "session":
			if s.Session, err = parseSession(d); err != nil {
				return nil, err
			}
		case "branding":
			if s.Branding, err = parseBranding(d); err != nil {
				return nil, err
			}
		case "reverse_proxy":
			proxySeg = d.NextSegment()
			if helper == nil && segmentHas(proxySeg, "handle_response") {
				return nil, errAt(proxySeg[0], fmt.Errorf("handle_response needs the Caddyfile adapter"))
			}
		default:
			return nil, d.Errf("unrecognized subdirective %q", dir)
		}
	}
	if s.Tenant == "" {
		return nil, errAt(tok, fmt.Errorf("server %q: tenant is required", name))
	}
	if s.Upstream == "" {
		return nil, errAt(tok, fmt.Errorf("server %q: upstream is required", name))
	}
	if app != nil && s.Connection != "" {
		if t := app.findTenant(s.Tenant); t != nil && !hasConnection(t, s.Connection) {
			return nil, errAt(tokConnection, errNoConnection(s.Tenant, s.Connection))
		}
	}
	if err := validateServer(s, app); err != nil {
		return nil, errAt(tok, fmt.Errorf("server %q: %w", name, err))
	}
	if s.ProxyRaw, err = buildProxy(s.Upstream, proxySeg, helper); err != nil {
		return nil, err
	}
	return s, nil
}

// hasConnection reports whether the tenant has the named connection.
func hasConnection(t *TenantConfig, name string) bool {
	for _, c := range t.Connections {
		if c != nil && c.Name == name {
			return true
		}
	}
	return false
}

// segmentHas reports whether the segment has a token with the given text.
func segmentHas(seg caddyfile.Segment, text string) bool {
	for _, t := range seg {
		if t.Text == text {
			return true
		}
	}
	return false
}

// buildProxy turns the server's inner `reverse_proxy { ... }` segment (nil
// for none) into the reverse_proxy handler JSON, completed from the
// upstream URL.
func buildProxy(upstream string, seg caddyfile.Segment, helper *httpcaddyfile.Helper) (json.RawMessage, error) {
	var rp *reverseproxy.Handler
	if len(seg) > 0 {
		rp = new(reverseproxy.Handler)
		d := caddyfile.NewDispenser(seg)
		if err := rp.UnmarshalCaddyfile(d); err != nil {
			return nil, err
		}
		var hh httpcaddyfile.Helper
		if helper != nil {
			hh = helper.WithDispenser(d)
		}
		if err := rp.FinalizeUnmarshalCaddyfile(hh); err != nil {
			return nil, err
		}
	}
	rp, err := completeProxy(upstream, rp)
	if err != nil {
		return nil, errAtSegment(seg, err)
	}
	if err := enableUpstreamTLS(upstream, rp); err != nil {
		return nil, errAtSegment(seg, err)
	}
	return caddyconfig.JSONModuleObject(rp, "handler", "reverse_proxy", nil), nil
}

func errAtSegment(seg caddyfile.Segment, err error) error {
	if len(seg) == 0 {
		return err
	}
	return errAt(seg[0], err)
}

// enableUpstreamTLS turns TLS on in a user-configured `transport http`
// without `tls` when the upstream URL is https (reverse_proxy infers TLS
// only from upstream addresses, which the inner block usually omits).
func enableUpstreamTLS(upstream string, rp *reverseproxy.Handler) error {
	if !strings.HasPrefix(strings.ToLower(upstream), "https://") || rp.TransportRaw == nil {
		return nil
	}
	var t map[string]json.RawMessage
	if err := json.Unmarshal(rp.TransportRaw, &t); err != nil {
		return fmt.Errorf("reverse_proxy transport: %v", err)
	}
	if string(t["protocol"]) != `"http"` {
		return nil
	}
	if _, ok := t["tls"]; ok {
		return nil
	}
	t["tls"] = json.RawMessage(`{}`)
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	rp.TransportRaw = raw
	return nil
}

// parseSession parses `session { ttl <d>; idle <d> }`.
func parseSession(d *caddyfile.Dispenser) (*SessionConfig, error) {
	sc := new(SessionConfig)
	err := eachSubdirective(d, func(dir string) (err error) {
		switch dir {
		case "ttl":
			sc.TTL, err = durationArg(d)
		case "idle":
			sc.Idle, err = durationArg(d)
		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// parseBranding parses `branding { ... }`.
func parseBranding(d *caddyfile.Dispenser) (*Branding, error) {
	b := new(Branding)
	err := eachSubdirective(d, func(dir string) error {
		var dst *string
		switch dir {
		case "name":
			dst = &b.Name
		case "logo_uri":
			dst = &b.LogoURI
		case "documentation":
			dst = &b.Documentation
		case "policy_uri":
			dst = &b.PolicyURI
		case "tos_uri":
			dst = &b.TOSURI
		default:
			return d.Errf("unrecognized subdirective %q", dir)
		}
		v, err := singleArg(d)
		if err != nil {
			return err
		}
		if dir != "name" {
			if err := checkAbsoluteURL(dir, v); err != nil {
				return d.WrapErr(err)
			}
		}
		*dst = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
