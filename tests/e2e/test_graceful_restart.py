"""Graceful restart with real processes: a server stopped with SIGTERM releases every slot before its clients
can reconnect, so that all of them, reconnecting at once to the other server, are admitted.

Two processes of the example share one real redis-server. Many users, each at their
per-user limit, are connected to the first; it gets SIGTERM (as an orchestrator
stops a replica); every client reconnects to the second the moment its socket
closes. With the default lease (60 s) a single stale slot would refuse a user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection

from ratelimit_core import backend_from_url
from ratelimit_core.policies import ClientIdentity, ConnectionLimits, ConnectionPolicy, Occupancy
from support.app_servers import ASGI_SERVERS, AppServer, AppServerPool
from support.servers import ServerProcess
from support.ws_clients import FRAME_TIMEOUT_S, Players, eventually, next_frame

pytestmark = pytest.mark.redis  # real processes sharing a real Redis

USERS = 40
PER_USER = 2
ROOM = "hall"
LIMITS = {
    "WS_RATE_CONN_PER_USER": PER_USER,
    "WS_RATE_CONN_PER_IP": 10 * USERS * PER_USER,  # every client here is 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 10 * USERS * PER_USER,
    # A slow answer on a loaded machine is not an outage here (the fallback would then limit per process).
    "WS_RATE_BACKEND_TIMEOUT_MS": 2000,
    "WS_RATE_MSG_RPS": 100,
}


@pytest.fixture
async def policy(server: ServerProcess) -> AsyncIterator[ConnectionPolicy]:
    """Reads the slots the example holds in Redis (same URL, same default key prefix)."""
    async with backend_from_url(server.url) as backend:
        yield ConnectionPolicy(backend, ConnectionLimits())


async def _reconnect_when_closed(
    players: Players, old: ClientConnection, survivor: AppServer, user: str
) -> dict[str, object]:
    """Wait for the old socket to close, then connect at once to `survivor`: the first frame it gets."""
    await asyncio.wait_for(old.wait_closed(), timeout=30)
    socket = await players.connect(survivor, ROOM, user)
    return await next_frame(socket)


@pytest.mark.parametrize("asgi_server", ASGI_SERVERS)
async def test_clients_of_a_server_stopped_with_sigterm_are_all_admitted_at_once_by_another(
    asgi_server: str, server: ServerProcess, app_pool: AppServerPool, players: Players, policy: ConnectionPolicy
) -> None:
    stopping = app_pool.start(asgi_server, server.url, **LIMITS)
    survivor = app_pool.start(asgi_server, server.url, **LIMITS)
    users = [f"u{n}" for n in range(USERS)]
    sockets = [(user, await players.join(stopping, ROOM, user)) for user in users for _ in range(PER_USER)]
    at_limit = Occupancy(identity=PER_USER, ip=USERS * PER_USER, room=USERS * PER_USER)
    assert await policy.occupancy(ClientIdentity("127.0.0.1", users[0]), ROOM) == at_limit

    reconnects = [
        asyncio.create_task(_reconnect_when_closed(players, socket, survivor, user)) for user, socket in sockets
    ]
    await asyncio.sleep(0)  # every client is waiting for its close
    stopping.terminate()
    frames = await asyncio.wait_for(asyncio.gather(*reconnects), timeout=60 + FRAME_TIMEOUT_S)

    refused = [frame for frame in frames if frame["type"] != "welcome"]
    assert refused == [], f"{len(refused)} of {len(frames)} reconnects refused: {refused[:3]}"
    assert {frame["pid"] for frame in frames} == {survivor.pid}

    async def gone() -> bool:
        return stopping.exited()

    await eventually(gone, within_s=30)
    # Redis holds exactly the live slots: those of the sockets on the survivor.
    for user in users:
        assert await policy.occupancy(ClientIdentity("127.0.0.1", user), ROOM) == at_limit, user
    assert "SIGTERM: released every slot of this process" in stopping.full_log()
