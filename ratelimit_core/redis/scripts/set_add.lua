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
if capacity and size >= capacity and not redis.call('ZSCORE', key, member) then
  return {0, size}
end
local score = '+inf'
if lease then
  score = now + lease
end
-- ZADD answers 1 for a new member, 0 for a refreshed one.
size = size + redis.call('ZADD', key, score, member)
refresh_set_expiry(key, now)
return {1, size}
