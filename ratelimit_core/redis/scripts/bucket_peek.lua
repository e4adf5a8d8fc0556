-- bucket_peek: the arguments of bucket_consume; takes nothing and stores nothing.
-- The same refill as bucket_consume (bucket.bucket_peek_step in Python).
-- Returns {cost would be allowed 0/1, whole tokens now, retry_after_ms, reset_after_ms}.
local key = KEYS[1]
local now = now_ms()
local per_ms = tonumber(ARGV[3])
local unit = tonumber(ARGV[4])
local full = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])

local level = full
local stored = redis.call('HMGET', key, 'l', 'u', 'f')
if stored[1] and stored[2] and stored[3] and now < tonumber(stored[3]) then
  level = tonumber(stored[1])
  local updated = tonumber(stored[2])
  local elapsed = 0
  if now > updated then
    elapsed = now - updated
  end
  if elapsed >= ceil_div(full - level, per_ms) then
    level = full
  else
    level = level + elapsed * per_ms
  end
end

local allowed = 0
local retry = 0
if level >= cost then
  allowed = 1
else
  retry = ceil_div(cost - level, per_ms)
end
return {allowed, floor_div(level, unit), retry, ceil_div(full - level, per_ms)}
