-- bucket_reset: forget the bucket (it is full again). Returns 1 if there was state.
return redis.call('DEL', KEYS[1])
