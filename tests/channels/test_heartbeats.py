"""Through the middleware, on a real redis-server: the idle connections of a process are refreshed by one task,
in one round trip per heartbeat interval, and the keeper goes away with the last connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from ratelimit_channels.backends import BackendCache
from ratelimit_core import FallbackBackend, RedisBackend
from ratelimit_core.policies import ClientIdentity
from ratelimit_core.policies.connections import room_members_key
from support.ws_app import User, client, expect_welcome, make_app

pytestmark = pytest.mark.redis

SOCKETS = 60
HEARTBEAT_MS = 200


@pytest.fixture
async def primary(redis_url: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend.from_url(redis_url, prefix=f"hb{uuid.uuid4().hex[:10]}:", socket_timeout=5)
    yield backend
    await backend.clear()
    await backend.aclose()


def keeper_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "ratelimit lease keeper" and not task.done()]


async def test_idle_connections_cost_one_round_trip_per_heartbeat_interval(primary: RedisBackend) -> None:
    backend = FallbackBackend(primary, timeout_ms=5_000)  # counts round trips, does not time them
    cache = BackendCache()
    app = make_app(
        backend,
        backend_cache=cache,
        lease_ms=3_000,
        heartbeat_ms=HEARTBEAT_MS,
        conn_per_user=1,
        conn_per_ip=SOCKETS,
        room_max_members=SOCKETS,
    )
    sockets = [client(app, "/ws/rooms/r/", user=User(pk=n)) for n in range(SOCKETS)]
    for socket in sockets:
        await expect_welcome(socket)
    assert len(keeper_tasks()) == 1, "one task for every connection of the process"
    keeper = cache.keeper(backend, HEARTBEAT_MS)
    assert len(keeper) == SOCKETS
    trips, calls, ticks = primary.coalescer.round_trips, primary.coalescer.calls_sent, keeper.refreshes
    await asyncio.sleep(1.5)
    for _ in range(100):  # end the window between two ticks: the last one's writes all counted
        if primary.coalescer.calls_sent - calls == 3 * SOCKETS * (keeper.refreshes - ticks):
            break
        await asyncio.sleep(0.01)
    ticks = keeper.refreshes - ticks
    assert ticks >= 2
    assert primary.coalescer.calls_sent - calls == 3 * SOCKETS * ticks  # user, IP and room slot of each socket
    assert primary.coalescer.round_trips - trips == ticks
    for socket in sockets:
        await socket.disconnect()
    assert await primary.set_size(room_members_key("r")) == 0
    assert await primary.set_size("conn:addr:" + ClientIdentity("unknown").ip) == 0
    assert keeper_tasks() == []
    assert len(keeper) == 0
    await cache.aclose()
