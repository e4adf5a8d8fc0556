"""Redis TTLs: exact under the server clock, generous garbage collection under a caller's clock."""

from __future__ import annotations

from ratelimit_core import ManualClock
from ratelimit_core.keys import BUCKET, COUNTER, SET, storage_key
from ratelimit_core.redis import CLOCK_TTL_GRACE_MS
from support.redis_storages import MakeBackend, Storage


async def test_server_clock_ttls_end_at_the_logical_expiry(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend()
    client = storage.client()
    await backend.counter_incr("windowed", window_ms=60_000)
    await backend.counter_incr("windowed", 2)
    await backend.counter_decr("windowed", 1)
    assert 0 < await client.pttl(storage_key(prefix, COUNTER, "windowed")) <= 60_000
    bucket = await backend.bucket_consume("b", rate=1, burst=50, cost=30)
    assert 0 < await client.pttl(storage_key(prefix, BUCKET, "b")) <= bucket.reset_after_ms
    await backend.set_add("s", "leased", lease_ms=60_000)
    assert 0 < await client.pttl(storage_key(prefix, SET, "s")) <= 60_000


async def test_unbounded_state_has_no_ttl_until_it_can_expire(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend()
    client = storage.client()
    set_key = storage_key(prefix, SET, "s")
    await backend.counter_incr("forever")
    assert await client.pttl(storage_key(prefix, COUNTER, "forever")) == -1
    await backend.set_add("s", "leased", lease_ms=60_000)
    await backend.set_add("s", "permanent")
    assert await client.pttl(set_key) == -1
    await backend.set_remove("s", "permanent")
    assert 0 < await client.pttl(set_key) <= 60_000
    await backend.set_add("s", "leased")
    assert await client.pttl(set_key) == -1


async def test_caller_clock_ttls_add_a_grace(make_backend: MakeBackend, storage: Storage, prefix: str) -> None:
    clock = ManualClock(1_000_000)
    backend = make_backend(clock)
    client = storage.client()
    await backend.counter_incr("c", window_ms=100)
    bucket = await backend.bucket_consume("b", rate=10, burst=5, cost=5)
    await backend.set_add("s", "m", lease_ms=300)
    clock.advance(50)
    await backend.set_add("s", "n", lease_ms=100)
    expectations = {
        storage_key(prefix, COUNTER, "c"): 100,
        storage_key(prefix, BUCKET, "b"): bucket.reset_after_ms,
        storage_key(prefix, SET, "s"): 250,
    }
    for key, logical_ms in expectations.items():
        assert logical_ms < await client.pttl(key) <= logical_ms + CLOCK_TTL_GRACE_MS, key
