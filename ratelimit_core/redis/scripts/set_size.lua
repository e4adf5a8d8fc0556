-- set_size: the live size.
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms())
return redis.call('ZCARD', key)
