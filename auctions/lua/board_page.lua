-- board_page.lua: one consistent snapshot of a session's board, in one round trip.
--
-- KEYS[1] params, KEYS[2] rank, KEYS[3] bids, KEYS[4] names, KEYS[5] meta (as in place_bid.lua)
-- ARGV: offset (0-based), count (0 for the meta only)
--
-- Reply: {"ok", now_us, start_us, end_us (effective), settled ("" or "1"), inventory, version, total,
--         threshold ("" while < K bidders), highest_cents, entries}
--   entries: flat {user_id, username, cents, score, ...} in ranking order
-- or {"err", "no_params"} / {"err", "not_found"}.
-- Cost: O(log N + count): ZREVRANGE with a range, never the whole set.

local p = redis.call("HMGET", KEYS[1], "start_us", "end_us", "inventory", "settled", "missing", "epoch", "ext_us")
if p[5] then
  return {"err", "not_found"}
end
local meta = redis.call("HMGET", KEYS[5], "ver", "hi", "epoch")
if not p[1] or not p[6] or p[6] ~= meta[3] then
  return {"err", "no_params"}  -- not whole (see place_bid.lua): restore first
end
local inventory = tonumber(p[3])
if p[7] and tonumber(p[7]) > tonumber(p[2]) then
  p[2] = p[7]  -- the effective end (soft close, see place_bid.lua)
end
local offset, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call("TIME")
local now_text = string.format("%.0f", tonumber(t[1]) * 1000000 + tonumber(t[2]))

local total = redis.call("ZCARD", KEYS[2])
local threshold = ""
if total >= inventory then
  threshold = redis.call("ZREVRANGE", KEYS[2], inventory - 1, inventory - 1, "WITHSCORES")[2]
end

local entries = {}
if count > 0 and offset < total then
  local rows = redis.call("ZREVRANGE", KEYS[2], offset, offset + count - 1, "WITHSCORES")
  local ids = {}
  for i = 1, #rows, 2 do
    ids[#ids + 1] = string.sub(rows[i], 18)
  end
  local bids = redis.call("HMGET", KEYS[3], unpack(ids))
  local names = redis.call("HMGET", KEYS[4], unpack(ids))
  for i = 1, #ids do
    local cents = string.match(bids[i] or "0|", "^(%d+)|")
    entries[#entries + 1] = ids[i]
    entries[#entries + 1] = names[i] or ""
    entries[#entries + 1] = cents
    entries[#entries + 1] = rows[2 * i]
  end
end

return {"ok", now_text, p[1], p[2], p[4] or "", p[3], meta[1] or "0", tostring(total), threshold,
  meta[2] or "0", entries}
