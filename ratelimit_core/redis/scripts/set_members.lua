-- set_members: the live members, as raw bytes.
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms())
return redis.call('ZRANGE', key, 0, -1)
