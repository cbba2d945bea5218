package caddymcp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddymcp/gateway/mcpmsg"
	"github.com/caddymcp/gateway/policy"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Handler is the `mcp_gateway` HTTP handler: it routes each request for one
// of its servers' endpoints (host + path) to that server's upstream through
// a per-server reverse_proxy, after checking Origin, token, message and
// policy; it serves the servers' RFC 9728 metadata. Requests for none of its
// servers go to the next handler.
//
// Placeholders set for a request routed to a server:
//
// Placeholder | Description
// ------------|-------------
// `{mcp.server}` | The name of the logical MCP server
// `{mcp.tenant}` | The server's tenant
// `{mcp.agent}` | The agent (OAuth client) named by the token, after authentication
// `{mcp.subject}` | The token's subject, after authentication
// `{mcp.method}` | The JSON-RPC method (or GET/DELETE), after reading the message
// `{mcp.tool}` | The tool, prompt (params.name) or resource (params.uri) targeted
// `{mcp.decision}` | allow, deny, step_up or would_deny
type Handler struct {
	// Path of the RFC 8693 token endpoint for internal servers; optional.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// The logical MCP servers.
	Servers []*ServerConfig `json:"servers,omitempty"`

	app    *App
	router *router
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the mcp app, checks the servers against it and provisions
// one reverse_proxy per server.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := appFromContext(ctx)
	if err != nil {
		return err
	}
	h.app = app
	for _, s := range h.Servers {
		if s.Path == "" {
			s.Path = "/mcp"
		}
	}
	if err := validateServers(h.Servers, app); err != nil {
		return err
	}
	if h.TokenEndpoint != "" {
		if err := checkTokenEndpoint(h.TokenEndpoint, h.Servers); err != nil {
			return err
		}
	}
	h.router = newRouter(len(h.Servers))
	sharedProxies := make(map[string]*server)
	for _, cfg := range h.Servers {
		srv, err := h.provisionServer(ctx, cfg, sharedProxies)
		if err != nil {
			return fmt.Errorf("server %s: %w", cfg.Name, err)
		}
		if err := h.router.add(srv); err != nil {
			return err
		}
		if err := app.registerServer(srv); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) provisionServer(ctx caddy.Context, cfg *ServerConfig, sharedProxies map[string]*server) (*server, error) {
	srv, err := newServer(cfg, h.app)
	if err != nil {
		return nil, err
	}
	raw, err := proxyJSON(cfg.Upstream, cfg.ProxyRaw)
	if err != nil {
		return nil, err
	}
	// Servers whose reverse_proxy configurations are byte-identical (a
	// server per customer in front of one backend) share one provisioned
	// proxy: one connection pool to that backend and one set of its
	// background tasks instead of one per server. Credentials are injected
	// per request before the proxy, and the proxy keeps no per-server state.
	if p, ok := sharedProxies[string(raw)]; ok {
		srv.proxy, srv.stickyCookie = p.proxy, p.stickyCookie
		cfg.ProxyRaw = nil
	} else {
		cfg.ProxyRaw = raw
		mod, err := ctx.LoadModule(cfg, "ProxyRaw")
		if err != nil {
			return nil, fmt.Errorf("loading reverse_proxy: %v", err)
		}
		proxy, ok := mod.(caddyhttp.MiddlewareHandler)
		if !ok {
			return nil, fmt.Errorf("reverse_proxy module %T is not an HTTP handler", mod)
		}
		srv.proxy = proxy
		if rp, ok := mod.(*reverseproxy.Handler); ok && rp.LoadBalancing != nil {
			if c, ok := rp.LoadBalancing.SelectionPolicy.(*reverseproxy.CookieHashSelection); ok {
				srv.stickyCookie = c.Name
			}
		}
		sharedProxies[string(raw)] = srv
	}
	if srv.conn, err = h.app.serverConnection(cfg); err != nil {
		return nil, err
	}
	return srv, nil
}

// detachGrace bounds how long an upstream call goes on after its client
// disconnected: long enough for a tool call to finish (MCP says a
// disconnect is not a cancellation), short enough that a stuck upstream
// cannot pin resources forever.
const detachGrace = 5 * time.Minute

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	srv := h.router.lookup(r.Host, r.URL.Path)
	if srv == nil {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if m := h.router.lookupMetadata(r.Host, r.URL.Path); m != nil {
				return m.serveMetadata(w, r)
			}
			if r.URL.Path == jwksPath {
				return h.serveJWKS(w, r)
			}
		}
		if h.TokenEndpoint != "" && r.URL.Path == h.TokenEndpoint {
			return h.serveTokenEndpoint(w, r)
		}
		return next.ServeHTTP(w, r)
	}

	// One allocation holds what the pipeline learns, the response wrapper
	// and the re-readable body; the placeholders read it lazily.
	x := &exchange{srv: srv, method: r.Method}
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Map(x.placeholder)

	if status, reason := srv.checkOrigin(r); status != 0 {
		h.logger.Debug("request refused", zap.String("server", srv.cfg.Name), zap.String("reason", reason))
		return writeHTTPError(w, status, reason)
	}

	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	case http.MethodOptions:
		return srv.preflight(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		return writeHTTPError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
	if o := r.Header.Get("Origin"); o != "" {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Expose-Headers", corsExposed)
		w.Header().Add("Vary", "Origin")
	}

	x.decisionID, x.clientIP = newDecisionID(), clientIP(r)
	if !srv.cfg.Anonymous {
		id, err := h.authenticate(w, r, srv, x)
		if id == nil {
			return err
		}
		x.id = id
	}

	if r.Method == http.MethodPost {
		msg, err := h.readMessage(w, r, x)
		if msg == nil {
			return err
		}
		x.msg = msg
		x.method, x.tool = msg.Method, msg.Target()
		if msg.Kind == mcpmsg.KindResponse {
			x.method = "response"
		}
	}
	x.protocol = protocolOf(r, x.msg)
	if x.protocol == rev20260728 && x.msg != nil {
		if err := mcpmsg.CheckHeaders(x.msg, r.Header.Get("Mcp-Method"), r.Header.Get("Mcp-Name")); err != nil {
			x.decision = policy.Decision{Outcome: policy.OutcomeDeny, Reason: err.Error()}
			h.audit(r, x, "invalid", 0, 0)
			return writeJSONRPC(w, http.StatusBadRequest, mcpmsg.ErrorResponse(x.msg.ID, mcpmsg.CodeHeaderMismatch, err.Error(), nil))
		}
	}
	x.phMethod, x.phTool, x.phSet = x.method, x.tool, true
	ok, err := h.authorize(w, r, x)
	decision := x.decision.AuditDecision()
	x.auditDecision = decision
	if !ok {
		h.audit(r, x, decision, 0, 0)
		return err
	}

	if ok, err := h.openSession(w, r, x); !ok {
		return err
	}

	// Step 7: the client's own credentials never go upstream; the
	// connection's are injected instead.
	if ok, err := h.injectCredentials(w, r, x); !ok {
		return err
	}

	if r.Method == http.MethodPost {
		ctx, done := detach(r.Context(), detachGrace)
		defer done()
		r = r.WithContext(ctx)
	}
	rw := &x.rw
	*rw = respWriter{ResponseWriter: w, detached: r.Method == http.MethodPost, h: h, x: x}
	if len(x.filterIDs) > 0 {
		effective := x.decision.Effective
		tools := srv.tools
		rw.allow = func(name string) bool { return tools.Allowed(name, effective) }
		rw.ids = x.filterIDs
		rw.private = x.protocol == rev20260728
	}
	start := time.Now()
	err = srv.proxy.ServeHTTP(rw, r, next)
	if ferr := rw.finish(); err == nil {
		err = ferr
	}
	status := rw.status
	if err != nil {
		status = http.StatusBadGateway
		if he, ok := err.(caddyhttp.HandlerError); ok && he.StatusCode != 0 {
			status = he.StatusCode
		}
		if rw.status == 0 && status >= 500 {
			// Nothing was sent yet: answer with a JSON-RPC error naming the
			// server rather than Caddy's empty error page.
			h.logger.Warn("upstream failed", zap.String("server", srv.cfg.Name), zap.Int("status", status), zap.Error(err))
			var id []byte
			if x.msg != nil {
				id = x.msg.ID
			}
			h.audit(r, x, decision, status, time.Since(start))
			return writeJSONRPC(w, status, mcpmsg.ErrorResponse(id, mcpmsg.CodeGatewayError,
				"Upstream of server "+srv.cfg.Name+" is unavailable", nil))
		}
	}
	h.audit(r, x, decision, status, time.Since(start))
	return err
}

// detach returns a context that keeps ctx's values but outlives its
// cancellation by up to grace, and the function that releases it (call it
// when the upstream call is over).
func detach(ctx context.Context, grace time.Duration) (context.Context, func()) {
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-d.Done():
		case <-t.C:
			cancel()
		}
	})
	return d, func() { stop(); cancel() }
}

// writeHTTPError writes a small JSON error body with status.
func writeHTTPError(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := fmt.Fprintf(w, `{"error":%q}`+"\n", msg)
	return err
}

// requestHost returns the lower-cased host of r without its port.
func requestHost(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
