-- wrk script: POST bids over many bidders with strictly rising prices, and count every status.
-- env: BENCH_TOKENS (file: one "<session_id> <token>" per line), BENCH_PRICE_BASE (cents, default 100000)
-- Each wrk thread takes its own slice of bidders; a bidder's next price is always higher than its
-- last (a per-thread counter), so with more bidders than connections nothing is refused as not_higher.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_TOKENS")
  session, tokens = nil, {}
  local n_threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local index = 0
  for line in io.lines(path) do
    local sid, token = line:match("^(%S+) (%S+)$")
    if index % n_threads == id then
      session = sid
      table.insert(tokens, "Bearer " .. token)
    end
    index = index + 1
  end
  statuses = {}
  counter = tonumber(os.getenv("BENCH_PRICE_BASE") or "100000") + id
  next_bidder = 0
  bid_path = "/api/sessions/" .. session .. "/bids"
end

function request()
  next_bidder = next_bidder % #tokens + 1
  counter = counter + 8  -- threads interleave by id: prices stay distinct and rising
  local body = string.format('{"price": "%d.%02d"}', math.floor(counter / 100), counter % 100)
  return wrk.format("POST", bid_path, {["Authorization"] = tokens[next_bidder],
                                        ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do total[status] = (total[status] or 0) + n end
  end
  local seconds = summary.duration / 1e6
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, string.format("%d:%d", status, n)) end
  table.sort(parts)
  io.write(string.format("RESULT requests=%d seconds=%.2f accepted=%d p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f " ..
                         "errors=%d statuses=%s\n",
    summary.requests, seconds, total[201] or 0, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
