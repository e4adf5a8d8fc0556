"""Round trips to a real redis-server per admission, refusal, release and heartbeat, counted by the coalescer.

With every limit configured (attempt rate, per user, per IP, room), an admission
is one round trip, a release one, a refusal by every limit asked two (the second
gives back what it took) and a refusal by one limit of several three (it is asked
again limit by limit); through `FallbackBackend` (the default stack) as well as a bare `RedisBackend`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from ratelimit_core import Backend, FallbackBackend, RedisBackend
from ratelimit_core.policies import (
    Admitted,
    ClientIdentity,
    ConnectionLimits,
    ConnectionPolicy,
    Denial,
    ErrorCode,
    LeaseKeeper,
)

pytestmark = pytest.mark.redis

LIMITS = ConnectionLimits(per_user=2, per_ip=10, room_max_members=10, connect_rate=100, connect_burst=100)


class Counted:
    """Round trips, calls and commands (EVALSHAs: a bundle of calls is one) the backend's coalescer
    sent since the last `take`."""

    def __init__(self, primary: RedisBackend) -> None:
        self.primary = primary
        self._last = self._now()

    def _now(self) -> tuple[int, int, int]:
        coalescer = self.primary.coalescer
        return coalescer.round_trips, coalescer.calls_sent, coalescer.commands_sent

    def take(self) -> tuple[int, int, int]:
        now = self._now()
        counts = (now[0] - self._last[0], now[1] - self._last[1], now[2] - self._last[2])
        self._last = now
        return counts


@pytest.fixture(params=["fallback", "bare"])
async def stack(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[tuple[Backend, RedisBackend]]:
    primary = RedisBackend.from_url(redis_url, prefix=f"rt{uuid.uuid4().hex[:10]}:", socket_timeout=5)
    # A generous timeout: this test counts round trips, it does not time them.
    backend: Backend = primary if request.param == "bare" else FallbackBackend(primary, timeout_ms=5_000)
    # Connects and loads every script the counted calls use (a first EVALSHA of a script the
    # server lacks costs one more round trip to load it, whichever test runs first).
    await backend.set_add("warm-up", "nobody", lease_ms=1_000)
    await backend.bucket_consume("warm-up", rate=1, burst=1)
    await backend.set_remove("warm-up", "nobody")
    yield backend, primary
    await primary.clear()
    await backend.aclose()


async def test_an_admission_with_every_limit_is_one_round_trip_and_a_release_one_more(
    stack: tuple[Backend, RedisBackend],
) -> None:
    backend, primary = stack
    policy = ConnectionPolicy(backend, LIMITS)
    counted = Counted(primary)
    verdict = await policy.admit(ClientIdentity("10.0.0.1", "alice"), "lobby")
    assert isinstance(verdict, Admitted)
    assert counted.take() == (1, 4, 1)  # the token, the user's, the IP's and the room's slot, in one bundle
    await verdict.leases.release()
    assert counted.take() == (1, 3, 1)


async def test_a_refusal_by_one_limit_of_several_is_asked_again_and_holds_nothing_after(
    stack: tuple[Backend, RedisBackend],
) -> None:
    backend, primary = stack
    policy = ConnectionPolicy(backend, LIMITS)
    alice = ClientIdentity("10.0.0.2", "alice")
    held = [await policy.admit(alice, "lobby") for _ in range(2)]
    counted = Counted(primary)
    verdict = await policy.admit(alice, "lobby")
    assert isinstance(verdict, Denial)
    assert verdict.code == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    # Asked for all four; the user's limit refused while the IP's and the room's admitted, so the
    # refusal is not final: those two given back, then the user's slot asked alone, refused again.
    assert counted.take() == (3, 4 + 2 + 1, 3)
    occupancy = await policy.occupancy(alice, "lobby")
    assert (occupancy.identity, occupancy.ip, occupancy.room) == (2, 2, 2)
    for verdict in held:
        assert isinstance(verdict, Admitted)
        await verdict.leases.release()


async def test_a_shadow_admission_over_a_limit_is_one_round_trip_and_keeps_its_slots(
    stack: tuple[Backend, RedisBackend],
) -> None:
    backend, primary = stack
    policy = ConnectionPolicy(backend, LIMITS, shadow=True)
    alice = ClientIdentity("10.0.0.3", "alice")
    held = [await policy.admit(alice, "lobby") for _ in range(2)]
    counted = Counted(primary)
    over = await policy.admit(alice, "lobby")
    assert isinstance(over, Admitted)
    assert over.shadowed is not None
    assert over.shadowed.code == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    assert counted.take() == (1, 4, 1)  # nothing given back: the over-limit connection holds its slots
    occupancy = await policy.occupancy(alice, "lobby")
    assert (occupancy.identity, occupancy.ip, occupancy.room) == (3, 3, 3)
    for verdict in (*held, over):
        assert isinstance(verdict, Admitted)
        await verdict.leases.release()


class CountingKeeper(LeaseKeeper):
    """A `LeaseKeeper` that records the round trips and calls of each tick, and of the time between ticks."""

    def __init__(self, counted: Counted, interval_ms: int) -> None:
        super().__init__(interval_ms, jitter=0.5)
        self.counted = counted
        self.between: list[tuple[int, int, int]] = []
        self.ticks: list[tuple[int, int, int]] = []

    async def refresh_now(self) -> None:
        self.between.append(self.counted.take())
        await super().refresh_now()
        self.ticks.append(self.counted.take())


async def test_many_idle_connections_are_refreshed_in_one_round_trip_per_heartbeat(
    stack: tuple[Backend, RedisBackend], redis_admin_url: str
) -> None:
    backend, primary = stack
    sockets = 1_000
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, per_ip=sockets, room_max_members=sockets))
    connections = await asyncio.gather(
        *(policy.admit(ClientIdentity("10.0.0.3", f"user{n}"), "lobby") for n in range(sockets))
    )
    keeper = CountingKeeper(Counted(primary), 300)
    for verdict in connections:
        assert isinstance(verdict, Admitted)
        keeper.keep(verdict.leases)
    server = redis.asyncio.Redis.from_url(redis_admin_url)
    evalsha_before = await _evalsha_calls(server)
    for _ in range(600):
        if len(keeper.ticks) >= 3:
            break
        await asyncio.sleep(0.1)
    await keeper.aclose()
    # Each tick: every slot of every connection (1,000 x 3) in one round trip, as ceil(3000 / 256)
    # bundles; nothing between ticks. The server saw those EVALSHAs and no others (a tick that
    # aclose interrupted after its writes went may have been sent and not recorded).
    assert keeper.ticks[:3] == [(1, 3 * sockets, 12)] * 3
    assert keeper.between[1:3] == [(0, 0, 0)] * 2
    seen = await _evalsha_calls(server) - evalsha_before
    assert 12 * len(keeper.ticks) <= seen <= 12 * (len(keeper.ticks) + 1)
    for verdict in connections:
        assert isinstance(verdict, Admitted)
        keeper.keep(verdict.leases)
    counted = Counted(primary)
    assert await keeper.release_all() == 0
    assert counted.take() == (1, 3 * sockets, 12)  # released at once too
    assert len(keeper) == 0
    assert (await policy.occupancy(ClientIdentity("10.0.0.3", "user0"), "lobby")).room == 0
    await keeper.aclose()
    await server.aclose()


async def _evalsha_calls(server: redis.asyncio.Redis) -> int:
    stats = await server.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
