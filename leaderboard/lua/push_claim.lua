-- push_claim.lua: may the caller push this session's board (and/or its end) now? Decides, for
-- every web process at once, who pushes and what; the caller then publishes and confirms
-- (push_confirm.lua).
--
-- KEYS[1] params  (as in place_bid.lua)
-- KEYS[2] meta    hash, field ver = the board version bumped by every accepted bid
-- KEYS[3] push    hash  ver      board version last pushed (confirmed)
--                       ended    end_us whose "ended" status was pushed (confirmed)
--                       next_us  no new claim before this moment (one push per interval)
--                       token, until_us   the claim in flight and its lease
-- ARGV: token (new, per claim), interval_ms, lease_ms, keep_ms (TTL of the push hash)
--
-- Reply: {"claim", board (0/1), status (0/1), now_us, end_us}: the caller owns the push until the
--        lease ends
--        {"wait", ms}: another claim is in flight or the interval has not passed; ask again then
--        {"idle"}: nothing to push
--        {"err", "no_params"} / {"err", "not_found"} as in board_page.lua
--
-- The clock is Redis's TIME, like the bid script's: "ended" means what the bid script refuses by.

local p = redis.call("HMGET", KEYS[1], "start_us", "end_us", "settled", "missing", "epoch", "ext_us")
if p[4] then
  return {"err", "not_found"}
end
if not p[1] or not p[5] or p[5] ~= redis.call("HGET", KEYS[2], "epoch") then
  return {"err", "no_params"}  -- not whole (see place_bid.lua): the caller restores it
end
if p[6] and tonumber(p[6]) > tonumber(p[2]) then
  p[2] = p[6]  -- the effective end (soft close, see place_bid.lua)
end
local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

local interval_us, lease_us = tonumber(ARGV[2]) * 1000, tonumber(ARGV[3]) * 1000
local s = redis.call("HMGET", KEYS[3], "ver", "ended", "next_us", "token", "until_us")
local wait_us = 0
-- A moment further ahead than one interval (or one lease) means Redis's clock went back (a
-- failover): ignore it rather than stall the pushes until the old clock's time comes again.
if s[3] and tonumber(s[3]) - now_us <= interval_us then
  wait_us = tonumber(s[3]) - now_us
end
if s[4] and now_us < tonumber(s[5]) and tonumber(s[5]) - now_us <= lease_us then
  -- A claim is in flight (normally confirmed within milliseconds); its lease covers a claimer
  -- that died before confirming.
  wait_us = math.max(wait_us, 10000)
end
if wait_us > 0 then
  return {"wait", math.ceil(wait_us / 1000)}
end

local ver = redis.call("HGET", KEYS[2], "ver") or "0"
local board = 0
if ver ~= s[1] then
  board = 1
end
-- Once per end time (an admin who moves the end gets a new announcement); never after settlement,
-- which announces its results itself.
local status = 0
if not p[3] and now_us >= tonumber(p[2]) and s[2] ~= p[2] then
  status = 1
end
if board == 0 and status == 0 then
  return {"idle"}
end

redis.call("HSET", KEYS[3], "token", ARGV[1], "until_us", string.format("%.0f", now_us + lease_us),
  "next_us", string.format("%.0f", now_us + interval_us))
redis.call("PEXPIRE", KEYS[3], ARGV[4])
return {"claim", board, status, string.format("%.0f", now_us), p[2]}
