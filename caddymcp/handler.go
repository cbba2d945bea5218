package caddymcp

import (
	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Handler is the `mcp_gateway` HTTP handler: it routes each request for one
// of its servers' endpoints (host + path) to that server's upstream through
// a per-server reverse_proxy, after checking Origin, token, message and
// policy; it serves the servers' RFC 9728 metadata. Requests for none of its
// servers go to the next handler.
type Handler struct {
	// Path of the RFC 8693 token endpoint for internal servers; optional.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// The logical MCP servers.
	Servers []*ServerConfig `json:"servers,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}
