-- wrk script for the MCP gateway benchmark.
-- Usage: wrk ... -s post.lua URL -- BODY_FILE [TOKEN_FILE] [MCP_METHOD] [MCP_NAME]
-- Sends the same POST on every request: the JSON-RPC body from BODY_FILE, MCP 2026-07-28
-- (stateless) headers, and Authorization: Bearer <token> when TOKEN_FILE is given and not "-".
-- done() prints one machine-readable line: BENCH requests=.. duration_us=.. p50_us=.. p99_us=..
-- errors=.. (socket errors + timeouts) non2xx=..

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return (s:gsub("%s+$", ""))
end

function init(args)
  wrk.method = "POST"
  wrk.body = slurp(args[1])
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
  if args[2] and args[2] ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. slurp(args[2])
  end
  if args[3] then wrk.headers["Mcp-Method"] = args[3] end
  if args[4] then wrk.headers["Mcp-Name"] = args[4] end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
