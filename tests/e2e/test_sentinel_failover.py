"""A Sentinel master switch under live WebSocket traffic: two app processes on one ``redis+sentinel://`` URL.

The example runs under uvicorn (A) and daphne (B) with the adapter's default outage
handling (``WS_RATE_ON_BACKEND_ERROR = "fallback"``), on a master, a replica and three
sentinels of the test's own. Chatters send frames and reconnecting clients open and
close sockets the whole time, while the master is killed (the sentinels promote the
replica) or switched by ``SENTINEL FAILOVER``. Every frame comes back, every
attempt is welcomed or refused with a documented frame, no process logs a traceback,
and afterwards the new master holds exactly the live sockets and the limits hold
across the two processes again. Real time is unavoidable here; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from ratelimit_core.policies import ErrorCode, Occupancy
from support.app_servers import AppServer, AppServerPool
from support.outage_clients import FALLBACK_LOGGER, OUTAGE_SETTINGS, OutageClients, serve_twice, slot_counts
from support.servers import SentinelGroup
from support.ws_clients import Players, eventually, next_frame

pytestmark = pytest.mark.sentinel  # real processes on a real Sentinel group

LIMITS = {
    **OUTAGE_SETTINGS,
    "WS_RATE_CONN_PER_IP": 100,  # every client here is 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 50,
}
_PACE_S = 0.02
_ECHOES = 10
"""Frames each chatter must get back across the switch, and again after it."""
_SETTLED_WITHIN_S = 30.0
"""Bound on the new master holding exactly the live sockets (the old master's demotion included)."""


class Reconnector:
    """Opens a socket, sends a frame, closes it, again and again: each attempt welcomed and echoed, or refused."""

    def __init__(self, players: Players, process: AppServer, name: str) -> None:
        self.outcomes: Counter[str] = Counter()
        self._players, self._process, self._name = players, process, name
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"reconnector {name}")

    async def _run(self) -> None:
        while not self._stop.is_set():
            socket = await self._players.connect(self._process, "lobby", self._name)
            frame = await next_frame(socket)
            if frame["type"] == "welcome":
                await socket.send("hello")
                assert await next_frame(socket) == {"type": "chat", "user": self._name, "text": "hello"}
                self.outcomes["welcomed"] += 1
            else:
                # Two reconnectors share a user: a documented refusal is the only other outcome.
                assert (frame["type"], frame["code"]) == ("error", ErrorCode.CONNECTION_LIMIT_EXCEEDED), frame
                self.outcomes["refused"] += 1
            await socket.close()
            await asyncio.sleep(_PACE_S)

    async def stop(self) -> Counter[str]:
        self._stop.set()
        await self._task
        return self.outcomes


class Scenario(OutageClients):
    """Both processes' clients across the switch: chatters, reconnecting clients, and sockets held across it."""

    def __init__(self, group: SentinelGroup, processes: tuple[AppServer, AppServer], players: Players) -> None:
        # A chatter's echoes may wait for the switch, or the old master's demotion.
        super().__init__(processes, players, slack_s=_SETTLED_WITHIN_S)
        self.group = group
        self.reconnectors: list[Reconnector] = []

    async def start(self) -> None:
        await self.start_chatting()
        self.reconnectors += [Reconnector(self.players, process, "carol") for process in self.processes]
        await self.fill_alices_limit()

    async def through(self, switch: Callable[[], None]) -> None:
        """Start the clients, run `switch` (in a thread) while the chatters chat, check what follows, stop.

        No process may log a traceback meanwhile.
        """
        await self.start()
        try:
            await asyncio.gather(self.chatters_echo(_ECHOES), asyncio.to_thread(switch))
            await self.after()
        finally:
            await self.stop()
        for process in self.processes:
            log = process.full_log()
            assert "Traceback" not in log, f"{process} logged an exception:\n{process.log()}"

    async def after(self) -> None:
        """The reconnecting clients stop; the new master holds exactly the live sockets; the limits hold again."""
        outcomes = sum([await reconnector.stop() for reconnector in self.reconnectors], Counter[str]())
        assert outcomes["welcomed"] > 0, outcomes
        async with slot_counts(self.group.url) as slots:

            async def exactly_the_live_sockets() -> bool:
                return await slots("alice") == Occupancy(identity=2, ip=len(self.chatters) + 2, room=None) and (
                    await slots("carol") == Occupancy(identity=0, ip=len(self.chatters) + 2, room=None)
                )

            await eventually(exactly_the_live_sockets, within_s=_SETTLED_WITHIN_S)
            await eventually(self._every_outage_ended, within_s=_SETTLED_WITHIN_S)
            await self.chatters_echo(_ECHOES)
            await self.limits_hold_across_both()
            await self.release_held(slots, within_s=_SETTLED_WITHIN_S)

    async def _every_outage_ended(self) -> bool:
        """Each process logged the end of every outage it logged (one line each: the fallback's log)."""
        logs = [process.full_log() for process in self.processes]
        return all(log.count(f"WARNING {FALLBACK_LOGGER} ") == log.count(f"INFO {FALLBACK_LOGGER} ") for log in logs)

    async def stop(self) -> None:
        await self.stop_chatting()
        await asyncio.gather(*(reconnector.stop() for reconnector in self.reconnectors), return_exceptions=True)


@pytest.fixture
def processes(private_sentinels: SentinelGroup, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """The example served twice on the same Sentinel service: by uvicorn and by daphne."""
    return serve_twice(app_pool, private_sentinels.url, LIMITS)


async def test_a_killed_master_under_live_traffic_is_an_outage_and_the_promoted_replica_takes_over(
    private_sentinels: SentinelGroup, processes: tuple[AppServer, AppServer], players: Players
) -> None:
    def kill_the_master() -> None:
        old = private_sentinels.master
        old.kill()
        private_sentinels.wait_for_new_master(old.port)

    await Scenario(private_sentinels, processes, players).through(kill_the_master)
    for process in processes:
        # The processes saw the dead master as an outage and rode it out on their fallback.
        assert f"WARNING {FALLBACK_LOGGER} " in process.full_log(), process.log()


async def test_sentinel_failover_under_live_traffic_moves_every_process_to_the_new_master(
    private_sentinels: SentinelGroup, processes: tuple[AppServer, AppServer], players: Players
) -> None:
    def fail_over() -> None:
        old = private_sentinels.master
        private_sentinels.failover()
        # The old master is still alive: until the sentinels demote it, open connections may use it.
        private_sentinels.wait_until_replica(old)

    await Scenario(private_sentinels, processes, players).through(fail_over)
