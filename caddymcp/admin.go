package caddymcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddymcp/gateway/tokens"
)

func init() {
	caddy.RegisterModule(adminMCP{})
}

// adminMCP is the `admin.api.mcp` module: the gateway's endpoints on
// Caddy's admin API, about the running config.
//
//	GET  /mcp/servers   every server of every mcp_gateway handler (no secrets)
//	GET  /mcp/cache     token cache, validator, JWKS, connection and session stats
//	POST /mcp/explain   the policy explainer (body: ExplainRequest)
//
// Secrets never appear: connections are shown by name and kind, upstream
// URLs without user info and query values, and no reverse_proxy settings.
type adminMCP struct {
	// gateway finds the running gateway; nil means the active config.
	gateway func() (*gatewayView, error)
}

// CaddyModule returns the Caddy module information.
func (adminMCP) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcp",
		New: func() caddy.Module { return new(adminMCP) },
	}
}

// Routes implements caddy.AdminRouter.
func (a adminMCP) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/mcp/servers", Handler: caddy.AdminHandlerFunc(a.handleServers)},
		{Pattern: "/mcp/cache", Handler: caddy.AdminHandlerFunc(a.handleCache)},
		{Pattern: "/mcp/explain", Handler: caddy.AdminHandlerFunc(a.handleExplain)},
	}
}

// gatewayView is the running gateway: the mcp app and its handlers.
type gatewayView struct {
	app      *App
	handlers []*Handler
}

// servers returns every server of every handler, in handler order.
func (g *gatewayView) servers() []*ServerConfig {
	var out []*ServerConfig
	for _, h := range g.handlers {
		out = append(out, h.Servers...)
	}
	return out
}

func (a adminMCP) find() (*gatewayView, error) {
	if a.gateway != nil {
		return a.gateway()
	}
	return activeGateway()
}

// activeGateway finds the mcp app of the running config and the
// mcp_gateway handlers in its http app routes (nested subroutes, error
// routes and named routes included).
func activeGateway() (*gatewayView, error) {
	ctx := caddy.ActiveContext()
	v, err := ctx.AppIfConfigured("mcp")
	if err != nil {
		if errors.Is(err, caddy.ErrNotConfigured) {
			return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no mcp app")}
		}
		return nil, caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	app, ok := v.(*App)
	if !ok {
		return nil, caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("mcp app is %T", v)}
	}
	g := &gatewayView{app: app}
	if hv, err := ctx.AppIfConfigured("http"); err == nil {
		if httpApp, ok := hv.(*caddyhttp.App); ok {
			g.handlers = gatewayHandlers(httpApp)
		}
	}
	return g, nil
}

// gatewayHandlers returns the mcp_gateway handlers of an http app.
func gatewayHandlers(httpApp *caddyhttp.App) []*Handler {
	var out []*Handler
	seen := map[*Handler]bool{}
	var walk func(routes caddyhttp.RouteList)
	walkRoute := func(r *caddyhttp.Route) {
		for _, mh := range r.Handlers {
			switch h := mh.(type) {
			case *Handler:
				if !seen[h] {
					seen[h] = true
					out = append(out, h)
				}
			case *caddyhttp.Subroute:
				walk(h.Routes)
			}
		}
	}
	walk = func(routes caddyhttp.RouteList) {
		for i := range routes {
			walkRoute(&routes[i])
		}
	}
	names := make([]string, 0, len(httpApp.Servers))
	for n := range httpApp.Servers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		srv := httpApp.Servers[n]
		walk(srv.Routes)
		if srv.Errors != nil {
			walk(srv.Errors.Routes)
		}
		routeNames := make([]string, 0, len(srv.NamedRoutes))
		for rn := range srv.NamedRoutes {
			routeNames = append(routeNames, rn)
		}
		sort.Strings(routeNames)
		for _, rn := range routeNames {
			if r := srv.NamedRoutes[rn]; r != nil {
				walkRoute(r)
			}
		}
	}
	return out
}

// serverInfo is one server as GET /mcp/servers shows it.
type serverInfo struct {
	Name           string         `json:"name"`
	Tenant         string         `json:"tenant"`
	Host           string         `json:"host,omitempty"`
	Path           string         `json:"path"`
	Upstream       string         `json:"upstream"`
	Connection     string         `json:"connection,omitempty"`
	ConnectionKind string         `json:"connection_kind,omitempty"`
	Anonymous      bool           `json:"anonymous"`
	Resource       string         `json:"resource,omitempty"`
	Require        []string       `json:"require,omitempty"`
	Scopes         []string       `json:"scopes,omitempty"`
	Tools          []ItemRule     `json:"tools,omitempty"`
	Resources      []ItemRule     `json:"resources,omitempty"`
	Prompts        []ItemRule     `json:"prompts,omitempty"`
	AllowedOrigins []string       `json:"allowed_origins,omitempty"`
	Session        *SessionConfig `json:"session,omitempty"`
}

func (a adminMCP) handleServers(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(http.MethodGet)
	}
	g, err := a.find()
	if err != nil {
		return err
	}
	out := []serverInfo{}
	for _, s := range g.servers() {
		out = append(out, describeServer(g.app, s))
	}
	return writeAdminJSON(w, out)
}

func describeServer(app *App, s *ServerConfig) serverInfo {
	info := serverInfo{
		Name: s.Name, Tenant: s.Tenant, Host: s.Host, Path: s.Path,
		Upstream:   maskURL(s.Upstream),
		Connection: s.Connection, Anonymous: s.Anonymous, Resource: s.Resource,
		Require: s.Require, Scopes: s.Scopes,
		Tools: s.Tools, Resources: s.Resources, Prompts: s.Prompts,
		AllowedOrigins: s.AllowedOrigins, Session: s.Session,
	}
	if s.Connection != "" {
		info.ConnectionKind = connectionKind(app, s.Tenant, s.Connection)
	}
	return info
}

// connectionKind names a connection's credential kind, never its values.
func connectionKind(app *App, tenant, name string) string {
	if c := app.conns[tenant][name]; c != nil {
		return c.Kind().String()
	}
	t := app.Tenant(tenant)
	if t == nil {
		return ""
	}
	for _, c := range t.Connections {
		if c.Name != name {
			continue
		}
		switch {
		case c.OAuth2 != nil && c.OAuth2.RefreshToken != "":
			return "oauth2_refresh"
		case c.OAuth2 != nil:
			return "oauth2"
		case c.APIKey != nil:
			return "api_key"
		case c.Bearer != "":
			return "bearer"
		case c.TokenExchange != nil:
			return "token_exchange"
		case c.ResourceToken != nil:
			return "resource_token"
		}
		return "headers"
	}
	return ""
}

// maskURL drops user info and query values (either may carry a
// credential) and the fragment from a URL for display. It works on the
// text, so unresolved placeholders stay readable.
func maskURL(raw string) string {
	s, _, _ := strings.Cut(raw, "#")
	s, query, hasQuery := strings.Cut(s, "?")
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:i+3] + "REDACTED" + rest[at:]
		}
	}
	if hasQuery {
		parts := strings.Split(query, "&")
		for j, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			parts[j] = k + "=REDACTED"
		}
		s += "?" + strings.Join(parts, "&")
	}
	return s
}

// cacheInfo is the body of GET /mcp/cache.
type cacheInfo struct {
	TokenCache      *tokenCacheInfo `json:"token_cache,omitempty"`
	Validator       *validatorInfo  `json:"validator,omitempty"`
	Issuers         []issuerInfo    `json:"issuers"`
	ConnectionCache *connCacheInfo  `json:"connection_cache,omitempty"`
	Connections     []connInfo      `json:"connections"`
	Sessions        sessionsInfo    `json:"sessions"`
}

type tokenCacheInfo struct {
	Hits         uint64 `json:"hits"`
	Misses       uint64 `json:"misses"`
	KeysAdded    uint64 `json:"keys_added"`
	KeysEvicted  uint64 `json:"keys_evicted"`
	SetsDropped  uint64 `json:"sets_dropped"`
	SetsRejected uint64 `json:"sets_rejected"`
	CostAdded    uint64 `json:"cost_added"`
	CostEvicted  uint64 `json:"cost_evicted"`
}

type validatorInfo struct {
	Verifications uint64 `json:"verifications"`
}

type issuerInfo struct {
	Issuer string `json:"issuer"`
	// Tenants trusting this key set; empty for the global issuers.
	Tenants        []string   `json:"tenants,omitempty"`
	Keys           int        `json:"keys"`
	LastRefresh    *time.Time `json:"last_refresh,omitempty"`
	Refreshes      uint64     `json:"refreshes"`
	Failures       uint64     `json:"failures"`
	KidMissFetches uint64     `json:"kid_miss_fetches"`
	RateLimited    uint64     `json:"rate_limited"`
	LastError      string     `json:"last_error,omitempty"`
}

type connCacheInfo struct {
	Hits      uint64 `json:"hits"`
	Misses    uint64 `json:"misses"`
	Requests  uint64 `json:"requests"`
	Failures  uint64 `json:"failures"`
	Refreshes uint64 `json:"refreshes"`
	Shared    uint64 `json:"shared"`
	Stale     uint64 `json:"stale"`
	Entries   uint64 `json:"entries"`
}

type connInfo struct {
	Tenant          string `json:"tenant"`
	Connection      string `json:"connection"`
	Kind            string `json:"kind"`
	Requests        uint64 `json:"requests"`
	Failures        uint64 `json:"failures"`
	Rotations       uint64 `json:"rotations"`
	PersistFailures uint64 `json:"persist_failures"`
}

type sessionsInfo struct {
	// Tracked counts sessions with an idle timeout this instance has seen.
	Tracked int `json:"tracked"`
}

func (a adminMCP) handleCache(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(http.MethodGet)
	}
	g, err := a.find()
	if err != nil {
		return err
	}
	return writeAdminJSON(w, cacheStats(g.app))
}

// cacheStats gathers the same counters the metrics expose.
func cacheStats(app *App) *cacheInfo {
	sc := newStatsCollector(app)
	out := &cacheInfo{Issuers: []issuerInfo{}, Connections: []connInfo{}}
	if sc.cache != nil {
		st := sc.cache.Stats()
		out.TokenCache = &tokenCacheInfo{
			Hits: st.Hits, Misses: st.Misses, KeysAdded: st.KeysAdded, KeysEvicted: st.KeysEvicted,
			SetsDropped: st.SetsDropped, SetsRejected: st.SetsRejected, CostAdded: st.CostAdded, CostEvicted: st.CostEvicted,
		}
	}
	if sc.validator != nil {
		out.Validator = &validatorInfo{Verifications: sc.validator.Stats().Verifications}
	}
	tenantsOf := map[*tokens.KeySet][]string{}
	if app.auth != nil {
		for t, list := range app.auth.byTenant {
			for _, ks := range list {
				tenantsOf[ks] = append(tenantsOf[ks], t)
			}
		}
	}
	for _, ks := range sc.keysets {
		st := ks.Stats()
		info := issuerInfo{
			Issuer: st.Issuer, Keys: st.Keys, Refreshes: st.Refreshes, Failures: st.Failures,
			KidMissFetches: st.KidMissFetches, RateLimited: st.RateLimited, LastError: st.LastError,
		}
		if !st.LastRefresh.IsZero() {
			t := st.LastRefresh
			info.LastRefresh = &t
		}
		if ts := tenantsOf[ks]; len(ts) > 0 {
			sort.Strings(ts)
			info.Tenants = ts
		}
		out.Issuers = append(out.Issuers, info)
	}
	if sc.connCache != nil {
		st := sc.connCache.Stats()
		out.ConnectionCache = &connCacheInfo{
			Hits: st.Hits, Misses: st.Misses, Requests: st.Requests, Failures: st.Failures,
			Refreshes: st.Refreshes, Shared: st.Shared, Stale: st.Stale, Entries: st.Entries,
		}
	}
	for _, cs := range sc.conns {
		st := cs.conn.Stats()
		out.Connections = append(out.Connections, connInfo{
			Tenant: cs.tenant, Connection: cs.name, Kind: cs.conn.Kind().String(),
			Requests: st.Requests, Failures: st.Failures, Rotations: st.Rotations, PersistFailures: st.PersistFailures,
		})
	}
	if sc.idle != nil {
		out.Sessions.Tracked = sc.idle.count()
	}
	return out
}

// maxExplainBody caps the POST /mcp/explain body.
const maxExplainBody = 1 << 20

func (a adminMCP) handleExplain(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(http.MethodPost)
	}
	var req ExplainRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxExplainBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding the request: %v", err)}
	}
	g, err := a.find()
	if err != nil {
		return err
	}
	if g.app.policies == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("the mcp app is not provisioned")}
	}
	cfg, err := findServerConfig(g.servers(), req.Server)
	if err != nil {
		return caddy.APIError{HTTPStatus: explainStatus(err), Err: err}
	}
	res, err := explain(g.app.policies, cfg, &req)
	if err != nil {
		return caddy.APIError{HTTPStatus: explainStatus(err), Err: err}
	}
	return writeAdminJSON(w, res)
}

func methodNotAllowed(allow string) error {
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed (use %s)", allow)}
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*adminMCP)(nil)
