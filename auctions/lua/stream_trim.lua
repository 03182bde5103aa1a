-- Drop from a session's bid stream every entry PostgreSQL holds (auctions.persistence), after a
-- batch was written, committed and acknowledged.
-- KEYS[1]  the session's stream, fb:{<sid>}:stream
-- ARGV[1]  the persist consumer group
-- Reply: the number of entries dropped.
--
-- Every entry up to the group's last-delivered id was handed to some consumer, and the ones no
-- longer pending were acknowledged, which happens only after their batch committed. So every
-- entry below both the first pending one and the one after the last delivered is in PostgreSQL:
-- one XTRIM MINID drops them, whole listpack nodes at a time. (XDEL of the batch's ids, before,
-- cost Redis ~2.3 us per entry, 11.5 ms for a batch of 5,000, while every bid waited.)
-- A stream Redis lost after its batch was read (a flush, a restart without its data): nothing to
-- trim (XINFO would fail on the missing key and end the persist tick).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local minid = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  if fields['name'] == ARGV[1] then
    local ms, seq = string.match(fields['last-delivered-id'], '^(%d+)-(%d+)$')
    minid = {tonumber(ms), tonumber(seq) + 1}
  end
end
if not minid then
  return 0
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 then
  local ms, seq = string.match(pending[2], '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if ms < minid[1] or (ms == minid[1] and seq < minid[2]) then
    minid = {ms, seq}
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', minid[1], minid[2]))
