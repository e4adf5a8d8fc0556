"""FallbackBackend over a real server process that is killed, or frozen, mid-traffic."""

from __future__ import annotations

import asyncio
import time

import pytest

from ratelimit_core import FallbackBackend, RedisBackend
from support.servers import ServerProcess

# Bounds on waiting for a failure to show; none of them is a speed assertion.
_RECOVERY_POLLS = 200
_POLL_S = 0.05


def _fallback_over(server: ServerProcess) -> FallbackBackend:
    primary = RedisBackend.from_url(server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    return FallbackBackend(primary, timeout_ms=300, cooldown_ms=50, max_cooldown_ms=200)


async def _until_primary_is_used(backend: FallbackBackend) -> None:
    for _ in range(_RECOVERY_POLLS):
        await backend.ping()
        if not backend.degraded:
            return
        await asyncio.sleep(_POLL_S)
    pytest.fail("the primary was not used again after it came back")


async def _traffic(backend: FallbackBackend, client: int, steps: int) -> list[bool]:
    """One client's connect / message / disconnect cycle, `steps` times; returns the degraded marks."""
    marks = []
    for step in range(steps):
        member = f"client{client}-{step}"
        joined = await backend.set_add("room", member, capacity=1_000, lease_ms=60_000)
        message = await backend.bucket_consume(f"user{client}", rate=1_000, burst=1_000)
        await backend.set_remove("room", member)
        marks += [joined.degraded, message.degraded]
        await asyncio.sleep(0.005)
    return marks


async def test_a_killed_server_is_replaced_by_the_fallback_and_used_again_after_restart(server: ServerProcess) -> None:
    async with _fallback_over(server) as backend:
        assert (await backend.set_add("room", "long-lived", lease_ms=60_000)).added
        traffic = asyncio.gather(*(_traffic(backend, client, steps=40) for client in range(10)))
        await asyncio.sleep(0.05)
        server.kill()
        marks = [mark for client in await traffic for mark in client]  # raises if any call raised
        assert any(marks), "calls after the kill were answered degraded"
        assert not marks[0], "calls before the kill went to the server"

        during = await backend.set_add("room", "joined-during-outage", lease_ms=60_000)
        assert during.added and during.degraded
        server.restart()
        await _until_primary_is_used(backend)
        # The restarted server lost its data; what this process holds, taken before or during
        # the outage, was written back at once.
        assert await backend.primary.set_members("room") == {"long-lived", "joined-during-outage"}
        assert not (await backend.set_add("room", "after", lease_ms=60_000)).degraded


async def test_a_frozen_server_does_not_stall_callers(server: ServerProcess) -> None:
    async with _fallback_over(server) as backend:
        for member in ("a", "b"):
            await backend.set_add("user:7", member, capacity=3, lease_ms=60_000)
        server.pause()
        try:
            # wait_for bounds the test if the timeout did not work; the timeout itself is 300 ms.
            joined = await asyncio.wait_for(backend.set_add("user:7", "c", capacity=3, lease_ms=60_000), 10)
            assert joined.degraded and joined.added and joined.size == 3
            refused = await asyncio.wait_for(backend.set_add("user:7", "d", capacity=3, lease_ms=60_000), 10)
            assert refused.degraded and not refused.added
            await backend.set_remove("user:7", "a")
        finally:
            server.resume()
        await _until_primary_is_used(backend)
        # The frozen server may run the timed-out add of "c" when it wakes; slots are set
        # members, so that and the replay agree: each held once, the released one gone.
        assert await backend.primary.set_members("user:7") == {"b", "c"}


async def test_a_restarted_server_gets_ten_thousand_held_slots_back_in_few_round_trips(server: ServerProcess) -> None:
    held = 10_000
    # Client timeouts as the adapter sets them (a backstop): a thousand concurrent calls open new
    # connections, which a loaded machine may set up slowly; that is not what this test is about.
    primary = RedisBackend.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
    async with FallbackBackend(primary, timeout_ms=300, cooldown_ms=50, max_cooldown_ms=200) as backend:
        assert isinstance(primary, RedisBackend)
        for start in range(0, held, 1_000):
            results = await asyncio.gather(
                *(backend.set_add(f"room:{i % 100}", f"s{i}", lease_ms=60_000) for i in range(start, start + 1_000))
            )
            assert all(result.added and not result.degraded for result in results)
        server.kill()
        await backend.ping()  # sees the outage
        assert backend.degraded
        server.restart()  # empty
        trips = primary.coalescer.round_trips
        await _until_primary_is_used(backend)
        assert primary.coalescer.round_trips - trips <= held // 100, "written back in pipelined round trips"
        sizes = await asyncio.gather(*(primary.set_size(f"room:{room}") for room in range(100)))
        assert sizes == [held // 100] * 100


async def test_a_stalled_event_loop_is_not_taken_for_a_server_outage(server: ServerProcess) -> None:
    primary = RedisBackend.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
    async with FallbackBackend(primary, timeout_ms=50) as backend:
        await backend.ping()
        for attempt in range(5):
            call = asyncio.ensure_future(backend.set_add("user:1", f"s{attempt}", capacity=1, lease_ms=60_000))
            await asyncio.sleep(0)  # sent
            time.sleep(0.2)  # noqa: ASYNC251 (a local stall of four timeouts; the server answers at once)
            result = await call
            assert not result.degraded and not backend.degraded
            assert result.added == (attempt == 0)
