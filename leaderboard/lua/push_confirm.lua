-- push_confirm.lua: record what a claim (push_claim.lua) published, and end the claim.
--
-- KEYS[1] push   (as in push_claim.lua)
-- ARGV: token (the claim's), version (the board version published, "" if none),
--       ended (the end_us whose status was published, "" if none)
--
-- Reply: 1 if the claim was still the caller's, 0 if its lease had run out and another process
-- claimed since (that process records its own push; nothing is written here).

if redis.call("HGET", KEYS[1], "token") ~= ARGV[1] then
  return 0
end
if ARGV[2] ~= "" then
  redis.call("HSET", KEYS[1], "ver", ARGV[2])
end
if ARGV[3] ~= "" then
  redis.call("HSET", KEYS[1], "ended", ARGV[3])
end
redis.call("HDEL", KEYS[1], "token", "until_us")
return 1
