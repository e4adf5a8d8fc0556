"""Redis killed and restarted under two live server processes: clients see only documented outcomes.

The example runs under uvicorn (A) and daphne (B) on one real redis-server, with
the adapter's default outage handling (``WS_RATE_ON_BACKEND_ERROR = "fallback"``).
While Redis is gone (SIGKILL: its data goes with it) each process limits on its
own, still counting what it already holds; once Redis is back on the same port,
both processes use it again, every live socket is counted there exactly once, and
the limits hold across processes again. Nothing but welcomes, echoes and the
documented error frames and close codes ever reaches a client, and no server logs
a traceback. Real time is unavoidable here; every wait is bounded.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import ClientConnection

from ratelimit_core import backend_from_url
from ratelimit_core.policies import ClientIdentity, CloseCode, ConnectionLimits, ConnectionPolicy, ErrorCode, Occupancy
from support.app_servers import AppServer, AppServerPool
from support.servers import ServerProcess
from support.ws_clients import Players, eventually, next_frame

pytestmark = pytest.mark.redis  # real processes sharing a real Redis

LIMITS = {
    "WS_RATE_CONN_PER_USER": 2,
    "WS_RATE_CONN_PER_IP": 50,  # every client here is 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 10,
    "WS_RATE_MSG_RPS": 100,  # above the chatters' pace: their frames are never refused
    "WS_RATE_MSG_BURST": 100,
    "WS_RATE_ON_BACKEND_ERROR": "fallback",
    # A killed server refuses at once; a slow answer on a loaded machine must not look like a second outage.
    "WS_RATE_BACKEND_TIMEOUT_MS": 2000,
    "WS_RATE_FALLBACK_COOLDOWN_MS": 50,
    # Redis loses its data when killed: live sockets count there again at their next refresh.
    "WS_RATE_LEASE_MS": 3000,
    "WS_RATE_HEARTBEAT_MS": 300,
}
_PACE_S = 0.02
_ECHOES_PER_PHASE = 10
"""Frames each chatter must get back while Redis is down, and again after it is back."""
_RECOVERED_WITHIN_S = 10.0
"""Bound on both processes using Redis again: the probe backs off while Redis is down."""
_FALLBACK_LOGGER = "ratelimit_core.fallback"


@pytest.fixture
def processes(server: ServerProcess, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """The example served twice on the same Redis: by uvicorn and by daphne."""
    return app_pool.start("uvicorn", server.url, **LIMITS), app_pool.start("daphne", server.url, **LIMITS)


class Chatter:
    """One socket sending chat frames until stopped; each must come back as its own echo, in time."""

    def __init__(self, socket: ClientConnection, name: str) -> None:
        self.socket = socket
        self.name = name
        self.echoed = 0
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"chatter {name}")

    async def _run(self) -> None:
        while not self._stop.is_set():
            text = f"{self.name} {self.echoed}"
            await self.socket.send(text)
            # An error frame, a close, or no echo within the frame bound fails the test.
            assert await next_frame(self.socket) == {"type": "chat", "user": self.name, "text": text}
            self.echoed += 1
            await asyncio.sleep(_PACE_S)

    async def echoed_more(self, count: int) -> None:
        """Wait until `count` more frames came back (a failure of the chatter is raised here)."""
        target = self.echoed + count

        async def reached() -> bool:
            if self._task.done():
                self._task.result()
                pytest.fail(f"{self.name} stopped early")
            return self.echoed >= target

        await eventually(reached, within_s=count * 0.5)

    async def stop(self) -> None:
        self._stop.set()
        await self._task


async def _refused_for_the_user_limit(players: Players, process: AppServer, user: str) -> None:
    refusal = await players.refused(process, "overflow", user)
    assert (refusal.frame["code"], refusal.close_code) == (
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
    )


class Scenario:
    """The clients of both processes through the outage: the chatters, and the sockets held across it."""

    def __init__(self, server: ServerProcess, processes: tuple[AppServer, AppServer], players: Players) -> None:
        self.server = server
        self.processes = processes
        self.players = players
        self.chatters: list[Chatter] = []
        self.held: list[ClientConnection] = []
        """Sockets opened before and during the outage (alice's four, then dora's), closed after it."""

    async def start_chatting(self) -> None:
        for process in self.processes:
            name = f"chatter-{process.asgi_server}"
            self.chatters.append(Chatter(await self.players.join(process, name, name), name))

    async def stop_chatting(self) -> None:
        await asyncio.gather(*(chatter.stop() for chatter in self.chatters))

    async def before(self) -> None:
        """The user limit holds across the two processes."""
        a, b = self.processes
        self.held += [await self.players.join(a, "hall", "alice"), await self.players.join(b, "hall", "alice")]
        await _refused_for_the_user_limit(self.players, b, "alice")

    async def during(self) -> None:
        """The chatters still get their echoes; each process limits alone, counting its socket for alice."""
        a, b = self.processes
        await self._chatters_echo()
        self.held += [await self.players.join(a, "hall", "alice"), await self.players.join(b, "hall", "alice")]
        for process in self.processes:
            await _refused_for_the_user_limit(self.players, process, "alice")
        self.held.append(await self.players.join(a, "hall", "dora"))

    async def after(self) -> None:
        """Both processes write what they hold back to Redis (A and B two sockets each for alice), the limits
        hold across them again, and the closed sockets are released there."""
        a, b = self.processes
        async with backend_from_url(self.server.url) as backend:
            policy = ConnectionPolicy(backend, ConnectionLimits())

            async def slots(user: str) -> Occupancy:
                return await policy.occupancy(ClientIdentity("127.0.0.1", user))

            async def every_live_socket_counted_once() -> bool:
                expected = Occupancy(identity=4, ip=len(self.chatters) + len(self.held), room=None)
                return await slots("alice") == expected

            await eventually(every_live_socket_counted_once, within_s=_RECOVERED_WITHIN_S)
            await self._chatters_echo()
            await self.players.join(a, "hall", "frank")
            await self.players.join(b, "hall", "frank")
            for process in self.processes:
                await _refused_for_the_user_limit(self.players, process, "frank")
                await _refused_for_the_user_limit(self.players, process, "alice")

            for socket in self.held:
                await socket.close()

            async def released() -> bool:
                # Left: the chatters and frank's two sockets.
                return await slots("alice") == Occupancy(identity=0, ip=len(self.chatters) + 2, room=None)

            await eventually(released, within_s=_RECOVERED_WITHIN_S)

    async def _chatters_echo(self) -> None:
        for chatter in self.chatters:
            await chatter.echoed_more(_ECHOES_PER_PHASE)


def _assert_no_traceback_and_one_outage_logged(process: AppServer) -> None:
    log = process.log()
    assert "Traceback" not in log, f"{process} logged an exception:\n{log}"
    # One outage, logged once when it began and once when it ended, not once per call.
    assert log.count(f"WARNING {_FALLBACK_LOGGER} ") == 1, log
    assert log.count(f"INFO {_FALLBACK_LOGGER} ") == 1, log


async def test_clients_of_two_processes_see_only_documented_outcomes_while_redis_is_killed_and_restarted(
    server: ServerProcess, processes: tuple[AppServer, AppServer], players: Players
) -> None:
    scenario = Scenario(server, processes, players)
    await scenario.start_chatting()
    try:
        await scenario.before()
        server.kill()
        await scenario.during()
        server.restart()
        await scenario.after()
    finally:
        await scenario.stop_chatting()
    for process in processes:
        _assert_no_traceback_and_one_outage_logged(process)
