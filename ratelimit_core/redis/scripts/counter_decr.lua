-- counter_decr: ARGV[3] amount. Returns the value after (as the stored string, exact
-- past 2**53); a counter reaching 0 is deleted.
local key = KEYS[1]
local now = now_ms()
local amount = tonumber(ARGV[3])

local stored = redis.call('HMGET', key, 'v', 'x')
if not stored[1] then
  return 0
end
local expires_at = tonumber(stored[2])
if (expires_at and now >= expires_at) or tonumber(stored[1]) <= amount then
  redis.call('DEL', key)
  return 0
end
-- HINCRBY keeps the key's TTL, so the window is unchanged.
redis.call('HINCRBY', key, 'v', -amount)
return redis.call('HGET', key, 'v')
