"""The app the Channels tests drive: an echo consumer behind a URLRouter, and client helpers.

Django is configured by ``pytest_configure`` in tests/conftest.py.

Keep a reference to a communicator whose socket must stay open: when it is
garbage-collected it cancels its app, which ends the connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from channels.middleware import BaseMiddleware
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path, re_path

from ratelimit_channels import SETTINGS, RateLimitMiddleware
from ratelimit_core import Backend, BackendError, BackendUnavailable
from ratelimit_core.policies import ClientIdentity, ConnectionLimits, ConnectionPolicy, Occupancy

SERVER_AFTER_CLOSE = "sent by the consumer after the socket was closed"


class Echo(AsyncWebsocketConsumer):
    """Says hello on connect, echoes every frame, fails on "boom", records its disconnect."""

    def __init__(self, log: list[Any] | None = None) -> None:
        super().__init__()
        self.log = log

    async def connect(self) -> None:
        await self.accept()
        info = self.scope.get("ratelimit")
        room = None if info is None else info.room
        ip = None if info is None else info.identity.ip
        degraded = None if info is None else info.degraded
        shadowed = None if info is None or info.shadowed is None else info.shadowed.code
        # What the URLRouter itself found, to compare with what the middleware found beforehand.
        routed = self.scope.get("url_route", {}).get("kwargs", {}).get("room_id")
        routed = None if routed is None else str(routed)
        await self.send(
            text_data=json.dumps(
                {
                    "type": "welcome",
                    "room": room,
                    "routed_room": routed,
                    "ip": ip,
                    "degraded": degraded,
                    "shadowed": shadowed,
                }
            )
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "boom":
            raise RuntimeError("the consumer failed")
        if text_data == "close-me":
            await self.close(code=4321, reason="x" * 300)
            return
        await self.send(text_data=text_data, bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        if self.log is not None:
            self.log.append(("disconnect", code))
        await self.send(text_data=SERVER_AFTER_CLOSE)


class SyncEcho(WebsocketConsumer):
    """A synchronous consumer: its sends reach the middleware from a worker thread."""

    def __init__(self, log: list[Any] | None = None) -> None:
        super().__init__()
        self.log = log

    def connect(self) -> None:
        self.accept()
        self.send(text_data=json.dumps({"type": "welcome"}))

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.send(text_data=text_data, bytes_data=bytes_data)

    def disconnect(self, code: int) -> None:
        if self.log is not None:
            self.log.append(("disconnect", code))
        self.send(text_data=SERVER_AFTER_CLOSE)


class Tagging(BaseMiddleware):
    """A middleware around a route, as AuthMiddlewareStack would be."""


def query_room(scope: Any) -> str | None:
    """A `room_resolver`: the query string names the room."""
    return scope["query_string"].decode() or None


def prefix_type(text: str | None, data: bytes | None) -> str | None:
    """A message type resolver (WS_RATE_MSG_TYPE_RESOLVER by dotted path): the text before the first colon."""
    return None if text is None else text.partition(":")[0]


def router(log: list[Any] | None = None) -> URLRouter:
    echo = Echo.as_asgi(log=log)
    return URLRouter(
        [
            path("ws/echo/", echo),
            path("ws/rooms/<str:room_id>/", echo),
            path("ws/lobby/", echo, {"room_id": "lobby"}),
            path("ws/wrapped/<str:room_id>/", Tagging(echo)),
            path("ws/games/<int:game>/", URLRouter([path("rooms/<slug:room_id>/", echo)])),
            path("ws/deep/", Tagging(URLRouter([path("<str:room_id>/", echo)]))),
            re_path(r"^ws/tagged/", Tagging(URLRouter([path("<str:room_id>/", echo)]))),
            re_path(r"^ws/re/(?P<room_id>[a-z]+)/$", echo),
        ]
    )


@dataclass(frozen=True)
class User:
    """Enough of a Django user for identity: a pk and is_authenticated."""

    pk: int
    is_authenticated: bool = True


def make_app(backend: Backend, inner: Any = None, /, **overrides: Any) -> RateLimitMiddleware:
    """The test router (or `inner`) behind the middleware, on `backend` unless overridden.

    Every setting not given is pinned to its default, so that a Django settings
    module of the run cannot change what these tests expect.
    """
    overrides.setdefault("backend", backend)
    overrides.setdefault("release_on_sigterm", False)  # not in the test process (tests/channels/test_sigterm.py)
    for name, (_, default) in SETTINGS.items():
        overrides.setdefault(name, default)
    return RateLimitMiddleware(inner if inner is not None else router(), **overrides)


def client(
    app: Any,
    path: str = "/ws/echo/",
    *,
    user: User | None = None,
    ip: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    **scope: Any,
) -> WebsocketCommunicator:
    """A communicator whose scope has the given user, client IP (a list, as daphne gives) and extra keys."""
    communicator = WebsocketCommunicator(app, path, headers=headers)
    if user is not None:
        communicator.scope["user"] = user
    if ip is not None:
        communicator.scope["client"] = [ip, 50_000]
    communicator.scope.update(scope)
    return communicator


async def open_socket(communicator: WebsocketCommunicator, wait_s: float = 1) -> dict[str, Any]:
    """Connect and return the first frame: the consumer's welcome, or the middleware's error frame."""
    connected, _ = await communicator.connect(wait_s)
    assert connected, "the middleware always accepts before it refuses"
    frame: dict[str, Any] = await communicator.receive_json_from(wait_s)
    return frame


async def expect_welcome(communicator: WebsocketCommunicator) -> dict[str, Any]:
    frame = await open_socket(communicator)
    assert frame["type"] == "welcome", frame
    return frame


async def expect_closed(communicator: WebsocketCommunicator, code: int, reason: str) -> None:
    message = await communicator.receive_output()
    assert message == {"type": "websocket.close", "code": code, "reason": reason}
    # Exactly int and str, not subclasses: daphne (through autobahn) refuses an IntEnum close code.
    assert (type(message["code"]), type(message["reason"])) == (int, str)
    await communicator.wait()


async def expect_refused(communicator: WebsocketCommunicator, code: str, close_code: int = 4008) -> dict[str, Any]:
    """The connection gets the error frame with `code`, then the close; returns the frame."""
    frame = await open_socket(communicator)
    assert (frame["type"], frame["code"]) == ("error", code), frame
    await expect_closed(communicator, close_code, code)
    return frame


async def occupancy(backend: Backend, identity: ClientIdentity, room: str | None = None) -> Occupancy:
    return await ConnectionPolicy(backend, ConnectionLimits()).occupancy(identity, room)


class FailingBackend:
    """Delegates to a backend, except the methods made to fail with `fail(...)`; `failed` is set at each failure."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.failures: dict[str, BackendError] = {}
        self.failed = asyncio.Event()

    def fail(self, *methods: str, error: BackendError | None = None) -> None:
        for method in methods:
            self.failures[method] = error or BackendUnavailable("connection refused (test)")

    def heal(self) -> None:
        self.failures.clear()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            error = self.failures.get(name)
            if error is not None:
                self.failed.set()
                raise error
            return await method(*args, **kwargs)

        return call
