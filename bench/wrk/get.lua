-- wrk script for GET endpoints: counts every status and prints one RESULT line.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total, parts = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do table.insert(parts, string.format("%d:%d", status, n)) end
  table.sort(parts)
  io.write(string.format("RESULT requests=%d seconds=%.2f accepted=%d p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f " ..
                         "errors=%d statuses=%s\n",
    summary.requests, summary.duration / 1e6, total[200] or 0, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
