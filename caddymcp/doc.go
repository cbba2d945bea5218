// Package caddymcp holds the Caddy modules of the MCP gateway.
package caddymcp
