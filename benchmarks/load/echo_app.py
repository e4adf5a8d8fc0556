"""The app the load suite serves: a Channels echo consumer, behind `RateLimitMiddleware` or not.

Served as ``benchmarks.load.echo_app:application`` by uvicorn or daphne. The
environment says how: ``RATELIMIT_LOAD_MIDDLEWARE`` is ``on`` or ``off``, and
``RATELIMIT_LOAD_SETTINGS`` holds the ``WS_RATE_*`` settings as JSON (the backend
URL among them). ``/ws/echo/<room_id>/?user=NAME`` is a socket of user NAME in
that room; it is welcomed with ``{"type": "welcome", "degraded": ..., "pid": ...}``
and every frame after that is sent back. ``GET /stats`` answers, as JSON, the
round trips, script calls and commands the Redis backends of this process have
sent so far (`Coalescer`'s counters: the suite's count of round trips, which
Redis cannot tell apart from its socket reads), the heartbeats its lease
keepers have made and the connections they hold; any other HTTP request answers ``ok`` (the readiness probe).
With ``RATELIMIT_LOAD_GC=frozen`` (``--server-gc frozen``) the garbage collector is tuned as `plan.SERVER_GC` says.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="load-benchmark-not-secret",
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=[],
    USE_TZ=True,
    LOGGING_CONFIG=None,
    **json.loads(os.environ.get("RATELIMIT_LOAD_SETTINGS", "{}")),
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from ratelimit_channels import (  # noqa: E402
    SCOPE_KEY,
    BackendCache,
    BackendOptions,
    RateLimitMiddleware,
    build_backend,
)
from ratelimit_core import Backend  # noqa: E402
from ratelimit_core.policies.keeper import LeaseKeeper  # noqa: E402

__all__ = ["application"]

Scope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoadUser:
    """Enough of a Django user for the limits: a primary key, signed in."""

    pk: str
    is_authenticated: bool = True


class Echo(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Welcomes the socket (saying whether it was admitted without Redis), then echoes every frame."""

    async def connect(self) -> None:
        await self.accept()
        info = self.scope.get(SCOPE_KEY)
        degraded = None if info is None else info.degraded
        await self.send(text_data=json.dumps({"type": "welcome", "degraded": degraded, "pid": os.getpid()}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class QueryUser:
    """``?user=NAME`` signs the socket in as NAME (a benchmark stand-in for AuthMiddlewareStack)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        scope = dict(scope)
        name = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("user") or [""])[-1]
        if name:
            scope["user"] = LoadUser(name)
        await self.inner(scope, receive, send)


_BUILT: list[Backend] = []
"""Every backend the middleware built in this process, for ``/stats``."""
_KEEPERS: list[LeaseKeeper] = []
"""Every lease keeper the middleware used in this process, for ``/stats``."""


class _RecordingCache(BackendCache):
    """The middleware's cache, remembering each keeper it hands out (to count heartbeats)."""

    def keeper(self, backend: Backend, interval_ms: int) -> LeaseKeeper:
        keeper = super().keeper(backend, interval_ms)
        if not any(kept is keeper for kept in _KEEPERS):
            _KEEPERS.append(keeper)
        return keeper


def _recorded(url: str, options: BackendOptions) -> Backend:
    backend = build_backend(url, options)
    _BUILT.append(backend)
    return backend


def _backend_stats() -> dict[str, int]:
    """Round trips, script calls and commands every Redis backend built here has sent; heartbeats made, and
    the connections whose leases the keepers hold now (a closed one is forgotten before its release)."""
    found = {
        "round_trips": 0,
        "calls": 0,
        "commands": 0,
        # Begun, not ended: a heartbeat in flight when /stats is read has already sent its round trip.
        "heartbeats": sum(keeper.refreshes_started for keeper in _KEEPERS),
        "held": sum(len(keeper) for keeper in _KEEPERS),
    }
    for built in _BUILT:
        redis_backend = getattr(built, "primary", built)  # behind FallbackBackend, or alone
        coalescer = getattr(redis_backend, "coalescer", None)
        if coalescer is not None:
            found["round_trips"] += coalescer.round_trips
            found["calls"] += coalescer.calls_sent
            found["commands"] += coalescer.commands_sent
    return found


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    body = json.dumps(_backend_stats()).encode() if scope["path"] == "/stats" else b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def _websocket_app() -> Any:
    router = URLRouter([path("ws/echo/<str:room_id>/", Echo.as_asgi())])
    if os.environ.get("RATELIMIT_LOAD_MIDDLEWARE", "on") == "off":
        return QueryUser(router)
    return QueryUser(RateLimitMiddleware(router, backend_cache=_RecordingCache(_recorded)))


_websocket = _websocket_app()


async def application(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)


if os.environ.get("RATELIMIT_LOAD_GC") == "frozen":
    # What a long-lived server can do for its tail latency: the objects of start-up are never scanned
    # again, and full collections of a heap of thousands of sockets come far less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 1_000_000)
