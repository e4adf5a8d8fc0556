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

import pytest

from ratelimit_core.policies import Occupancy
from support.app_servers import AppServer, AppServerPool
from support.outage_clients import (
    FALLBACK_LOGGER,
    OUTAGE_SETTINGS,
    OutageClients,
    refused_for_the_user_limit,
    serve_twice,
    slot_counts,
)
from support.servers import ServerProcess
from support.ws_clients import Players, eventually

pytestmark = pytest.mark.redis  # real processes sharing a real Redis

LIMITS = {
    **OUTAGE_SETTINGS,
    "WS_RATE_CONN_PER_IP": 50,  # every client here is 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 10,
}
_ECHOES_PER_PHASE = 10
"""Frames each chatter must get back while Redis is down, and again after it is back."""
_RECOVERED_WITHIN_S = 10.0
"""Bound on both processes using Redis again: the probe backs off while Redis is down."""


@pytest.fixture
def processes(server: ServerProcess, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """The example served twice on the same Redis: by uvicorn and by daphne."""
    return serve_twice(app_pool, server.url, LIMITS)


class Scenario(OutageClients):
    """The clients of both processes through the outage: the chatters, and the sockets held across it."""

    def __init__(self, server: ServerProcess, processes: tuple[AppServer, AppServer], players: Players) -> None:
        super().__init__(processes, players)
        self.server = server

    async def before(self) -> None:
        """The user limit holds across the two processes."""
        await self.fill_alices_limit()

    async def during(self) -> None:
        """The chatters still get their echoes; each process limits alone, counting its socket for alice."""
        a, b = self.processes
        await self.chatters_echo(_ECHOES_PER_PHASE)
        self.held += [await self.players.join(a, "hall", "alice"), await self.players.join(b, "hall", "alice")]
        for process in self.processes:
            await refused_for_the_user_limit(self.players, process, "alice")
        self.held.append(await self.players.join(a, "hall", "dora"))

    async def after(self) -> None:
        """Both processes write what they hold back to Redis (A and B two sockets each for alice), the limits
        hold across them again, and the closed sockets are released there."""
        async with slot_counts(self.server.url) as slots:

            async def every_live_socket_counted_once() -> bool:
                expected = Occupancy(identity=4, ip=len(self.chatters) + len(self.held), room=None)
                return await slots("alice") == expected

            await eventually(every_live_socket_counted_once, within_s=_RECOVERED_WITHIN_S)
            await self.chatters_echo(_ECHOES_PER_PHASE)
            await self.limits_hold_across_both()
            await self.release_held(slots, within_s=_RECOVERED_WITHIN_S)


def _assert_no_traceback_and_one_outage_logged(process: AppServer) -> None:
    log = process.log()
    assert "Traceback" not in log, f"{process} logged an exception:\n{log}"
    # One outage, logged once when it began and once when it ended, not once per call.
    assert log.count(f"WARNING {FALLBACK_LOGGER} ") == 1, log
    assert log.count(f"INFO {FALLBACK_LOGGER} ") == 1, log


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
