"""A user's connection limit is exact across two processes on a loaded machine, with the default outage handling.

The default stack: ``WS_RATE_BACKEND`` a ``redis://`` URL, so the adapter wraps it
in a `FallbackBackend` with its default timeout (``WS_RATE_BACKEND_TIMEOUT_MS`` and
``WS_RATE_FALLBACK`` are left alone). Redis never goes away here, so nothing may
ever be decided without it: a busy event loop is not an outage. Every core is kept
busy by other processes while two uvicorn processes each receive
`CONNECTS_PER_PROCESS` concurrent connects by one signed-in user; exactly
`PER_USER` are admitted in total, Redis holds exactly their slots, and none once
they are closed (the lease is the default minute: only the releases can empty it
within the bound), and neither process's breaker ever opens (its WARNING on
``ratelimit_core.fallback``). Several rounds, each with a user of its own.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin

from ratelimit_core.policies import CloseCode, ErrorCode
from ratelimit_core.policies.codes import ERROR_FRAME_TYPE
from support.app_servers import AppServer, AppServerPool
from support.cpu_load import busy_cores
from support.redis_slots import RedisSlots
from support.servers import ServerProcess

pytestmark = pytest.mark.redis  # real processes sharing a real Redis

PER_USER: Final = 10
CONNECTS_PER_PROCESS: Final = 300
ROUNDS: Final = 3
SETTINGS: Final = {
    "WS_RATE_CONN_PER_USER": PER_USER,
    # Only the user limit: the example's per-IP and room limits would refuse first (every client is 127.0.0.1).
    "WS_RATE_CONN_PER_IP": None,
    "WS_RATE_ROOM_MAX_MEMBERS": None,
}
_ROOM: Final = "crowd"
_WAIT_S: Final = 30.0
"""Bound on opening a socket, on its first frame and on a refused socket's close: generous for a loaded machine."""
_SETTLED_WITHIN_S: Final = 5.0
"""Bound on Redis showing what the clients saw (on a correct engine it does at once: slots precede the welcome)."""
_RELEASED_WITHIN_S: Final = 10.0
"""Bound on Redis emptying after the close: far below the default one-minute lease, so only releases empty it."""
_POLL_S: Final = 0.1
_BREAKER_OPENED: Final = "WARNING ratelimit_core.fallback "


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one connect got: ``admitted`` (a welcome), ``refused`` (the documented frame and 4008), or else."""

    process: AppServer
    outcome: str
    socket: ClientConnection | None = None
    detail: str = ""


@dataclass
class Round:
    """What one round saw, for the verdict and its message."""

    user: str
    admitted: Counter[str] = field(default_factory=Counter)
    """Admissions per ASGI process (keyed by its repr)."""
    refused: int = 0
    unexpected: list[str] = field(default_factory=list)
    slots_while_open: int | None = None
    slots_after_close: int | None = None
    outages_logged: int = 0
    """Times a process's breaker opened during the round (Redis never went away: it must never open)."""
    seconds: float = 0.0

    @property
    def total_admitted(self) -> int:
        return sum(self.admitted.values())

    def exact(self) -> bool:
        return (
            self.total_admitted == PER_USER
            and self.slots_while_open == PER_USER
            and self.slots_after_close == 0
            and self.outages_logged == 0
            and not self.unexpected
        )

    def __str__(self) -> str:
        per_process = ", ".join(f"{count} by {process}" for process, count in sorted(self.admitted.items()))
        unexpected = f"; {len(self.unexpected)} unexpected, e.g. {self.unexpected[:3]}" if self.unexpected else ""
        return (
            f"{self.user}: admitted {self.total_admitted} ({per_process or 'none'}), refused {self.refused}"
            f"{unexpected}; Redis held {self.slots_while_open} slots while they were open and "
            f"{self.slots_after_close} {_RELEASED_WITHIN_S:g} s after they were closed; "
            f"the breaker opened {self.outages_logged} times ({self.seconds:.1f} s)"
        )


@pytest.fixture
def processes(server: ServerProcess, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """The example served twice on the same Redis, started before the load (start-up is not under test)."""
    return app_pool.start("uvicorn", server.url, **SETTINGS), app_pool.start("uvicorn", server.url, **SETTINGS)


async def _attempt(process: AppServer, user: str) -> Attempt:
    try:
        socket = await connect(
            process.ws_url(_ROOM, user),
            origin=Origin(process.origin),
            open_timeout=_WAIT_S,
            close_timeout=_WAIT_S,
            max_size=None,
        )
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        return Attempt(process, "failed", detail=f"connect: {type(exc).__name__}: {exc}")
    return await _answer(process, socket)


async def _answer(process: AppServer, socket: ClientConnection) -> Attempt:
    """What an open socket's first frame says: a welcome (the socket stays open), a refusal, or else."""
    try:
        frame = json.loads(await asyncio.wait_for(socket.recv(), _WAIT_S))
    except (ConnectionClosed, TimeoutError) as exc:
        await socket.close()
        return Attempt(process, "failed", detail=f"no first frame: {type(exc).__name__}: {exc}")
    if frame.get("type") == "welcome":
        return Attempt(process, "admitted", socket)
    if frame.get("type") == ERROR_FRAME_TYPE and frame.get("code") == ErrorCode.CONNECTION_LIMIT_EXCEEDED:
        return await _refusal(process, socket)
    await socket.close()
    return Attempt(process, "failed", detail=f"first frame {frame}")


async def _refusal(process: AppServer, socket: ClientConnection) -> Attempt:
    """After the documented refusal frame: ``refused`` only if the server then closes with 4008."""
    try:
        await asyncio.wait_for(socket.wait_closed(), _WAIT_S)
    except TimeoutError:
        await socket.close()
        return Attempt(process, "failed", detail=f"refused but not closed within {_WAIT_S} s")
    if socket.close_code == CloseCode.CONNECTION_REFUSED:
        return Attempt(process, "refused")
    return Attempt(process, "failed", detail=f"refused, then closed with {socket.close_code}")


async def _settled(read: Callable[[], Awaitable[int]], expected: int, within_s: float) -> int:
    """Poll `read()` (a slot count) until it equals `expected` or `within_s` passed; returns the last count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        count: int = await read()
        if count == expected or loop.time() >= deadline:
            return count
        await asyncio.sleep(_POLL_S)


def _outages_logged(processes: tuple[AppServer, ...]) -> int:
    """How often the processes logged their `FallbackBackend` going degraded (WARNING, once per opening)."""
    return sum(process.full_log().count(_BREAKER_OPENED) for process in processes)


async def _play_round(processes: tuple[AppServer, ...], slots: RedisSlots, user: str) -> Round:
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen = Round(user)
    outages_before = _outages_logged(processes)
    attempts = await asyncio.gather(
        *(_attempt(process, user) for process in processes for _ in range(CONNECTS_PER_PROCESS))
    )
    admitted = [attempt for attempt in attempts if attempt.outcome == "admitted"]
    try:
        for attempt in attempts:
            if attempt.outcome == "admitted":
                seen.admitted[repr(attempt.process)] += 1
            elif attempt.outcome == "refused":
                seen.refused += 1
            else:
                seen.unexpected.append(f"{attempt.process}: {attempt.detail}")

        async def user_slots() -> int:
            return len(await slots.of_user(user))

        # Every admitted socket must still be open when counted (none was closed by the server meanwhile).
        closed = [a for a in admitted if a.socket is not None and a.socket.close_code is not None]
        seen.unexpected += [
            f"{a.process}: admitted, then closed with {a.socket.close_code}" for a in closed if a.socket
        ]
        seen.slots_while_open = await _settled(user_slots, len(admitted) - len(closed), _SETTLED_WITHIN_S)
    finally:
        await asyncio.gather(*(a.socket.close() for a in admitted if a.socket is not None), return_exceptions=True)
    seen.slots_after_close = await _settled(user_slots, 0, _RELEASED_WITHIN_S)
    seen.outages_logged = _outages_logged(processes) - outages_before
    seen.seconds = loop.time() - started
    return seen


async def test_two_loaded_processes_admit_exactly_the_users_limit_of_600_concurrent_connects_every_time(
    server: ServerProcess, processes: tuple[AppServer, AppServer]
) -> None:
    rounds: list[Round] = []
    async with RedisSlots(server.url) as slots:
        with busy_cores():
            for number in range(1, ROUNDS + 1):
                rounds.append(await _play_round(processes, slots, f"crowd-{number}"))
                print(f"round {rounds[-1]}")
    summary = "\n".join(str(seen) for seen in rounds)
    assert all(seen.exact() for seen in rounds), (
        f"expected exactly {PER_USER} of {len(processes) * CONNECTS_PER_PROCESS} concurrent connects admitted "
        f"per round, Redis holding exactly their slots, then none, and no outage seen:\n{summary}"
    )
