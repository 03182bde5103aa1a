-- my_bid.lua: one bidder's live bid and rank.
--
-- KEYS[1] params, KEYS[2] rank, KEYS[3] bids (as in place_bid.lua)
-- ARGV: user_id
-- Reply: {"ok", cents, score, rank, inventory} | {"err", "no_bid"} | {"err", "no_params"}

local inventory = redis.call("HGET", KEYS[1], "inventory")
if not inventory then
  return {"err", "no_params"}
end
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
