-- bucket_consume: ARGV[3] per_ms, ARGV[4] unit, ARGV[5] full, ARGV[6] cost (integer units,
-- from bucket.bucket_spec). The same integer step as bucket.bucket_step, line for line.
-- The bucket is a hash: l = level, u = updated ms, f = ms at which it is full again.
-- Returns {allowed 0/1, remaining tokens, retry_after_ms, reset_after_ms}.
local key = KEYS[1]
local now = now_ms()
local per_ms = tonumber(ARGV[3])
local unit = tonumber(ARGV[4])
local full = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])

local level, rewound = bucket_level(key, now, per_ms, full)

local allowed = 0
local retry = 0
if level >= cost then
  level = level - cost
  allowed = 1
else
  retry = ceil_div(cost - level, per_ms)
end
local reset = ceil_div(full - level, per_ms)
-- A refusal takes nothing, so it stores nothing, unless the clock went backwards:
-- then the update time is re-based to now, or the retry reported would not hold.
if allowed == 1 or rewound then
  bucket_store(key, now, level, reset)
end
return {allowed, floor_div(level, unit), retry, reset}
