"""One client process: holds WebSocket connections and runs the commands the suite sends it over a pipe.

Every command is bounded (`timeout_s`, or the measurement's own duration plus a
grace), and its answer is a plain dict (picklable). An exception is answered
as ``{"error": traceback}``; the pipe closing ends the process, which closes
every socket it holds.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

__all__ = ["Socket", "worker_main"]

PAYLOAD: Final = "x" * 64
_GRACE_S: Final = 10.0
"""How long a measurement waits, after its window, for replies still in flight."""
_TICK_S: Final = 0.005
_CLOSE_TIMEOUT_S: Final = 2.0

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Socket:
    """Where one client connects: its index in the run, its room and its user."""

    index: int
    room: str
    user: str

    def url(self, base: str) -> str:
        return f"{base}{self.room}/?user={self.user}"


@dataclass
class Held:
    socket: Socket
    connection: ClientConnection
    sent_at: deque[float] = field(default_factory=deque)


@dataclass
class Attempt:
    outcome: str
    """``admitted``, ``refused`` (the middleware's error frame) or ``failed`` (no answer, a reset)."""
    connection: ClientConnection | None = None
    degraded: bool = False
    code: str | None = None


async def _attempt(base: str, socket: Socket, timeout_s: float) -> Attempt:
    connection: ClientConnection | None = None
    try:
        async with asyncio.timeout(timeout_s):
            connection = await connect(socket.url(base), open_timeout=None, close_timeout=1, ping_interval=None)
            frame = json.loads(await connection.recv())
    except (OSError, TimeoutError, WebSocketException) as exc:
        if connection is not None:
            await _close(connection)
        return Attempt("failed", code=type(exc).__name__)
    if frame.get("type") == "welcome":
        return Attempt("admitted", connection, degraded=bool(frame.get("degraded")))
    await _close(connection)
    return Attempt("refused", code=str(frame.get("code")))


async def _close(connection: ClientConnection) -> None:
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await connection.close()
    except (OSError, TimeoutError, WebSocketException):
        pass


class Worker:
    """The sockets of this process and the commands on them."""

    def __init__(self) -> None:
        self.held: dict[int, Held] = {}

    async def open(self, base: str, sockets: list[Socket], concurrency: int, timeout_s: float) -> Result:
        """Open `sockets`, `concurrency` at a time; those welcomed are held."""
        gate = asyncio.Semaphore(max(1, concurrency))
        outcomes: dict[str, int] = {"admitted": 0, "refused": 0, "failed": 0, "degraded": 0}
        codes: dict[str, int] = {}

        async def one(socket: Socket) -> None:
            async with gate:
                attempt = await _attempt(base, socket, timeout_s)
            outcomes[attempt.outcome] += 1
            outcomes["degraded"] += attempt.degraded
            if attempt.code is not None:
                codes[attempt.code] = codes.get(attempt.code, 0) + 1
            if attempt.connection is not None:
                self.held[socket.index] = Held(socket, attempt.connection)

        started = time.perf_counter()
        await asyncio.gather(*(one(socket) for socket in sockets))
        return {**outcomes, "codes": codes, "seconds": time.perf_counter() - started}

    async def close(self, indices: list[int] | None, timeout_s: float) -> Result:
        chosen = list(self.held) if indices is None else [i for i in indices if i in self.held]
        started = time.perf_counter()
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(_close(self.held.pop(i).connection) for i in chosen))
        return {"closed": len(chosen), "seconds": time.perf_counter() - started}

    async def saturate(self, duration_s: float) -> Result:
        """Every held socket sends a frame and waits for its echo, again and again, for `duration_s`."""
        deadline = time.perf_counter() + duration_s
        done, sent = [0], [0]

        async def loop(held: Held) -> None:
            while time.perf_counter() < deadline:
                sent[0] += 1
                await held.connection.send(PAYLOAD)
                await held.connection.recv()
                if time.perf_counter() <= deadline:
                    done[0] += 1

        errors = await _bounded(list(map(loop, self.held.values())), duration_s + _GRACE_S)
        # Echoes within the window make the throughput; every frame sent went through the middleware.
        return {"echoes": done[0], "frames": sent[0], "seconds": duration_s, "errors": errors}

    async def paced(self, rate: float, duration_s: float) -> Result:
        """Send `rate` frames per second, spread over the held sockets in turn; the latency of each echo."""
        latencies: list[float] = []
        sockets = list(self.held.values())
        expected = [0]

        async def read(held: Held) -> None:
            while True:  # until cancelled, once every echo is in or the grace is over
                await held.connection.recv()
                if held.sent_at:
                    latencies.append((time.perf_counter() - held.sent_at.popleft()) * 1000)

        async def send() -> None:
            started = time.perf_counter()
            total = int(rate * duration_s)
            while expected[0] < total:
                due = min(total, int((time.perf_counter() - started) * rate) + 1)
                while expected[0] < due:
                    held = sockets[expected[0] % len(sockets)]
                    held.sent_at.append(time.perf_counter())
                    expected[0] += 1
                    await held.connection.send(PAYLOAD)
                await asyncio.sleep(_TICK_S)

        sending = asyncio.ensure_future(send())
        readers = [asyncio.ensure_future(read(held)) for held in sockets]
        errors = await _bounded([sending], duration_s + _GRACE_S)
        deadline = time.perf_counter() + _GRACE_S
        while len(latencies) < expected[0] and time.perf_counter() < deadline:  # noqa: ASYNC110 (a bounded poll)
            await asyncio.sleep(0.01)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for held in sockets:
            held.sent_at.clear()
        return {"latencies_ms": latencies, "sent": expected[0], "errors": errors}

    async def follow(self, base: str, retry_s: float | None, timeout_s: float) -> Result:
        """Wait for each held socket to be closed by the server, then reconnect it to `base` at once.

        With `retry_s`, a refused socket tries again every `retry_s` (jittered)
        until it is admitted or `timeout_s` has passed; each record says when its
        socket was closed and when (if) it was admitted again.
        """
        records: list[dict[str, Any]] = []
        deadline = time.perf_counter() + timeout_s

        async def one(index: int, held: Held) -> None:
            await asyncio.wait_for(held.connection.wait_closed(), max(0.0, deadline - time.perf_counter()))
            record: dict[str, Any] = {
                "user": held.socket.user,
                "closed_at": time.monotonic(),
                "close_code": held.connection.close_code,
            }
            record.update(await self._rejoin(index, base, retry_s, deadline))
            records.append(record)

        errors = await _bounded([one(i, held) for i, held in list(self.held.items())], timeout_s + _GRACE_S)
        return {"records": records, "errors": errors}

    async def _rejoin(self, index: int, base: str, retry_s: float | None, deadline: float) -> dict[str, Any]:
        socket = self.held.pop(index).socket
        attempts: list[str] = []
        while True:
            # When the attempt that got in started: its handshake on a busy server is not lockout.
            started_at = time.monotonic()
            attempt = await _attempt(base, socket, max(0.1, min(5.0, deadline - time.perf_counter())))
            attempts.append(attempt.outcome if attempt.code is None else f"{attempt.outcome}:{attempt.code}")
            if attempt.connection is not None:
                self.held[index] = Held(socket, attempt.connection)
                return {"admitted_at": started_at, "attempts": attempts}
            if retry_s is None or time.perf_counter() >= deadline:
                return {"admitted_at": None, "attempts": attempts}
            await asyncio.sleep(retry_s * random.uniform(0.5, 1.5))

    async def count(self) -> Result:
        return {"held": len(self.held)}


async def _bounded(jobs: list[Awaitable[None]], timeout_s: float) -> int:
    """Run `jobs` together for at most `timeout_s` (the rest are cancelled); how many failed or were cut short."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    if not tasks:
        return 0
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending) + sum(1 for task in done if task.exception() is not None)


async def _serve(pipe: Connection) -> None:
    worker = Worker()
    commands: dict[str, Callable[..., Any]] = {
        "open": worker.open,
        "close": worker.close,
        "saturate": worker.saturate,
        "paced": worker.paced,
        "follow": worker.follow,
        "count": worker.count,
    }
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                name, arguments = await loop.run_in_executor(None, pipe.recv)
            except EOFError:
                return
            if name == "stop":
                return
            try:
                answer = await commands[name](**arguments)
            except Exception:
                answer = {"error": traceback.format_exc()}
            pipe.send(answer)
    finally:
        await worker.close(None, 30.0)


def worker_main(pipe: Connection) -> None:
    """The client process's entry point (multiprocessing, spawn)."""
    asyncio.run(_serve(pipe))
