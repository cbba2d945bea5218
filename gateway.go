// Package gateway is the module root of the Caddy MCP gateway. Importing it
// registers the gateway's Caddy modules, which is what
// `xcaddy build --with github.com/caddymcp/gateway` does.
package gateway

import (
	_ "github.com/caddymcp/gateway/caddymcp"
)
