-- set_add: ARGV[3] member, ARGV[4] capacity or '', ARGV[5] lease_ms or '' (permanent).
-- The set is a sorted set scored by lease end (+inf: permanent); a lease ends when now >= score.
-- Returns {added 0/1, live size}.
local key = KEYS[1]
local now = now_ms()
local member = ARGV[3]
local capacity = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local size = redis.call('ZCARD', key)
if not redis.call('ZSCORE', key, member) then
  if capacity and size >= capacity then
    return {0, size}
  end
  size = size + 1
end
if lease then
  redis.call('ZADD', key, now + lease, member)
else
  redis.call('ZADD', key, '+inf', member)
end
refresh_set_expiry(key, now)
return {1, size}
