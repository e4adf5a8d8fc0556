"""What `RateLimitMiddleware` adds to a WebSocket app, per frame and per connect, on the memory backend.

The app is driven in-process by direct ASGI calls (no server, no socket): the
same minimal app is timed alone and behind the middleware, in turn, and the
difference is the middleware's cost (CPU time, see `measure`). The middleware enforces a message rate (one
`bucket_consume` per frame), a payload limit, and connection limits per user and
per IP (a lease taken on connect and released on disconnect). The per-frame cost is
also measured with each added message limit: the frame's type bucket
(``WS_RATE_MSG_TYPES``, the JSON frame parsed for its type), the quota
(``WS_RATE_MSG_QUOTA``), and both; on memory a check has no round trip, so these
rows are the CPU each limit adds (the Redis suite counts the round trips).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ratelimit_core import MemoryBackend

from .measure import Figure, cpu_clock
from .peers import installed
from .scales import Scale

__all__ = ["channels_figures"]

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_FRAME: Message = {"type": "websocket.receive", "text": '{"type": "chat", "text": "hello"}'}
_CONNECT: Message = {"type": "websocket.connect"}
_DISCONNECT: Message = {"type": "websocket.disconnect", "code": 1000}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """A consumer that accepts and reads frames until the client leaves (it does nothing else)."""
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _scope(n: int) -> Scope:
    return {"type": "websocket", "path": "/ws/chat/", "query_string": b"", "headers": [], "client": ["10.0.0.1", n]}


async def _drive(app: App, connections: int, frames: int) -> float:
    """Seconds to run `connections` connections of `frames` frames each through `app`."""

    async def send(message: Message) -> None:
        return None

    start: float = cpu_clock()
    for n in range(connections):
        messages = iter([_CONNECT, *([_FRAME] * frames), _DISCONNECT])

        async def receive(messages: Any = messages) -> Message:
            message: Message = next(messages)
            return message

        await app(_scope(n), receive, send)
    end: float = cpu_clock()
    return end - start


_TYPES: dict[str, object] = {"msg_types": {"chat": {"rps": 10**6, "burst": 10**6}}}
_QUOTA: dict[str, object] = {"msg_quota": (10**12, 3600)}
_ADDED_LIMITS: dict[str, dict[str, object]] = {
    "+ type bucket": _TYPES,
    "+ quota": _QUOTA,
    "+ type bucket + quota": {**_TYPES, **_QUOTA},
}
"""Per-frame rows measured beside the rate alone: the limits each adds to it."""


def _limited(**more: object) -> App:
    from ratelimit_channels import RateLimitMiddleware

    middleware: App = RateLimitMiddleware(
        _app,
        backend=MemoryBackend(),
        msg_rps=10**6,
        msg_burst=10**6,
        max_payload_bytes=64 * 1024,
        conn_per_ip=10**6,
        conn_per_user=10**6,
        **more,
    )
    return middleware


async def channels_figures(scale: Scale, notes: list[str]) -> list[Figure]:
    if not (installed("channels") and installed("django")):
        notes.append("channels: channels or Django is not installed, so the middleware was not measured")
        return []
    limited = _limited()
    added = {name: _limited(**more) for name, more in _ADDED_LIMITS.items()}
    per_frame, per_connect, plain_frame, plain_connect = [], [], [], []
    per_added: dict[str, list[float]] = {name: [] for name in added}
    for _ in range(scale.runs):
        bare = await _drive(_app, 1, scale.frames) / scale.frames
        through = await _drive(limited, 1, scale.frames) / scale.frames
        plain_frame.append(bare * 1e6)
        per_frame.append((through - bare) * 1e6)
        for name, app in added.items():
            per_added[name].append((await _drive(app, 1, scale.frames) / scale.frames - bare) * 1e6)
        bare = await _drive(_app, scale.connects, 0) / scale.connects
        through = await _drive(limited, scale.connects, 0) / scale.connects
        plain_connect.append(bare * 1e6)
        per_connect.append((through - bare) * 1e6)
    rows = (
        ("middleware added per frame", per_frame),
        *((f"middleware added per frame, rate {name}", values) for name, values in per_added.items()),
        ("app alone per frame", plain_frame),
        ("middleware added per connect", per_connect),
        ("app alone per connect", plain_connect),
    )
    return [Figure("channels", name, value=statistics.median(v), unit="µs", runs=tuple(v)) for name, v in rows]
