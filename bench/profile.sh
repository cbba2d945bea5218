#!/usr/bin/env bash
# bench/profile.sh: CPU profile of one proxy process of a bench/run.sh setup under load.
#
#   bench/run.sh                       # once: leaves its work dir (printed at the end)
#   bench/profile.sh WORKDIR gw        # or: caddy (plain reverse_proxy), big (10k servers)
#
# Starts the null upstream, the token issuer and the chosen proxy from WORKDIR's configs
# (same ports as bench/run.sh with the same PORT_BASE), drives the tools/call row with wrk for
# PROFILE_SECONDS+5 seconds (default 15+5) and takes a PROFILE_SECONDS CPU profile from the proxy's admin endpoint
# (/debug/pprof/profile). Prints `go tool pprof -top` and keeps the profile in WORKDIR.
# PROFILE_REQUEST=list drives the tools/list row instead (the gateway filters the list).
set -euo pipefail
WORK=${1:?usage: bench/profile.sh WORKDIR gw|caddy|big}
WHICH=${2:-gw}
SECONDS_=${PROFILE_SECONDS:-15}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PB=${PORT_BASE:-19500}
P_NULL=$((PB + 1)) P_RS=$((PB + 11)) P_ES=$((PB + 12))
P_CADDY_NULL=$((PB + 20)) A_CADDY=$((PB + 29)) P_GW_NULL=$((PB + 30)) P_GW_SDK=$((PB + 31)) A_GW=$((PB + 39))
P_BIG=$((PB + 40)) A_BIG=$((PB + 49))
RES_NULL="http://127.0.0.1:$P_GW_NULL/bench/mcp"
RES_SDK="http://127.0.0.1:$P_GW_SDK/bench/mcp"
export XDG_DATA_HOME="$WORK/xdg/data" XDG_CONFIG_HOME="$WORK/xdg/config"
case $WHICH in
gw) CFG=$WORK/gw.json URL=$RES_NULL ADMIN=$A_GW ;;
caddy) CFG=$WORK/caddy.json URL=http://127.0.0.1:$P_CADDY_NULL/bench/mcp ADMIN=$A_CADDY ;;
big) CFG=$WORK/big.json URL=http://127.0.0.1:$P_BIG/bench/mcp ADMIN=$A_BIG ;;
*) echo "unknown target $WHICH" >&2; exit 2 ;;
esac
[[ -e $CFG ]] || { [[ $WHICH == caddy && -e $WORK/caddy.caddyfile ]] && "$WORK/bin/caddy" adapt --config "$WORK/caddy.caddyfile" >"$WORK/caddy.json"; }

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
"$WORK/bin/nullupstream" -addr "127.0.0.1:$P_NULL" >"$WORK/logs/prof-null.log" 2>&1 & PIDS+=($!)
rm -f "$WORK/tok/ready"
"$WORK/bin/benchissuer" -rs "127.0.0.1:$P_RS" -es "127.0.0.1:$P_ES" -aud "$RES_NULL,$RES_SDK" -out "$WORK/tok" >"$WORK/logs/prof-issuer.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [[ -e $WORK/tok/ready ]] && break; sleep 0.1; done
"$WORK/bin/caddy" run --config "$CFG" >"$WORK/logs/prof-$WHICH.log" 2>&1 & PIDS+=($!)
PROXY=$!
# /config/admin, not /config/: the latter encodes the whole (for `big`, 18 MB) config per poll.
for _ in $(seq 600); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$ADMIN/config/admin" && break; sleep 0.1; done
sleep 1

META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}'
[[ -e $WORK/call.json ]] || printf '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},%s}}' "$META" >"$WORK/call.json"
cpu0=$(awk '{print $14 + $15}' "/proc/$PROXY/stat")
[[ -e $WORK/list.json ]] || printf '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{%s}}' "$META" >"$WORK/list.json"
if [[ ${PROFILE_REQUEST:-call} == list ]]; then REQ=("$WORK/list.json" "$WORK/tok/rs256.jwt" tools/list); else REQ=("$WORK/call.json" "$WORK/tok/rs256.jwt" tools/call test_simple_text); fi
wrk -t2 -c32 -d"$((SECONDS_ + 5))s" -s "$ROOT/bench/post.lua" "$URL" -- "${REQ[@]}" \
	>"$WORK/logs/prof-wrk.log" 2>&1 &
WRK=$!
sleep 2
curl -s -o "$WORK/cpu-$WHICH-${PROFILE_REQUEST:-call}.prof" "http://127.0.0.1:$ADMIN/debug/pprof/profile?seconds=$SECONDS_"
wait "$WRK" || true
cpu1=$(awk '{print $14 + $15}' "/proc/$PROXY/stat")
grep -E "Requests/sec|BENCH" "$WORK/logs/prof-wrk.log" || true
reqs=$(sed -n 's/.*BENCH requests=\([0-9]*\).*/\1/p' "$WORK/logs/prof-wrk.log")
[[ -n $reqs && $reqs -gt 0 ]] && awk -v a="$cpu0" -v b="$cpu1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
	'BEGIN{printf "proxy CPU per request: %.0f us (incl. the profiler)\n", (b-a)/hz*1e6/n}' 
go tool pprof -top -nodecount=40 "$WORK/bin/caddy" "$WORK/cpu-$WHICH-${PROFILE_REQUEST:-call}.prof" 2>/dev/null
echo "profile: $WORK/cpu-$WHICH-${PROFILE_REQUEST:-call}.prof"
