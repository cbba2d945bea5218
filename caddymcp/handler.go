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
	"go.uber.org/zap"
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
	h.router = newRouter(len(h.Servers))
	for _, cfg := range h.Servers {
		srv, err := h.provisionServer(ctx, cfg)
		if err != nil {
			return fmt.Errorf("server %s: %w", cfg.Name, err)
		}
		if err := h.router.add(srv); err != nil {
			return err
		}
		app.registerServer(cfg.Name)
	}
	return nil
}

func (h *Handler) provisionServer(ctx caddy.Context, cfg *ServerConfig) (*server, error) {
	srv, err := newServer(cfg, h.app)
	if err != nil {
		return nil, err
	}
	raw, err := proxyJSON(cfg.Upstream, cfg.ProxyRaw)
	if err != nil {
		return nil, err
	}
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
		}
		return next.ServeHTTP(w, r)
	}

	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("mcp.server", srv.cfg.Name)
	repl.Set("mcp.tenant", srv.cfg.Tenant)

	if status, reason := srv.checkOrigin(r); status != 0 {
		h.logger.Debug("request refused", zap.String("server", srv.cfg.Name), zap.String("reason", reason))
		return writeHTTPError(w, status, reason)
	}

	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	case http.MethodOptions:
		// CORS preflight from an allowed (or absent) Origin; the upstream
		// decides what it allows.
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		return writeHTTPError(w, http.StatusMethodNotAllowed, "method not allowed")
	}

	if !srv.cfg.Anonymous {
		id, err := h.authenticate(w, r, srv)
		if id == nil {
			return err
		}
		repl.Set("mcp.agent", id.Agent)
		repl.Set("mcp.subject", id.Subject)
	}

	// Step 7 (part): the client's own credentials never go upstream.
	r.Header.Del("Authorization")
	r.Header.Del("Cookie")

	if r.Method == http.MethodPost {
		ctx, done := detach(r.Context(), detachGrace)
		defer done()
		r = r.WithContext(ctx)
	}
	return srv.proxy.ServeHTTP(w, r, next)
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
