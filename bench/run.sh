#!/usr/bin/env bash
# bench/run.sh — the MCP gateway against plain Caddy, on loopback, in alternating rounds.
#
#   bench/run.sh                 # default: 5 rounds x 11 rows x 6s, 1000 SSE streams, big config
#                                # 10 000 servers / 100 000 policies (about 8 minutes with builds)
#   QUICK=1 bench/run.sh         # 2 rounds x 2s, 200 SSE streams, big config 1 000 / 10 000
#                                # (about 1.5 minutes once the Go build cache is warm)
#
# ONLY=REGEX (extended regex on row names, e.g. ONLY='^sdk/' : only those rows; the big
# configuration is built and loaded only when a big row is selected)
# Knobs (environment): PIN=1 (proxies on CPU 1, load and upstreams on CPU 0) ROUNDS DURATION CONNS THREADS WARMUP BIG_SERVERS BIG_POLICIES
# BIG_ADAPT=1 (also time `caddy adapt` of the full big Caddyfile: minutes) SSE_STREAMS (0 = skip)
# PORT_BASE (default 19500) BENCH_WORK (work dir; default a new /tmp/mcpbench.XXXXXX, kept).
#
# What it does: installs wrk if missing (apt-get), builds the gateway (go build ./cmd/caddy),
# bench/nullupstream, bench/benchissuer, bench/bigjson, bench/ssehold, installs the go-sdk
# conformance everything-server v1.8.0 into a bench-local GOBIN, starts them and four Caddy
# processes (plain reverse_proxy; the gateway, its audit log through mcp_buffered; the same
# gateway with the audit log left on Caddy's default stderr log; the gateway with BIG_SERVERS
# servers and BIG_POLICIES policies), and, when taskset and two CPUs are there, a second go-sdk
# server, plain Caddy and gateway pinned for the sdk-own-core rows (see OWNCORE below); checks every
# configuration answers a real result, then runs wrk in alternating rounds and prints the table.
# Every process it starts is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	ROUNDS=${ROUNDS:-2}; DURATION=${DURATION:-2}; WARMUP=${WARMUP:-1}; SSE_STREAMS=${SSE_STREAMS:-200}
	BIG_SERVERS=${BIG_SERVERS:-1000}; BIG_POLICIES=${BIG_POLICIES:-10000}
else
	ROUNDS=${ROUNDS:-5}; DURATION=${DURATION:-6}; WARMUP=${WARMUP:-2}; SSE_STREAMS=${SSE_STREAMS:-1000}
fi
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
BIG_SERVERS=${BIG_SERVERS:-10000}
BIG_POLICIES=${BIG_POLICIES:-100000}
BIG_ADAPT=${BIG_ADAPT:-0}
ONLY=${ONLY:-}
PB=${PORT_BASE:-19500}
# PIN=1: every proxy (plain Caddy and the gateways) on one CPU, wrk, the upstreams and the issuer
# on another (taskset; the first two CPUs this shell may use). Each proxy then has a core of its own (Go sizes GOMAXPROCS to it: 1), which
# takes the scheduling noise of sharing two cores with wrk out of the CPU-per-request figures;
# the sdk rows become bound by the go-sdk server, which shares CPU 0 with wrk.
PIN=${PIN:-0}
LOADSIDE="" PROXYSIDE=""
# The first two CPUs this process may run on (e.g. "0,1", "4-7", "2,5-6"), when taskset exists.
ALLOWED=()
if command -v taskset >/dev/null; then
	IFS=',' read -ra parts <<<"$(taskset -pc $$ | awk -F': ' '{print $2}')"
	for part in "${parts[@]}"; do
		if [[ $part == *-* ]]; then ALLOWED+=($(seq "${part%-*}" "${part#*-}")); else ALLOWED+=("$part"); fi
	done
fi
if [[ $PIN == 1 ]]; then
	[[ ${#ALLOWED[@]} -ge 2 ]] || { echo "PIN=1 needs taskset (util-linux) and 2 usable CPUs (have: ${ALLOWED[*]:-none})" >&2; exit 1; }
	LOADSIDE="taskset -c ${ALLOWED[0]}" PROXYSIDE="taskset -c ${ALLOWED[1]}"
fi
# The sdk-own-core rows (unless PIN=1, which pins every row that way): a second go-sdk server
# with wrk on one CPU, a second plain Caddy and a second gateway on the other, so the proxy
# does not compete with a CPU-bound upstream for its cores (the shape of a real deployment,
# where the MCP server runs elsewhere). Skipped without taskset or a second CPU.
OWNCORE=0 OWN_LOAD="" OWN_PROXY=""
if [[ $PIN != 1 && ${#ALLOWED[@]} -ge 2 ]]; then
	OWNCORE=1 OWN_LOAD="taskset -c ${ALLOWED[0]}" OWN_PROXY="taskset -c ${ALLOWED[1]}"
fi
WORK=${BENCH_WORK:-$(mktemp -d /tmp/mcpbench.XXXXXX)}
mkdir -p "$WORK"/{bin,tok,logs,xdg}
export XDG_DATA_HOME="$WORK/xdg/data" XDG_CONFIG_HOME="$WORK/xdg/config"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# Ports.
P_NULL=$((PB + 1)) P_SDK=$((PB + 2)) P_RS=$((PB + 11)) P_ES=$((PB + 12))
P_CADDY_NULL=$((PB + 20)) P_CADDY_SDK=$((PB + 21)) A_CADDY=$((PB + 29))
P_GW_NULL=$((PB + 30)) P_GW_SDK=$((PB + 31)) A_GW=$((PB + 39))
P_BIG=$((PB + 40)) A_BIG=$((PB + 49))
P_GWS_NULL=$((PB + 50)) P_GWS_SDK=$((PB + 51)) A_GWS=$((PB + 59))
P_SDK_OWN=$((PB + 3)) P_CADDY_OWN=$((PB + 22)) A_CADDY_OWN=$((PB + 28))
P_GWO_NULL=$((PB + 60)) P_GWO_SDK=$((PB + 61)) A_GWO=$((PB + 69))
RES_NULL="http://127.0.0.1:$P_GW_NULL/bench/mcp"
RES_SDK="http://127.0.0.1:$P_GW_SDK/bench/mcp"

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# selected ROW: the row is measured in this run (ONLY unset, or ROW matches it).
selected() { [[ -z $ONLY ]] || grep -qE -- "$ONLY" <<<"$1"; }
# The own-core trio only runs when one of its rows is selected.
if [[ $OWNCORE == 1 ]] && ! selected sdk-own-core/direct && ! selected sdk-own-core/caddy && ! selected sdk-own-core/gw-rs256; then
	OWNCORE=0
fi

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

# start NAME CMD... : run in the background, log to $WORK/logs/NAME.log, remember the PID in PID_NAME.
start() {
	local name=$1; shift
	"$@" >"$WORK/logs/$name.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	printf -v "PID_${name//-/_}" '%s' "$pid"
}

# wait_http URL [seconds]: until URL answers anything.
wait_http() { # URL [seconds [method]]
	local url=$1 t=${2:-60} m=${3:-GET} i
	for ((i = 0; i < t * 10; i++)); do
		curl -s -o /dev/null -m 1 -X "$m" "$url" && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- tools and binaries
if ! command -v wrk >/dev/null; then
	log "installing wrk (apt-get)"
	(apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; }) ||
		die "could not install wrk"
fi
command -v curl >/dev/null || die "curl is required"
CLK_TCK=$(getconf CLK_TCK)

log "work dir $WORK; building (go build) ..."
(cd "$ROOT" && go build -o "$WORK/bin/caddy" ./cmd/caddy) || die "go build ./cmd/caddy failed"
(cd "$ROOT" && for c in nullupstream benchissuer bigjson ssehold; do go build -o "$WORK/bin/$c" "./bench/$c" || exit 1; done) ||
	die "building bench helpers failed"
if [[ ! -x $WORK/bin/everything-server ]]; then
	(cd "$ROOT" && GOBIN="$WORK/bin" go install github.com/modelcontextprotocol/go-sdk/conformance/everything-server@v1.8.0) ||
		die "go install everything-server failed"
fi
CADDY="$WORK/bin/caddy"

# ---------------------------------------------------------------- upstreams and issuers
start null $LOADSIDE "$WORK/bin/nullupstream" -addr "127.0.0.1:$P_NULL"
start sdk $LOADSIDE "$WORK/bin/everything-server" -http="127.0.0.1:$P_SDK" -stateless=true
[[ $OWNCORE == 1 ]] && start sdkown $OWN_LOAD "$WORK/bin/everything-server" -http="127.0.0.1:$P_SDK_OWN" -stateless=true
rm -f "$WORK/tok/ready"
start issuer $LOADSIDE "$WORK/bin/benchissuer" -rs "127.0.0.1:$P_RS" -es "127.0.0.1:$P_ES" -aud "$RES_NULL,$RES_SDK" -out "$WORK/tok"
for ((i = 0; i < 300; i++)); do [[ -e $WORK/tok/ready ]] && break; sleep 0.1; done
[[ -e $WORK/tok/ready ]] || die "benchissuer did not start: $(tail -3 "$WORK/logs/issuer.log")"
wait_http "http://127.0.0.1:$P_NULL/" 60 DELETE || die "nullupstream did not start"
wait_http "http://127.0.0.1:$P_SDK/" 60 DELETE || die "everything-server did not start"
[[ $OWNCORE == 0 ]] || wait_http "http://127.0.0.1:$P_SDK_OWN/" 60 DELETE || die "second everything-server did not start"

# ---------------------------------------------------------------- configurations
cat >"$WORK/caddy.caddyfile" <<EOF
{
	admin 127.0.0.1:$A_CADDY
}
http://127.0.0.1:$P_CADDY_NULL {
	reverse_proxy 127.0.0.1:$P_NULL
}
http://127.0.0.1:$P_CADDY_SDK {
	reverse_proxy 127.0.0.1:$P_SDK
}
EOF

cat >"$WORK/caddyown.caddyfile" <<EOF
{
	admin 127.0.0.1:$A_CADDY_OWN
}
http://127.0.0.1:$P_CADDY_OWN {
	reverse_proxy 127.0.0.1:$P_SDK_OWN
}
EOF

# gw_caddyfile WITH_CONNECTION(0|1) AUDIT(buffered|sync) ADMIN PORT_NULL PORT_SDK SDK_UPSTREAM_PORT AUDIT_FILE
# The gateway writes its audit log (one entry per request) to a file through the mcp_buffered
# writer, as the README recommends at thousands of requests per second; AUDIT=sync leaves it on
# Caddy's default log (stderr, one write system call per entry) for the null/gw-syncaudit row.
gw_caddyfile() {
	local conn_def="" conn_use="" audit_log=""
	if [[ $1 == 1 ]]; then
		conn_def=$'\t\t\tconnection key {\n\t\t\t\tapi_key X-Api-Key bench-api-key\n\t\t\t}'
		conn_use=$'\t\t\tconnection key'
	fi
	if [[ $2 == buffered ]]; then
		audit_log=$'\tlog audit {\n\t\tinclude mcp.audit\n\t\toutput mcp_buffered {\n\t\t\toutput file '"$7"$'\n\t\t}\n\t}\n\tlog default {\n\t\texclude mcp.audit\n\t}'
	fi
	local admin=$3 p_null=$4 p_sdk=$5 up_sdk=$6
	cat <<EOF
{
$audit_log
	admin 127.0.0.1:$admin
	mcp {
		issuer http://127.0.0.1:$P_RS {
			jwks_uri http://127.0.0.1:$P_RS/keys
			algorithms RS256 ES256
			tenant_claim tenant
		}
		issuer http://127.0.0.1:$P_ES {
			jwks_uri http://127.0.0.1:$P_ES/keys
			algorithms RS256 ES256
			tenant_claim tenant
		}
		tenant bench {
$conn_def
		}
		policy bench {
			allow
			agents *
			tenants bench
			scopes *
		}
	}
}
http://127.0.0.1:$p_null {
	mcp_gateway {
		server null {
			tenant bench
			path /bench/mcp
			upstream http://127.0.0.1:$P_NULL/mcp
			resource $RES_NULL
$conn_use
			scopes mcp:read mcp:write
			require mcp:read
			tool admin_* mcp:write
			tool * mcp:read
		}
	}
}
http://127.0.0.1:$p_sdk {
	mcp_gateway {
		server sdk {
			tenant bench
			path /bench/mcp
			upstream http://127.0.0.1:$up_sdk/
			resource $RES_SDK
$conn_use
			scopes mcp:read mcp:write
			require mcp:read
			tool admin_* mcp:write
			tool * mcp:read
		}
	}
}
EOF
}

CONNECTION_NOTE="api_key connection configured"
gw_caddyfile 1 buffered "$A_GW" "$P_GW_NULL" "$P_GW_SDK" "$P_SDK" "$WORK/logs/gw-audit.log" >"$WORK/gw.caddyfile"
gw_caddyfile 1 sync "$A_GWS" "$P_GWS_NULL" "$P_GWS_SDK" "$P_SDK" - >"$WORK/gwsync.caddyfile"
# Same resource as the first gateway's sdk server, so the same token serves both.
gw_caddyfile 1 buffered "$A_GWO" "$P_GWO_NULL" "$P_GWO_SDK" "$P_SDK_OWN" "$WORK/logs/gwown-audit.log" >"$WORK/gwown.caddyfile"
for c in gw gwsync gwown; do
	"$CADDY" adapt --config "$WORK/$c.caddyfile" >"$WORK/$c.json" 2>"$WORK/logs/$c-adapt.log" ||
		die "gateway Caddyfile $c does not adapt: $(tail -3 "$WORK/logs/$c-adapt.log")"
done

declare -A FAILED=()
start caddy $PROXYSIDE "$CADDY" run --config "$WORK/caddy.caddyfile"
start gw $PROXYSIDE "$CADDY" run --config "$WORK/gw.json"
start gwsync $PROXYSIDE "$CADDY" run --config "$WORK/gwsync.json"
wait_http "http://127.0.0.1:$A_CADDY/config/" 60 || die "plain Caddy did not start: $(tail -3 "$WORK/logs/caddy.log")"
wait_http "http://127.0.0.1:$A_GW/config/" 60 || FAILED[gw]="gateway did not load: $(grep -m1 -i error "$WORK/logs/gw.log" | cut -c1-300)"
wait_http "http://127.0.0.1:$A_GWS/config/" 60 || FAILED[gwsync]="gateway did not load: $(grep -m1 -i error "$WORK/logs/gwsync.log" | cut -c1-300)"
if [[ $OWNCORE == 1 ]]; then
	start caddyown $OWN_PROXY "$CADDY" run --config "$WORK/caddyown.caddyfile"
	start gwown $OWN_PROXY "$CADDY" run --config "$WORK/gwown.json"
	wait_http "http://127.0.0.1:$A_CADDY_OWN/config/" 60 || die "second plain Caddy did not start: $(tail -3 "$WORK/logs/caddyown.log")"
	wait_http "http://127.0.0.1:$A_GWO/config/" 60 || FAILED[gwown]="gateway did not load: $(grep -m1 -i error "$WORK/logs/gwown.log" | cut -c1-300)"
fi

# The big configuration: adapt a small genbig.sh Caddyfile with the real adapter, expand its
# JSON to BIG_SERVERS/BIG_POLICIES (bench/bigjson), load it and time the load.
BIG_NOTE=""
load_big() {
	"$ROOT/bench/genbig.sh" 3 3 "$P_BIG" "$A_BIG" "http://127.0.0.1:$P_RS" "http://127.0.0.1:$P_ES" \
		"http://127.0.0.1:$P_NULL/mcp" "$RES_NULL" "$WORK/logs/big-audit.log" >"$WORK/big-small.caddyfile"
	if ! "$CADDY" adapt --config "$WORK/big-small.caddyfile" >"$WORK/big-small.json" 2>"$WORK/logs/big-adapt.log"; then
		FAILED[big]="small genbig Caddyfile does not adapt: $(tail -1 "$WORK/logs/big-adapt.log" | cut -c1-300)"
	else
		"$WORK/bin/bigjson" -in "$WORK/big-small.json" -servers "$BIG_SERVERS" -policies "$BIG_POLICIES" >"$WORK/big.json"
		if [[ $BIG_ADAPT == 1 ]]; then
			"$ROOT/bench/genbig.sh" "$BIG_SERVERS" "$BIG_POLICIES" "$P_BIG" "$A_BIG" "http://127.0.0.1:$P_RS" \
				"http://127.0.0.1:$P_ES" "http://127.0.0.1:$P_NULL/mcp" "$RES_NULL" "$WORK/logs/big-audit.log" >"$WORK/big.caddyfile"
			t0=$(date +%s.%N)
			"$CADDY" adapt --config "$WORK/big.caddyfile" >/dev/null 2>&1 || true
			BIG_NOTE+=" adapt(Caddyfile, $(wc -l <"$WORK/big.caddyfile") lines)=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
		fi
		t0=$(date +%s.%N)
		start big $PROXYSIDE "$CADDY" run --config "$WORK/big.json"
		ok=0
		for ((i = 0; i < 1800; i++)); do
			code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST "http://127.0.0.1:$P_BIG/bench/mcp" \
				-H "Authorization: Bearer $(cat "$WORK/tok/rs256.jwt")" -H 'Content-Type: application/json' \
				-H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25' \
				-d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}' || true)
			if [[ $code == 200 ]]; then ok=1; break; fi
			kill -0 "$PID_big" 2>/dev/null || break
			sleep 0.1
		done
		if [[ $ok == 1 ]]; then
			read -r ut st < <(awk '{print $14, $15}' "/proc/$PID_big/stat")
			BIG_NOTE+=" load(JSON $(($(stat -c %s "$WORK/big.json") / 1024 / 1024)) MB, to first 200)=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
			BIG_NOTE+=" load_cpu=$(awk -v t=$((ut + st)) -v h="$CLK_TCK" 'BEGIN{printf "%.1f", t/h}')s"
			BIG_NOTE+=" rss_after_load=$(awk '/VmRSS/{printf "%d", $2/1024}' "/proc/$PID_big/status")MB"
		else
			FAILED[big]="big config did not serve: $(grep -m1 -i error "$WORK/logs/big.log" | cut -c1-300)"
		fi
	fi
}
if selected null/gw-big-rs256; then load_big; else BIG_NOTE=" not run (ONLY=$ONLY)"; fi

# ---------------------------------------------------------------- request bodies
META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}'
printf '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},%s}}' "$META" >"$WORK/call.json"
printf '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{%s}}' "$META" >"$WORK/list.json"

# ---------------------------------------------------------------- rows
# name | process (for CPU) | URL | body | token file | Mcp-Method | Mcp-Name
ROWS=(
	"null/direct|null|http://127.0.0.1:$P_NULL/mcp|call|-|tools/call|test_simple_text"
	"null/caddy|caddy|http://127.0.0.1:$P_CADDY_NULL/bench/mcp|call|rs256.jwt|tools/call|test_simple_text"
	"null/gw-rs256|gw|$RES_NULL|call|rs256.jwt|tools/call|test_simple_text"
	"null/gw-es256|gw|$RES_NULL|call|es256.jwt|tools/call|test_simple_text"
	"null/gw-syncaudit|gwsync|http://127.0.0.1:$P_GWS_NULL/bench/mcp|call|rs256.jwt|tools/call|test_simple_text"
	"null/gw-big-rs256|big|http://127.0.0.1:$P_BIG/bench/mcp|call|rs256.jwt|tools/call|test_simple_text"
	"list/caddy|caddy|http://127.0.0.1:$P_CADDY_NULL/bench/mcp|list|rs256.jwt|tools/list|"
	"list/gw-rs256|gw|$RES_NULL|list|rs256.jwt|tools/list|"
	"sdk/direct|sdk|http://127.0.0.1:$P_SDK/|call|-|tools/call|test_simple_text"
	"sdk/caddy|caddy|http://127.0.0.1:$P_CADDY_SDK/|call|rs256.1.jwt|tools/call|test_simple_text"
	"sdk/gw-rs256|gw|$RES_SDK|call|rs256.1.jwt|tools/call|test_simple_text"
)
if [[ $OWNCORE == 1 ]]; then
	ROWS+=(
		"sdk-own-core/direct|sdkown|http://127.0.0.1:$P_SDK_OWN/|call|-|tools/call|test_simple_text"
		"sdk-own-core/caddy|caddyown|http://127.0.0.1:$P_CADDY_OWN/|call|rs256.1.jwt|tools/call|test_simple_text"
		"sdk-own-core/gw-rs256|gwown|http://127.0.0.1:$P_GWO_SDK/bench/mcp|call|rs256.1.jwt|tools/call|test_simple_text"
	)
fi
if [[ -n $ONLY ]]; then
	kept=()
	for row in "${ROWS[@]}"; do selected "${row%%|*}" && kept+=("$row"); done
	[[ ${#kept[@]} -gt 0 ]] || die "ONLY=$ONLY selects no row"
	ROWS=("${kept[@]}")
fi
declare -A HAVE_ROW=()
for row in "${ROWS[@]}"; do HAVE_ROW[${row%%|*}]=1; done
upstream_of() { case $1 in null/* | list/*) echo null ;; sdk/*) echo sdk ;; sdk-own-core/*) echo sdkown ;; esac; }

# Pre-check: each row must answer HTTP 200 with a JSON-RPC result (not an error), so the
# numbers measure the real path. Also report what credentials reached the null upstream.
PIPELINE=""
for row in "${ROWS[@]}"; do
	IFS='|' read -r name proc url body tok mm mn <<<"$row"
	[[ -n ${FAILED[$proc]:-} ]] && continue
	hdrs=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' -H "Mcp-Method: $mm")
	[[ -n $mn ]] && hdrs+=(-H "Mcp-Name: $mn")
	[[ $tok != - ]] && hdrs+=(-H "Authorization: Bearer $(cat "$WORK/tok/$tok")")
	out=$(curl -s -i -m 10 -X POST "$url" "${hdrs[@]}" --data-binary "@$WORK/$body.json" || true)
	status=$(head -1 <<<"$out" | awk '{print $2}')
	if [[ $status != 200 ]] || ! grep -q '"result"' <<<"$out" || grep -q '"error"' <<<"$out"; then
		FAILED[$name]="pre-check: HTTP ${status:-none}: $(tail -1 <<<"$out" | cut -c1-200)"
		continue
	fi
	if [[ $name == null/gw-rs256 ]]; then
		grep -qi '^X-Bench-Saw-Api-Key' <<<"$out" && PIPELINE+="; upstream got the connection's X-Api-Key: yes" || PIPELINE+="; upstream got the connection's X-Api-Key: NO"
		grep -qi '^X-Bench-Saw-Authorization' <<<"$out" && PIPELINE+="; upstream got an Authorization header: yes" || PIPELINE+="; upstream got an Authorization header: no"
	fi
	if [[ $name == list/gw-rs256 ]]; then
		grep -q admin_delete <<<"$out" && PIPELINE+="; tools/list filtered: NO" || PIPELINE+="; tools/list filtered: yes (admin_* removed)"
	fi
done

# ---------------------------------------------------------------- rounds
RES="$WORK/results.tsv"
: >"$RES"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

run_one() { # row round -> appends to $RES
	local row=$1 round=$2 dur=$3 name proc url body tok mm mn up ppid upid c0 c1 u0 u1 line
	IFS='|' read -r name proc url body tok mm mn <<<"$row"
	[[ -n ${FAILED[$name]:-} || -n ${FAILED[$proc]:-} ]] && return 0
	up=$(upstream_of "$name")
	ppid_var="PID_$proc" upid_var="PID_$up"
	ppid=${!ppid_var} upid=${!upid_var}
	local args=("$WORK/$body.json" "$([[ $tok == - ]] && echo - || echo "$WORK/tok/$tok")" "$mm")
	[[ -n $mn ]] && args+=("$mn")
	c0=$(cpu_ticks "$ppid") u0=$(cpu_ticks "$upid")
	local load=$LOADSIDE
	[[ $name == sdk-own-core/* ]] && load=$OWN_LOAD
	line=$($load wrk -t"$THREADS" -c"$CONNS" -d"${dur}s" --latency -s "$ROOT/bench/post.lua" "$url" -- "${args[@]}" 2>&1 | grep '^BENCH' || true)
	c1=$(cpu_ticks "$ppid") u1=$(cpu_ticks "$upid")
	[[ -z $round ]] && return 0 # warm-up
	if [[ -z $line ]]; then
		printf '%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$name" "$round" >>"$RES"
		return 0
	fi
	awk -v name="$name" -v round="$round" -v c="$((c1 - c0))" -v u="$((u1 - u0))" -v hz="$CLK_TCK" -v self="$([[ $proc == "$up" ]] && echo 1 || echo 0)" '
		{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
		END {
			n = v["requests"]; if (n < 1) n = 1
			rps = v["requests"] / (v["duration_us"] / 1e6)
			cpu = self ? "-" : sprintf("%.1f", c / hz * 1e6 / n)
			printf "%s\t%s\t%.1f\t%.3f\t%.3f\t%s\t%.1f\t%d\t%d\n", name, round, rps, v["p50_us"] / 1000, v["p99_us"] / 1000, cpu, u / hz * 1e6 / n, v["errors"], v["non2xx"]
		}' <<<"$line" >>"$RES"
}

LOAD_SAMPLES=()
n_rows=${#ROWS[@]}
log "warm-up (${WARMUP}s per row)"
for row in "${ROWS[@]}"; do run_one "$row" "" "$WARMUP"; done
log "rounds: $ROUNDS x $n_rows rows x ${DURATION}s (connections $CONNS, threads $THREADS)"
for ((r = 1; r <= ROUNDS; r++)); do
	# Rotate the starting row each round so no row always follows the same neighbour.
	for ((k = 0; k < n_rows; k++)); do
		run_one "${ROWS[$(((k + r - 1) % n_rows))]}" "$r" "$DURATION"
	done
	LOAD_SAMPLES+=("$(cut -d' ' -f1 /proc/loadavg)")
	log "round $r/$ROUNDS done (load $(cut -d' ' -f1-3 /proc/loadavg))"
done

# ---------------------------------------------------------------- SSE streams
SSE_LINE="skipped"
if [[ $SSE_STREAMS -gt 0 && -z ${FAILED[gw]:-} ]]; then
	log "SSE: $SSE_STREAMS concurrent GET streams through the gateway"
	SSE_LINE=$($LOADSIDE "$WORK/bin/ssehold" -url "$RES_NULL" -token "$WORK/tok/rs256.jwt" -n "$SSE_STREAMS" -hold 5s -settle 5s \
		-pid "$PID_gw" -metrics "http://127.0.0.1:$A_GW/metrics" 2>&1 | tail -1)
fi

# ---------------------------------------------------------------- table
# stats COLUMN ROW -> "median min max" over rounds (NA when no data)
stats() {
	awk -F'\t' -v r="$2" -v c="$1" '$1 == r && $c != "NA" && $c != "-" { print $c }' "$RES" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) { print "NA NA NA"; exit }
			m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m, a[1], a[NR] }'
}
fmt3() { # median min max FORMAT
	[[ $1 == NA ]] && { printf '%-22s' "-"; return; }
	printf "%-22s" "$(printf "$4 ($4-$4)" "$1" "$2" "$3")"
}
# paired COLUMN NUM DEN -> median/min/max over rounds of NUM_r / DEN_r
paired() {
	awk -F'\t' -v c="$1" -v a="$2" -v b="$3" '
		$1 == a && $c != "NA" { x[$2] = $c } $1 == b && $c != "NA" { y[$2] = $c }
		END { for (k in x) if ((k in y) && y[k] > 0) print x[k] / y[k] }' "$RES" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) { print "NA NA NA"; exit }
			m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}

echo
echo "== MCP gateway benchmark =="
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)$(cd "$ROOT" && [[ -n $(git status --porcelain 2>/dev/null) ]] && echo ' (dirty)')"
echo "machine: nproc=$(nproc) cpu=\"$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)\" load(1m) during rounds: $(printf '%s\n' "${LOAD_SAMPLES[@]}" | sort -g | awk '{a[NR]=$1} END{printf "min %s median %s max %s", a[1], a[int((NR+1)/2)], a[NR]}')"
echo "wrk: rounds=$ROUNDS duration=${DURATION}s connections=$CONNS threads=$THREADS (rows alternate within each round)$([[ $PIN == 1 ]] && echo "; PIN=1: proxies on CPU ${ALLOWED[1]}, wrk/upstreams/issuer on CPU ${ALLOWED[0]}")$([[ $OWNCORE == 1 ]] && echo "; sdk-own-core rows: proxies on CPU ${ALLOWED[1]}, wrk and their go-sdk server on CPU ${ALLOWED[0]}")"
echo "request: MCP 2026-07-28 stateless tools/call (Mcp-Method/Mcp-Name headers, _meta protocolVersion); list/* rows send tools/list"
echo "gateway: $CONNECTION_NOTE$PIPELINE"
echo
printf '%-22s %-22s %-22s %-22s %-22s %-10s %s\n' "row" "req/s med (min-max)" "p50 ms" "p99 ms" "proxy CPU us/req" "upstr us" "err/non2xx"
for row in "${ROWS[@]}"; do
	IFS='|' read -r name proc _ <<<"$row"
	if [[ -n ${FAILED[$name]:-} || -n ${FAILED[$proc]:-} ]]; then
		printf '%-22s FAILED: %s\n' "$name" "${FAILED[$name]:-${FAILED[$proc]}}"
		continue
	fi
	read -r a b c < <(stats 3 "$name"); rps=$(fmt3 "$a" "$b" "$c" "%.0f")
	read -r a b c < <(stats 4 "$name"); p50=$(fmt3 "$a" "$b" "$c" "%.2f")
	read -r a b c < <(stats 5 "$name"); p99=$(fmt3 "$a" "$b" "$c" "%.2f")
	read -r a b c < <(stats 6 "$name"); cpu=$(fmt3 "$a" "$b" "$c" "%.0f")
	read -r a _ _ < <(stats 7 "$name"); ucpu=$([[ $a == NA ]] && echo - || printf '%.0f' "$a")
	errs=$(awk -F'\t' -v r="$name" '$1 == r { e += $8; s += $9 } END { printf "%d/%d", e, s }' "$RES")
	printf '%-22s %s %s %s %s %-10s %s\n' "$name" "$rps" "$p50" "$p99" "$cpu" "$ucpu" "$errs"
done
echo
echo "ratios (median of per-round paired ratios, min-max):"
for pair in "null/gw-rs256 null/caddy" "null/gw-es256 null/caddy" "null/gw-syncaudit null/caddy" "null/gw-big-rs256 null/caddy" "list/gw-rs256 list/caddy" "sdk/gw-rs256 sdk/caddy" "sdk-own-core/gw-rs256 sdk-own-core/caddy" "null/caddy null/direct" "sdk-own-core/caddy sdk-own-core/direct"; do
	read -r x y <<<"$pair"
	[[ -n ${HAVE_ROW[$x]:-} && -n ${HAVE_ROW[$y]:-} ]] || continue
	read -r t1 t2 t3 < <(paired 3 "$x" "$y")
	read -r c1 c2 c3 < <(paired 6 "$x" "$y")
	printf '  %-44s throughput %s (%s-%s)   CPU/req %s (%s-%s)\n' "$x / $y" "$t1" "$t2" "$t3" "$c1" "$c2" "$c3"
done
echo
echo "big config ($BIG_SERVERS servers, $BIG_POLICIES policies):${BIG_NOTE:- -}${FAILED[big]:+ FAILED: ${FAILED[big]}}"
echo "SSE: $SSE_LINE"
echo "raw per-round results: $RES"
