-- my_bid.lua: one bidder's live bid and rank.
--
-- KEYS[1] params, KEYS[2] rank, KEYS[3] bids, KEYS[4] meta (as in place_bid.lua)
-- ARGV: user_id
-- Reply: {"ok", cents, score, rank, inventory} | {"err", "no_bid"} | {"err", "no_params"} | {"err", "not_found"}

local p = redis.call("HMGET", KEYS[1], "inventory", "epoch", "missing")
if p[3] then
  return {"err", "not_found"}
end
if not p[1] or not p[2] or p[2] ~= redis.call("HGET", KEYS[4], "epoch") then
  return {"err", "no_params"}  -- not whole (see place_bid.lua): restore first
end
local inventory = p[1]
local bid = redis.call("HGET", KEYS[3], ARGV[1])
if not bid then
  return {"err", "no_bid"}
end
local cents, score, member = string.match(bid, "^(%d+)|[^|]*|([^|]*)|[^|]*|(.+)$")
local rank = redis.call("ZREVRANK", KEYS[2], member)
if not rank then
  return {"err", "no_bid"}
end
return {"ok", cents, score, tostring(rank + 1), inventory}
