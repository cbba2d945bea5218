#!/usr/bin/env bash
# bench-smoke.sh: runs bench/run.sh once, as small as it goes (1 round x 1 s, 50 SSE streams, a
# big config of 100 servers / 1 000 policies), and fails unless every row measured something
# with no error and no non-2xx answer, the gateway injected the connection's API key and kept
# the agent's token from the upstream, tools/list came back filtered, and every SSE stream
# opened. It proves the benchmark still runs on a fresh checkout; its numbers mean nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d /tmp/mcpbench-smoke.XXXXXX)
out="$work/out.txt"
status=0
# Every knob set here, so none leaks in from the caller's environment (ONLY, PIN, BIG_ADAPT ...).
env ONLY= PIN=0 QUICK=0 BIG_ADAPT=0 CONNS=32 THREADS=2 ROUNDS=1 DURATION=1 WARMUP=1 SSE_STREAMS=50 \
	BIG_SERVERS=100 BIG_POLICIES=1000 PORT_BASE="${PORT_BASE:-19700}" BENCH_WORK="$work" \
	timeout 15m "$ROOT/bench/run.sh" >"$out" 2>"$work/log.txt" || status=$?
fail() { echo "bench smoke: $*" >&2; cat "$out" >&2; tail -20 "$work/log.txt" >&2; exit 1; }
[[ $status -eq 0 ]] || fail "bench/run.sh exited with status $status"
grep -q 'FAILED' "$out" && fail "a row or process failed"
rows=$(awk '/^row /{t=1; next} t && NF == 0 {exit} t' "$out")
# 11 rows, 14 with the own-core rows (when taskset and two CPUs are there: the header says so).
want=11
grep -q 'sdk-own-core rows:' "$out" && want=14
[[ $(wc -l <<<"$rows") -eq $want ]] || fail "expected $want rows, got: $rows"
awk '$NF != "0/0" || $2 == "-" || $2 == "NA" { bad = 1; print "bad row: " $0 } END { exit bad }' <<<"$rows" >&2 ||
	fail "a row has errors, non-2xx answers or no throughput"
for want in "upstream got the connection's X-Api-Key: yes" "upstream got an Authorization header: no" "tools/list filtered: yes"; do
	grep -qF "$want" "$out" || fail "missing: $want"
done
grep -q 'SSE: SSE streams=50 opened=50 failed=0' "$out" || fail "SSE streams did not all open"
echo "bench smoke: $(wc -l <<<"$rows") rows measured, pipeline checks passed"
rm -rf "$work"
