"""Real WebSocket clients (the `websockets` library) playing the match room, and what they can expect.

`Players` opens sockets as a browser would (with the page's Origin) and closes
every one it opened when it is closed. Every wait is bounded by `FRAME_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Self

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from support.app_servers import AppServer

__all__ = ["FRAME_TIMEOUT_S", "Players", "Refusal", "eventually", "next_frame", "read_refusal"]

FRAME_TIMEOUT_S: Final = 5.0
"""Bound on waiting for any one frame, close or connection: a hang fails the test instead of stalling it."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a client saw when the middleware refused: the error frame, then the close code (None: still open)."""

    frame: dict[str, Any]
    close_code: int | None


class Players:
    """Opens sockets to example servers and closes them all at the end."""

    def __init__(self) -> None:
        self._sockets: list[ClientConnection] = []

    async def connect(self, server: AppServer, room: str, user: str | None = None) -> ClientConnection:
        socket = await connect(
            server.ws_url(room, user),
            origin=Origin(server.origin),
            open_timeout=FRAME_TIMEOUT_S,
            close_timeout=1,
            max_size=None,
        )
        self._sockets.append(socket)
        return socket

    async def join(self, server: AppServer, room: str, user: str | None = None) -> ClientConnection:
        """A socket the server welcomed (the test fails with what it got otherwise)."""
        socket = await self.connect(server, room, user)
        frame = await next_frame(socket)
        assert frame["type"] == "welcome", f"{user} in {room} on {server}: expected a welcome, got {frame}"
        assert frame["pid"] == server.pid, f"answered by another process than {server}"
        return socket

    async def refused(self, server: AppServer, room: str, user: str | None = None) -> Refusal:
        """Connect and expect the middleware's refusal: an error frame and a close."""
        socket = await self.connect(server, room, user)
        return await read_refusal(socket)

    async def aclose(self) -> None:
        await asyncio.gather(*(socket.close() for socket in self._sockets), return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def next_frame(socket: ClientConnection) -> dict[str, Any]:
    """The next JSON frame; fails the test on a close or after `FRAME_TIMEOUT_S`."""
    problem = ""
    try:
        text = await asyncio.wait_for(socket.recv(), FRAME_TIMEOUT_S)
    except ConnectionClosed as exc:
        problem = f"the socket was closed ({exc.rcvd}) while a frame was expected"
    except TimeoutError:
        problem = f"no frame within {FRAME_TIMEOUT_S} s"
    if problem:
        pytest.fail(problem)
    frame: dict[str, Any] = json.loads(text)
    return frame


async def read_refusal(socket: ClientConnection) -> Refusal:
    """The next frame, which must be an error frame, and then whether (with which code) the socket was closed."""
    frame = await next_frame(socket)
    assert frame["type"] == "error", f"expected the middleware's error frame, got {frame}"
    return Refusal(frame, await _close_code_if_closing(socket))


async def _close_code_if_closing(socket: ClientConnection) -> int | None:
    # A denial that ends the connection sends its close right after the frame; one that
    # does not sends nothing more. A ping round trip tells the two apart without a sleep:
    # the pong comes after any close frame the server has already sent.
    try:
        pong = await socket.ping()
        await asyncio.wait_for(pong, FRAME_TIMEOUT_S)
    except ConnectionClosed:
        pass
    else:
        return None
    try:
        await asyncio.wait_for(socket.wait_closed(), FRAME_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"the socket was not closed within {FRAME_TIMEOUT_S} s")
    return socket.close_code


async def eventually(condition: Callable[[], Awaitable[bool]], *, within_s: float, poll_s: float = 0.05) -> float:
    """Poll `condition` until it holds; returns the seconds it took, fails the test after `within_s`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        if await condition():
            return loop.time() - start
        if loop.time() - start > within_s:
            pytest.fail(f"the condition did not hold within {within_s} s")
        await asyncio.sleep(poll_s)
