"""The clients of two app processes on one storage, driven through an outage of that storage.

The end-to-end outage tests (a Redis restart, a Sentinel master switch) serve the
example twice, by uvicorn and by daphne, with the adapter's default outage handling,
and play the same clients on both: a chatter per process whose every frame must come
back, sockets held across the outage, and afterwards the user limit holding across
the two processes again, as the storage counts it (`slot_counts`). Each test adds
what its outage needs (its settings, its own checks of what the storage holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import pytest
from websockets.asyncio.client import ClientConnection

from ratelimit_core import backend_from_url
from ratelimit_core.policies import ClientIdentity, CloseCode, ConnectionLimits, ConnectionPolicy, ErrorCode, Occupancy
from support.app_servers import AppServer, AppServerPool
from support.ws_clients import Players, eventually, next_frame

__all__ = [
    "FALLBACK_LOGGER",
    "OUTAGE_SETTINGS",
    "Chatter",
    "OutageClients",
    "SlotCounts",
    "refused_for_the_user_limit",
    "serve_twice",
    "slot_counts",
]

OUTAGE_SETTINGS: Final = {
    "WS_RATE_CONN_PER_USER": 2,
    "WS_RATE_MSG_RPS": 100,  # above the chatters' pace: their frames are never refused
    "WS_RATE_MSG_BURST": 100,
    "WS_RATE_ON_BACKEND_ERROR": "fallback",
    # A dead server refuses at once; a slow answer on a loaded machine must not look like a second outage.
    "WS_RATE_BACKEND_TIMEOUT_MS": 2000,
    "WS_RATE_FALLBACK_COOLDOWN_MS": 50,
    # Writes the outage loses (a killed Redis's data, a switched master's last writes): live sockets
    # count on the storage again at their next refresh.
    "WS_RATE_LEASE_MS": 3000,
    "WS_RATE_HEARTBEAT_MS": 300,
}
"""The settings both outage tests share; each adds its per-IP and room limits."""
FALLBACK_LOGGER: Final = "ratelimit_core.fallback"
"""The logger whose one line starts an outage (WARNING) and one line ends it (INFO)."""
_PACE_S: Final = 0.02

SlotCounts = Callable[[str], Awaitable[Occupancy]]
"""`slots(user)`: the live slots of `user` (at 127.0.0.1) and of its IP, as the storage counts them."""


def serve_twice(app_pool: AppServerPool, url: str, settings: dict[str, object]) -> tuple[AppServer, AppServer]:
    """The example served twice on the storage at `url`: by uvicorn (A) and by daphne (B)."""
    return app_pool.start("uvicorn", url, **settings), app_pool.start("daphne", url, **settings)


@asynccontextmanager
async def slot_counts(url: str) -> AsyncIterator[SlotCounts]:
    """`slots(user)` on the storage at `url`, through a client of the test's own (closed at the end)."""
    async with backend_from_url(url) as backend:
        policy = ConnectionPolicy(backend, ConnectionLimits())

        async def slots(user: str) -> Occupancy:
            return await policy.occupancy(ClientIdentity("127.0.0.1", user))

        yield slots


async def refused_for_the_user_limit(players: Players, process: AppServer, user: str) -> None:
    refusal = await players.refused(process, "overflow", user)
    assert (refusal.frame["code"], refusal.close_code) == (
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
    )


class Chatter:
    """One socket sending chat frames until stopped; each must come back as its own echo, in time.

    `slack_s` is added to the bound on each wait for echoes (the time an outage may stall them).
    """

    def __init__(self, socket: ClientConnection, name: str, *, slack_s: float = 0.0) -> None:
        self.socket = socket
        self.name = name
        self.echoed = 0
        self._slack_s = slack_s
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

        await eventually(reached, within_s=count * 0.5 + self._slack_s)

    async def stop(self) -> None:
        self._stop.set()
        await self._task


class OutageClients:
    """The clients both outage tests play on the two processes: chatters, and sockets held across the outage.

    `slack_s` is each chatter's (see `Chatter`).
    """

    def __init__(self, processes: tuple[AppServer, AppServer], players: Players, *, slack_s: float = 0.0) -> None:
        self.processes = processes
        self.players = players
        self.chatters: list[Chatter] = []
        self.held: list[ClientConnection] = []
        """Sockets opened before (and during) the outage, closed by `release_held`."""
        self._slack_s = slack_s

    async def start_chatting(self) -> None:
        """A chatter on each process, in a room of its own."""
        for process in self.processes:
            name = f"chatter-{process.asgi_server}"
            socket = await self.players.join(process, name, name)
            self.chatters.append(Chatter(socket, name, slack_s=self._slack_s))

    async def chatters_echo(self, count: int) -> None:
        """Each chatter in turn gets `count` more echoes."""
        for chatter in self.chatters:
            await chatter.echoed_more(count)

    async def stop_chatting(self) -> None:
        await asyncio.gather(*(chatter.stop() for chatter in self.chatters))

    async def fill_alices_limit(self) -> None:
        """Alice holds a socket on each process (held), and a third is refused: the user limit holds across them."""
        a, b = self.processes
        self.held += [await self.players.join(a, "hall", "alice"), await self.players.join(b, "hall", "alice")]
        await refused_for_the_user_limit(self.players, b, "alice")

    async def limits_hold_across_both(self) -> None:
        """Frank gets a socket on each process and a third nowhere; alice (still over her limit) neither."""
        a, b = self.processes
        await self.players.join(a, "hall", "frank")
        await self.players.join(b, "hall", "frank")
        for process in self.processes:
            await refused_for_the_user_limit(self.players, process, "frank")
            await refused_for_the_user_limit(self.players, process, "alice")

    async def release_held(self, slots: SlotCounts, *, within_s: float) -> None:
        """Close the held sockets; the storage then holds none of alice's, only the chatters' and frank's two."""
        for socket in self.held:
            await socket.close()

        async def released() -> bool:
            return await slots("alice") == Occupancy(identity=0, ip=len(self.chatters) + 2, room=None)

        await eventually(released, within_s=within_s)
