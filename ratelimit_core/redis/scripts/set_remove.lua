-- set_remove: ARGV[3] member. Returns the live size after.
local key = KEYS[1]
local now = now_ms()

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZREM', key, ARGV[3]) == 1 then
  refresh_set_expiry(key, now)
end
return redis.call('ZCARD', key)
