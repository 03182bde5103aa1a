-- Write (or drop) a user's hash (accounts.user_cache) unless it would move the token version
-- backwards, and tell every process that it changed.
-- KEYS[1]  the user hash, fb:user:<id>
-- ARGV[1]  TTL in seconds
-- ARGV[2]  "store": the row as committed in PostgreSQL after a change; kept unless the hash
--          already holds a newer token version (a store that read the row earlier, finishing late)
--          "fill":  the row as read on a cold miss; kept only if the hash holds no version, or
--          an older one (a fill that read the row before a revocation must not undo it)
--          "drop":  the user is gone: the hash is deleted (ARGV[3] and the fields are not used)
-- ARGV[3]  the token version of the fields below
-- ARGV[4]  the change channel (accounts.user_cache.CHANGES_CHANNEL)
-- ARGV[5]  the user's id, published on that channel after every write, in the same atomic step:
--          each web process's subscriber forgets its local copy (no process can miss a change
--          that it could have read, since the write and the message are one step)
-- ARGV[6..] field, value, field, value, ... (the whole hash, "ver" included)
-- Reply: {} when written (or dropped); else the hash as it stands (flat field, value list).
-- PUBLISH takes no key: on Redis Cluster it reaches the subscribers of every node.
if ARGV[2] == 'drop' then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return {}
end
local current = redis.call('HGET', KEYS[1], 'ver')
if current then
  current = tonumber(current)
  local version = tonumber(ARGV[3])
  if current > version or (ARGV[2] == 'fill' and current == version) then
    return redis.call('HGETALL', KEYS[1])
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {}
