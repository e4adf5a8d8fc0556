-- counter_decr: ARGV[3] amount. Returns the value after (as the stored string, exact
-- past 2**53); a counter reaching 0 is deleted.
local key = KEYS[1]
local amount = tonumber(ARGV[3])

local value = live_counter(key, now_ms())
if not value then
  return 0
end
if tonumber(value) <= amount then
  redis.call('DEL', key)
  return 0
end
-- HINCRBY keeps the key's TTL, so the window is unchanged.
redis.call('HINCRBY', key, 'v', -amount)
return redis.call('HGET', key, 'v')
