package caddymcp

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddymcp/gateway/connections"
	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/tokens"
)

// server is a provisioned ServerConfig: what a request needs, computed once.
type server struct {
	cfg    *ServerConfig
	tenant *TenantConfig
	proxy  caddyhttp.MiddlewareHandler

	host           string               // lower-cased cfg.Host, "" for any
	resource       string               // configured resource, "" to derive per request
	resourceOrigin string               // scheme://host[:port] of the configured resource
	metaPath       string               // path of the RFC 9728 document
	scopeParam     string               // require scopes, space separated
	origins        map[string]struct{}  // allowed_origins, lower-cased
	authServers    []string             // issuers listed in the metadata
	metaStatic     []byte               // metadata document when resource is configured
	requirements   *tokens.Requirements // what an agent's token must satisfy

	tools, resources, prompts *policy.Rules // item rules: scopes per tool/resource/prompt
	// anonScopes stands for the token of an anonymous caller: every scope
	// the server mentions, so what policies for agents * grant decides.
	anonScopes []string

	sessionTTL, sessionIdle time.Duration

	// stickyCookie is the cookie name of the proxy's `lb_policy cookie`
	// ("" when the server does not use it).
	stickyCookie string

	metrics *serverMetrics

	// conn supplies the upstream's credentials (nil: none).
	conn *connections.Connection
}

// CORS headers for browser-based clients on allowed Origins.
const (
	corsExposed = "Mcp-Session-Id, WWW-Authenticate, Mcp-Protocol-Version"
	corsAllowed = "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID"
)

// preflight answers a CORS preflight itself: nothing unauthenticated
// reaches the upstream. checkOrigin has already refused foreign Origins.
func (s *server) preflight(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	if o := r.Header.Get("Origin"); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
		h.Set("Access-Control-Allow-Headers", corsAllowed)
		h.Set("Access-Control-Expose-Headers", corsExposed)
		h.Set("Access-Control-Max-Age", "600")
		h.Add("Vary", "Origin")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

const wellKnownPRM = "/.well-known/oauth-protected-resource"

func newServer(cfg *ServerConfig, app *App) (*server, error) {
	s := &server{
		metrics:    newServerMetrics(cfg.Name, cfg.Tenant),
		cfg:        cfg,
		tenant:     app.Tenant(cfg.Tenant),
		host:       strings.ToLower(strings.TrimSuffix(cfg.Host, ".")),
		scopeParam: strings.Join(cfg.Require, " "),
		origins:    make(map[string]struct{}, len(cfg.AllowedOrigins)),
	}
	for _, o := range cfg.AllowedOrigins {
		s.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = struct{}{}
	}
	s.sessionTTL = defaultSessionTTL
	if cfg.Session != nil {
		if cfg.Session.TTL > 0 {
			s.sessionTTL = time.Duration(cfg.Session.TTL)
		}
		s.sessionIdle = time.Duration(cfg.Session.Idle)
		if s.sessionIdle > 0 && app.idle != nil {
			app.idle.noteIdle(s.sessionIdle)
		}
	}
	var err error
	if s.tools, err = compileRules("tool", cfg.Tools); err != nil {
		return nil, err
	}
	if s.resources, err = compileRules("resource", cfg.Resources); err != nil {
		return nil, err
	}
	if s.prompts, err = compileRules("prompt", cfg.Prompts); err != nil {
		return nil, err
	}
	if cfg.Anonymous {
		seen := map[string]bool{}
		add := func(list []string) {
			for _, sc := range list {
				if !seen[sc] {
					seen[sc] = true
					s.anonScopes = append(s.anonScopes, sc)
				}
			}
		}
		add(cfg.Require)
		add(cfg.Scopes)
		for _, items := range [][]ItemRule{cfg.Tools, cfg.Resources, cfg.Prompts} {
			for _, it := range items {
				add(it.Scopes)
			}
		}
	}
	resourcePath := cfg.Path
	if cfg.Resource != "" {
		u, err := url.Parse(cfg.Resource)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("resource %q: not an absolute URL", cfg.Resource)
		}
		s.resource = cfg.Resource
		s.resourceOrigin = strings.ToLower(u.Scheme + "://" + u.Host)
		resourcePath = strings.TrimSuffix(u.EscapedPath(), "/")
	}
	s.metaPath = wellKnownPRM + resourcePath
	if s.tenant != nil && len(s.tenant.Issuers) > 0 {
		for _, iss := range s.tenant.Issuers {
			s.authServers = append(s.authServers, iss.Issuer)
		}
	} else {
		for _, iss := range app.Issuers {
			s.authServers = append(s.authServers, iss.Issuer)
		}
	}
	if !cfg.Anonymous {
		if app.auth == nil {
			return nil, fmt.Errorf("the mcp app has no token validation state")
		}
		issuers := app.issuersFor(cfg.Tenant)
		if len(issuers) == 0 {
			return nil, fmt.Errorf("needs agent tokens, but neither tenant %s nor the global mcp options configure an issuer (or mark the server anonymous)", cfg.Tenant)
		}
		s.requirements = &tokens.Requirements{Issuers: issuers, Audience: s.resource, Tenant: cfg.Tenant}
	}
	if s.resource != "" {
		doc, err := s.metadataDocument(s.resource)
		if err != nil {
			return nil, err
		}
		s.metaStatic = doc
	}
	return s, nil
}

func compileRules(kind string, items []ItemRule) (*policy.Rules, error) {
	if len(items) == 0 {
		return nil, nil
	}
	rules := make([]policy.Rule, len(items))
	for i, it := range items {
		rules[i] = policy.Rule{Match: it.Match, Scopes: it.Scopes}
	}
	r, err := policy.CompileRules(rules)
	if err != nil {
		return nil, fmt.Errorf("%s rules: %v", kind, err)
	}
	return r, nil
}

// requestOrigin is scheme://host[:port] as the client addressed the gateway.
func requestOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// resourceFor returns the server's resource identifier for r: the
// configured one, or the public endpoint URL the client used.
func (s *server) resourceFor(r *http.Request) string {
	if s.resource != "" {
		return s.resource
	}
	return requestOrigin(r) + s.cfg.Path
}

// metadataURL returns the URL of the server's RFC 9728 document.
func (s *server) metadataURL(r *http.Request) string {
	if s.resourceOrigin != "" {
		return s.resourceOrigin + s.metaPath
	}
	return requestOrigin(r) + s.metaPath
}

// checkOrigin applies step 2 of the pipeline and DNS-rebinding protection.
// It returns a non-zero status and a reason when the request is refused.
func (s *server) checkOrigin(r *http.Request) (int, string) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return 0, ""
	}
	lo := strings.ToLower(origin)
	if _, ok := s.origins[lo]; ok {
		return 0, ""
	}
	if s.resourceOrigin != "" {
		if lo == s.resourceOrigin {
			return 0, ""
		}
		return http.StatusForbidden, "origin not allowed"
	}
	if lo != strings.ToLower(requestOrigin(r)) {
		return http.StatusForbidden, "origin not allowed"
	}
	// Same origin as the Host the browser used. On a loopback listener
	// serving any host, that is exactly what a DNS-rebinding page looks
	// like: only loopback names are this endpoint's own there.
	if s.host == "" && onLoopbackListener(r) && !isLoopbackHost(requestHost(r.Host)) {
		return http.StatusForbidden, "host not allowed"
	}
	return 0, ""
}

func onLoopbackListener(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().IsLoopback()
}

func isLoopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

// challenge answers 401 with the RFC 6750 / RFC 9728 challenge. code and
// desc are the error and error_description parameters, empty when the
// request had no token.
func (s *server) challenge(w http.ResponseWriter, r *http.Request, status int, code, desc string) error {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(s.metadataURL(r))
	b.WriteByte('"')
	if s.scopeParam != "" {
		b.WriteString(`, scope="`)
		b.WriteString(s.scopeParam)
		b.WriteByte('"')
	}
	if code != "" {
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteByte('"')
		if desc != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(quoteSafe(desc))
			b.WriteByte('"')
		}
	}
	w.Header().Set("WWW-Authenticate", b.String())
	msg := code
	if msg == "" {
		msg = "unauthorized"
	}
	return writeHTTPError(w, status, msg)
}

// quoteSafe keeps only characters allowed in an RFC 6750 quoted string.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}

type routeKey struct{ host, path string }

// router finds a server by host and path with at most two map lookups, so
// the cost of a request does not grow with the number of servers.
type router struct {
	routes   map[routeKey]*server
	meta     map[routeKey]*server
	hasHosts bool
}

func newRouter(n int) *router {
	return &router{routes: make(map[routeKey]*server, n), meta: make(map[routeKey]*server, n)}
}

func (rt *router) add(s *server) error {
	k := routeKey{s.host, s.cfg.Path}
	if other := rt.routes[k]; other != nil {
		return fmt.Errorf("servers %s and %s are both on host %q path %s", other.cfg.Name, s.cfg.Name, s.cfg.Host, s.cfg.Path)
	}
	rt.routes[k] = s
	if s.host != "" {
		rt.hasHosts = true
	}
	mk := routeKey{s.host, s.metaPath}
	if other := rt.meta[mk]; other != nil {
		return fmt.Errorf("servers %s and %s share the metadata path %s", other.cfg.Name, s.cfg.Name, s.metaPath)
	}
	rt.meta[mk] = s
	return nil
}

func (rt *router) lookup(hostport, path string) *server {
	return rt.find(rt.routes, hostport, path)
}

func (rt *router) lookupMetadata(hostport, path string) *server {
	if !strings.HasPrefix(path, wellKnownPRM) {
		return nil
	}
	return rt.find(rt.meta, hostport, path)
}

func (rt *router) find(m map[routeKey]*server, hostport, path string) *server {
	if rt.hasHosts {
		if s := m[routeKey{requestHost(hostport), path}]; s != nil {
			return s
		}
	}
	return m[routeKey{"", path}]
}
