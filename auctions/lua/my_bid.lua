-- my_bid.lua: bidders' live bids and ranks, with what their price to win needs, in one round trip.
-- Serves GET bids/me (one bidder) and the private `you` frames (the signed-in listeners of a
-- session in one web process, once per board push).
--
-- KEYS[1] params, KEYS[2] rank, KEYS[3] bids, KEYS[4] meta (as in place_bid.lua)
-- ARGV: user ids
-- Reply: {"ok", inventory, threshold ("" while < K bidders), total, alpha, beta, gamma, start_us,
--         upset_cents, now_us, end_us (effective), open ("1" unless settled or closed),
--         then per user id: cents, score, rank ("", "", "" without a bid)}
--        | {"err", "no_params"} | {"err", "not_found"}

local p = redis.call("HMGET", KEYS[1], "inventory", "epoch", "missing", "alpha", "beta", "gamma", "start_us",
  "upset_cents", "end_us", "ext_us", "settled", "closed")
if p[3] then
  return {"err", "not_found"}
end
if not p[1] or not p[2] or p[2] ~= redis.call("HGET", KEYS[4], "epoch") then
  return {"err", "no_params"}  -- not whole (see place_bid.lua): restore first
end
local inventory = tonumber(p[1])
local total = redis.call("ZCARD", KEYS[2])
local threshold = ""
if total >= inventory then
  threshold = redis.call("ZREVRANGE", KEYS[2], inventory - 1, inventory - 1, "WITHSCORES")[2]
end
local end_us = p[9]
if p[10] and tonumber(p[10]) > tonumber(end_us) then
  end_us = p[10]
end
local open = "1"
if p[11] or p[12] then
  open = "0"
end
local t = redis.call("TIME")
local reply = {"ok", p[1], threshold, tostring(total), p[4], p[5], p[6], p[7], p[8],
  string.format("%.0f", tonumber(t[1]) * 1000000 + tonumber(t[2])), end_us, open}
local bids = redis.call("HMGET", KEYS[3], unpack(ARGV))
for i = 1, #ARGV do
  local cents, score, rank = "", "", ""
  if bids[i] then
    local member
    cents, score, member = string.match(bids[i], "^(%d+)|[^|]*|([^|]*)|[^|]*|(.+)$")
    local r = redis.call("ZREVRANK", KEYS[2], member)
    if r then
      rank = tostring(r + 1)
    else
      cents, score = "", ""
    end
  end
  reply[#reply + 1] = cents
  reply[#reply + 1] = score
  reply[#reply + 1] = rank
end
return reply
