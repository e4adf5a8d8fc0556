-- counter_get: the live value (as the stored string, exact past 2**53), 0 for a
-- missing or expired counter.
return live_counter(KEYS[1], now_ms()) or 0
