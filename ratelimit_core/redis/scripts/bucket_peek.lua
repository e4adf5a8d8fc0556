-- bucket_peek: the arguments of bucket_consume; takes nothing, and stores nothing unless
-- the clock went backwards (then re-bases the update time to now, as bucket_consume
-- does). bucket.bucket_peek_step in Python.
-- Returns {cost would be allowed 0/1, whole tokens now, retry_after_ms, reset_after_ms}.
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
  allowed = 1
else
  retry = ceil_div(cost - level, per_ms)
end
local reset = ceil_div(full - level, per_ms)
if rewound then
  bucket_store(key, now, level, reset)
end
return {allowed, floor_div(level, unit), retry, reset}
