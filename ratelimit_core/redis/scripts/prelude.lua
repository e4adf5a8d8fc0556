-- Shared head of every script (lua.py puts it in front of each body).
--
-- KEYS[1] is the one key a script touches. ARGV[1] is the caller's clock in ms,
-- or '' to read the server's clock; ARGV[2] is the grace in ms added to TTLs
-- under the caller's clock. Only locals: fakeredis shares globals between scripts.
-- Numbers reach redis.call as Lua numbers, which Redis formats exactly (%.17g);
-- tostring() and '..' would round to 14 digits, so neither is used on numbers.

local function now_ms()
  if ARGV[1] ~= '' then
    return tonumber(ARGV[1])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Exact floor(a / b) for b > 0: the double quotient may be off by one near 2**53.
local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function ceil_div(a, b)
  return -floor_div(-a, b)
end

-- Make `key` disappear once the logical expiry `at` has passed. Under the server's
-- clock that is exact; under the caller's clock the TTL is only garbage collection,
-- so it gets a grace: the caller's clock may run slower than the server's.
local function expire_at(key, now, at)
  if ARGV[1] == '' then
    redis.call('PEXPIREAT', key, at)
  else
    redis.call('PEXPIRE', key, at - now + tonumber(ARGV[2]))
  end
end

-- The live counter `key` (a hash: v = value, x = logical expiry in ms, absent for no
-- window) at `now`: its value, as the stored string (exact past 2**53), and its expiry;
-- false for a missing counter. An expired counter is deleted, and reads as missing.
local function live_counter(key, now)
  local stored = redis.call('HMGET', key, 'v', 'x')
  local expires_at = tonumber(stored[2])
  if stored[1] and expires_at and now >= expires_at then
    redis.call('DEL', key)
    return false, nil
  end
  return stored[1], expires_at
end

-- A set lives as long as its longest lease; a permanent member (score +inf) makes it permanent.
-- The highest score says which (Redis writes +inf as 'inf'; tonumber of it is not portable).
local function refresh_set_expiry(key, now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] == 'inf' or last[2] == '+inf' then
    redis.call('PERSIST', key)
  elseif last[2] then
    expire_at(key, now, tonumber(last[2]))
  end
end

-- The level of bucket `key` (a hash: l = level, u = updated ms, f = ms at which it
-- is full again) at `now`, refilled at `per_ms` units per ms up to `full`; a missing
-- or expired bucket is full. Returns the level and whether the clock went backwards
-- (now < u): that refills nothing, and the caller must store the level re-based to
-- `now` even when it refuses or peeks, so that the wait it reports is honoured.
local function bucket_level(key, now, per_ms, full)
  local stored = redis.call('HMGET', key, 'l', 'u', 'f')
  if not (stored[1] and stored[2] and stored[3] and now < tonumber(stored[3])) then
    return full, false
  end
  local level = tonumber(stored[1])
  local elapsed = now - tonumber(stored[2])
  local rewound = elapsed < 0
  if rewound then
    elapsed = 0
  end
  if elapsed >= ceil_div(full - level, per_ms) then
    return full, rewound
  end
  return level + elapsed * per_ms, rewound
end

-- Store bucket `key` at `level` as of `now`; it expires once full again (`reset` ms on).
local function bucket_store(key, now, level, reset)
  redis.call('HSET', key, 'l', level, 'u', now, 'f', now + reset)
  expire_at(key, now, now + reset)
end
