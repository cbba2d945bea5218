// Package integration holds the end-to-end tests of the gateway: they build
// a real Caddy binary from this checkout (and once with xcaddy, as users
// do), run it on loopback with test Caddyfiles, and drive it with the
// official MCP Go SDK client against upstream MCP servers written with the
// same SDK, and with the official MCP conformance suites.
//
// The tools they need (xcaddy, the go-sdk everything-server, Node 22, the
// conformance suites) are installed by scripts/setup.sh into .tools/ (or
// $MCPGW_TOOLS). Without them the tests that need them skip, unless
// MCPGW_REQUIRE_TOOLS=1 (set by scripts/test.sh and CI), where they fail.
//
// All the code is in _test.go files; this package has no API.
package integration
