-- counter_incr: ARGV[3] amount, ARGV[4] limit or '', ARGV[5] window_ms or ''.
-- The counter is a hash (see live_counter in the prelude).
-- Returns {allowed 0/1, value, reset_after_ms or -1}. The value is sent back as the
-- stored string and changed only with HINCRBY, so it stays exact past 2**53 (a Lua
-- number would not); comparing it as a double against a limit <= 10**15 is exact.
local key = KEYS[1]
local now = now_ms()
local amount = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local window = tonumber(ARGV[5])

local value, expires_at = live_counter(key, now)

if not value then
  if limit and amount > limit then
    return {0, 0, -1}
  end
  if window then
    redis.call('HSET', key, 'v', ARGV[3], 'x', now + window)
    expire_at(key, now, now + window)
    return {1, ARGV[3], window}
  end
  redis.call('HSET', key, 'v', ARGV[3])
  return {1, ARGV[3], -1}
end

local reset = -1
if expires_at then
  reset = expires_at - now
end
if limit and tonumber(value) + amount > limit then
  return {0, value, reset}
end
-- HINCRBY keeps the key's TTL, so the window is unchanged.
redis.call('HINCRBY', key, 'v', amount)
return {1, redis.call('HGET', key, 'v'), reset}
