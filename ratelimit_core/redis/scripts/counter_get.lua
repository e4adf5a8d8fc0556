-- counter_get: the live value (as the stored string, exact past 2**53), 0 for a
-- missing or expired counter.
local key = KEYS[1]
local now = now_ms()

local stored = redis.call('HMGET', key, 'v', 'x')
if not stored[1] then
  return 0
end
local expires_at = tonumber(stored[2])
if expires_at and now >= expires_at then
  redis.call('DEL', key)
  return 0
end
return stored[1]
