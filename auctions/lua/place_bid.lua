-- place_bid.lua: accept or reject one bid, atomically. The only writer of a session's live state.
--
-- KEYS[1] params  hash  start_us, end_us, upset_cents, alpha, beta, gamma, inventory, epoch
--                       [, settled][, closed (settlement has begun: no more bids)][, missing]
--                       soft close: win_us (W; 0 = off), by_us (E), hard_us (H; 0 = none),
--                       ext_us (the end extensions moved it to; written here only)
-- KEYS[2] rank    zset  member "<MAX_SEQ - seq, 16 digits>:<user id>", score = bid score
-- KEYS[3] bids    hash  user id -> "<cents>|<seq>|<score>|<accepted_us>|<member>"
-- KEYS[4] stream  stream of accepted bids (u, p, s, q, t, w), drained by persist_bids
-- KEYS[5] meta    hash  seq (last bid sequence), ver (board version), hi (highest cents), epoch
-- KEYS[6] names   hash  user id -> username (leaderboard rows without SQL)
-- KEYS[7] rate    string, this bidder's attempts in the current one-second window
-- KEYS[8] idem    string, the reply stored under the client's Idempotency-Key
-- ARGV: user_id, username, price ("123.45"), cents, weight, rate_limit, idem_ttl, use_idem (0/1)
--
-- Reply, accepted: {"ok", score, rank, total_bidders, threshold ("" while < K bidders), seq,
--                   accepted_us, version, is_winning ("1"/"0"), replayed (0/1), end_us (the
--                   effective end after this bid), extended ("1"/"0"), alpha, beta, gamma,
--                   start_us, upset_cents}, all but `replayed` as strings (the last five: the
--                   terms the caller's price to win needs, without a second round trip)
-- Reply, rejected: {"err", code, retry_after_ms}; "not_higher" adds {own rank, threshold ("" while
--                   fewer than K bidders), own cents, alpha, beta, gamma, start_us, upset_cents,
--                   now_us, inventory} for the price to win.
--                   Code "no_params" asks the caller to restore the
--                   session's live state from PostgreSQL and try again: the parameters are missing,
--                   or params and meta do not carry the same epoch (the state is not whole: Redis
--                   lost some of it, or a restore is under way). No bid is accepted onto such a state.
--
-- The clock is Redis's own TIME: one clock for every web process.
--
-- Soft close: the effective end is max(end_us, ext_us). An accepted bid ranking within the top K
-- right after acceptance, accepted less than W before the effective end, moves it to
-- max(effective end, now + E), never past H; the stream entry carries the new end ("e") so that
-- PostgreSQL follows. A rejected bid never gets that far.

local params_key, rank_key, bids_key, stream_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local meta_key, names_key, rate_key, idem_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local user_id, username, price, cents = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local weight, rate_limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local idem_ttl, use_idem = tonumber(ARGV[7]), ARGV[8] == "1"

local MAX_SEQ = 1000000000000000

if use_idem then
  local stored = redis.call("GET", idem_key)
  if stored then
    local reply = cjson.decode(stored)
    reply[10] = 1
    return reply
  end
end

local p = redis.call("HMGET", params_key,
  "start_us", "end_us", "upset_cents", "alpha", "beta", "gamma", "inventory", "settled", "missing", "epoch",
  "closed", "ext_us", "win_us", "by_us", "hard_us")
if p[9] then
  return {"err", "not_found", 0}
end
if not p[1] or not p[10] or p[10] ~= redis.call("HGET", meta_key, "epoch") then
  return {"err", "no_params", 0}
end
local start_us, end_us, upset_cents = tonumber(p[1]), tonumber(p[2]), tonumber(p[3])
local alpha, beta, gamma, inventory = tonumber(p[4]), tonumber(p[5]), tonumber(p[6]), tonumber(p[7])
if p[12] and tonumber(p[12]) > end_us then
  end_us = tonumber(p[12])
end

-- The K-th ranked score ("" while fewer than K bidders).
local function threshold_of(total)
  if total < inventory then
    return ""
  end
  return redis.call("ZREVRANGE", rank_key, inventory - 1, inventory - 1, "WITHSCORES")[2]
end

local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Lua prints numbers with 14 digits; a microsecond timestamp needs 16, so format it by hand.
local now_text = string.format("%.0f", now_us)
if now_us < start_us then
  return {"err", "session_not_started", 0}
end
if now_us >= end_us or p[8] or p[11] then
  return {"err", "session_ended", 0}
end

local attempts = redis.call("INCR", rate_key)
if attempts == 1 then
  redis.call("PEXPIRE", rate_key, 1000)
end
if attempts > rate_limit then
  local wait = redis.call("PTTL", rate_key)
  if wait < 0 then
    redis.call("PEXPIRE", rate_key, 1000)
    wait = 1000
  end
  return {"err", "rate_limited", wait}
end

if cents < upset_cents then
  return {"err", "below_upset_price", 0}
end

local previous = redis.call("HGET", bids_key, user_id)
local old_member = nil
if previous then
  local old_cents, old_member_ = string.match(previous, "^(%d+)|[^|]*|[^|]*|[^|]*|(.+)$")
  if cents <= tonumber(old_cents) then
    return {"err", "not_higher", 0, tostring(redis.call("ZREVRANK", rank_key, old_member_) + 1),
      threshold_of(redis.call("ZCARD", rank_key)), old_cents, p[4], p[5], p[6], p[1], p[3], now_text, p[7]}
  end
  old_member = old_member_
end

local seq = redis.call("HINCRBY", meta_key, "seq", 1)
local elapsed = (now_us - start_us) / 1000000
local score = alpha * tonumber(price) + beta / (elapsed + 1) + gamma * weight
local score_text = string.format("%.17g", score)
local member = string.format("%016d", MAX_SEQ - seq) .. ":" .. user_id

if old_member then
  redis.call("ZREM", rank_key, old_member)
end
redis.call("ZADD", rank_key, score_text, member)
redis.call("HSET", bids_key, user_id,
  ARGV[4] .. "|" .. seq .. "|" .. score_text .. "|" .. now_text .. "|" .. member)
redis.call("HSET", names_key, user_id, username)
local version = redis.call("HINCRBY", meta_key, "ver", 1)
local highest = tonumber(redis.call("HGET", meta_key, "hi") or "0")
if cents > highest then
  redis.call("HSET", meta_key, "hi", ARGV[4])
end

local rank = redis.call("ZREVRANK", rank_key, member) + 1
local total = redis.call("ZCARD", rank_key)
local threshold = threshold_of(total)

local extended = "0"
local win_us = tonumber(p[13] or "0")
if win_us > 0 and rank <= inventory and end_us - now_us < win_us then
  local new_end = now_us + tonumber(p[14])
  local hard_us = tonumber(p[15] or "0")
  if hard_us > 0 and new_end > hard_us then
    new_end = hard_us
  end
  if new_end > end_us then
    end_us = new_end
    extended = "1"
    redis.call("HSET", params_key, "ext_us", string.format("%.0f", end_us))
  end
end
local end_text = string.format("%.0f", end_us)
local entry = {"u", user_id, "p", price, "s", score_text, "q", seq, "t", now_text, "w", ARGV[5]}
if extended == "1" then
  entry[13], entry[14] = "e", end_text
end
redis.call("XADD", stream_key, "*", unpack(entry))

-- Every field a string: cjson would round long numbers when the reply is stored for replays.
local winning = "0"
if rank <= inventory then
  winning = "1"
end
local reply = {"ok", score_text, tostring(rank), tostring(total), threshold, string.format("%.0f", seq), now_text,
  string.format("%.0f", version), winning, 0, end_text, extended, p[4], p[5], p[6], p[1], p[3]}
if use_idem then
  redis.call("SET", idem_key, cjson.encode(reply), "EX", idem_ttl)
end
return reply
