"""Crash-safe slots with real processes: a SIGKILLed server's slots expire with their lease, live ones never do.

The example runs twice on one real redis-server with a short lease (2 s, refreshed
every 0.25 s: a margin of 1.75 s for a loaded machine). One process is killed
outright, so it neither closes its sockets nor releases a slot; the other keeps
serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ratelimit_core import backend_from_url
from ratelimit_core.policies import ClientIdentity, CloseCode, ConnectionLimits, ConnectionPolicy, ErrorCode, Occupancy
from support.app_servers import AppServer, AppServerPool
from support.servers import ServerProcess
from support.ws_clients import Players, eventually, next_frame

LEASE_MS = 2000
HEARTBEAT_MS = 250
pytestmark = pytest.mark.redis  # real processes sharing a real Redis

LIMITS = {
    "WS_RATE_CONN_PER_USER": 2,
    "WS_RATE_CONN_PER_IP": 50,  # every client here is 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 4,
    "WS_RATE_LEASE_MS": LEASE_MS,
    "WS_RATE_HEARTBEAT_MS": HEARTBEAT_MS,
    # A slow answer on a loaded machine is not an outage here (the fallback would then limit per process).
    "WS_RATE_BACKEND_TIMEOUT_MS": 2000,
}
# Slots were last refreshed at most a heartbeat before the kill, so they are gone a lease
# after it; the grace covers polling and scheduling, not a slower expiry.
_FREED_WITHIN_S = LEASE_MS / 1000 + 1.0
_LEASES_OUTLIVED = 3
_WATCH_POLL_S = 0.1


@pytest.fixture
def processes(server: ServerProcess, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """(doomed, survivor): the example under uvicorn and under daphne, on the same Redis."""
    return app_pool.start("uvicorn", server.url, **LIMITS), app_pool.start("daphne", server.url, **LIMITS)


@pytest.fixture
async def policy(server: ServerProcess) -> AsyncIterator[ConnectionPolicy]:
    """Reads the slots the example holds in Redis (same URL, same default key prefix)."""
    async with backend_from_url(server.url) as backend:
        yield ConnectionPolicy(backend, ConnectionLimits())


async def _slots(policy: ConnectionPolicy, user: str, room: str) -> Occupancy:
    return await policy.occupancy(ClientIdentity("127.0.0.1", user), room)


async def test_slots_held_by_a_killed_process_are_free_again_within_the_lease(
    processes: tuple[AppServer, AppServer], players: Players, policy: ConnectionPolicy
) -> None:
    doomed, survivor = processes
    for user in ("p1", "p1", "p2", "p2"):
        await players.join(doomed, "arena", user)
    assert await _slots(policy, "p1", "arena") == Occupancy(identity=2, ip=4, room=4)
    refusal = await players.refused(survivor, "arena", "p3")
    assert (refusal.frame["code"], refusal.close_code) == (ErrorCode.ROOM_FULL, CloseCode.CONNECTION_REFUSED)

    doomed.kill()
    # Nothing was released by the dead process: only the lease can free these slots.
    assert await _slots(policy, "p2", "arena") == Occupancy(identity=2, ip=4, room=4)

    async def all_free() -> bool:
        return await _slots(policy, "p1", "arena") == await _slots(policy, "p2", "arena") == Occupancy(0, 0, 0)

    # The lockout of the crashed process's users: at most one lease (their slots were refreshed at most a
    # heartbeat before the kill), plus this test's polling; shown with ``pytest -s``.
    lockout_s = await eventually(all_free, within_s=_FREED_WITHIN_S)
    print(f"crash lockout: {lockout_s:.2f} s with a lease of {LEASE_MS / 1000:g} s")
    for user in ("p1", "p1", "p2", "p2"):
        await players.join(survivor, "arena", user)
    refusal = await players.refused(survivor, "arena", "p3")
    assert refusal.frame["code"] == ErrorCode.ROOM_FULL, "the room is full again with the new members"


async def test_a_socket_outliving_several_leases_keeps_its_slots_while_another_processes_expire(
    processes: tuple[AppServer, AppServer], players: Players, policy: ConnectionPolicy
) -> None:
    doomed, survivor = processes
    loop = asyncio.get_running_loop()
    opened_at = loop.time()
    keepers = [await players.join(survivor, "lobby", "keeper") for _ in range(2)]
    for user in ("ghost1", "ghost2"):
        await players.join(doomed, "lobby", user)
    assert await _slots(policy, "keeper", "lobby") == Occupancy(identity=2, ip=4, room=4)
    doomed.kill()

    async def only_the_keepers_left() -> bool:
        return await _slots(policy, "keeper", "lobby") == Occupancy(identity=2, ip=2, room=2)

    await eventually(only_the_keepers_left, within_s=_FREED_WITHIN_S)
    # Watch the live slots until the keepers have lived through several leases: a refresh
    # that came too late would show as a missing slot here.
    outlived_at = opened_at + _LEASES_OUTLIVED * LEASE_MS / 1000
    while loop.time() < outlived_at:
        assert await _slots(policy, "keeper", "lobby") == Occupancy(identity=2, ip=2, room=2)
        await asyncio.sleep(_WATCH_POLL_S)

    refusal = await players.refused(survivor, "lobby", "keeper")
    assert (refusal.frame["code"], refusal.close_code) == (
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
    )
    await keepers[0].send("still here")
    for keeper in keepers:
        assert await next_frame(keeper) == {"type": "chat", "user": "keeper", "text": "still here"}
    for user in ("p1", "p2"):
        await players.join(survivor, "lobby", user)
    assert (await players.refused(survivor, "lobby", "p3")).frame["code"] == ErrorCode.ROOM_FULL
