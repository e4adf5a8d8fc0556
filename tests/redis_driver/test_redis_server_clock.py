"""clock=None: the scripts read the server's TIME, so real time passes for every client alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from support.redis_storages import MakeBackend

_POLLS = 300
_POLL_S = 0.01


async def _eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    """Poll `check` a bounded number of times (a few seconds at most)."""
    for _ in range(_POLLS):
        if await check():
            return True
        await asyncio.sleep(_POLL_S)
    return False


async def test_counter_window_expires_in_real_time(make_backend: MakeBackend) -> None:
    backend = make_backend()
    first = await backend.counter_incr("k", limit=1, window_ms=50)
    assert first.allowed
    assert first.reset_after_ms == 50

    async def window_over() -> bool:
        return await backend.counter_get("k") == 0

    assert await _eventually(window_over)
    assert await backend.counter_incr("k", limit=1, window_ms=50) == first


async def test_long_window_is_still_open(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await backend.counter_incr("k", window_ms=600_000)
    result = await backend.counter_incr("k", window_ms=1)
    assert result.value == 2
    assert result.reset_after_ms is not None
    assert 0 < result.reset_after_ms <= 600_000


async def test_set_lease_ends_in_real_time(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await backend.set_add("s", "short", lease_ms=50)
    await backend.set_add("s", "long", lease_ms=600_000)

    async def lease_over() -> bool:
        return await backend.set_members("s") == frozenset({"long"})

    assert await _eventually(lease_over)


async def test_bucket_refills_in_real_time(make_backend: MakeBackend) -> None:
    backend = make_backend()
    assert (await backend.bucket_consume("b", rate=20, burst=1)).allowed

    async def refilled() -> bool:
        return (await backend.bucket_consume("b", rate=20, burst=1)).allowed

    assert await _eventually(refilled)
