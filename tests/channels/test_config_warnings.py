"""Misconfigurations only a connection shows are logged once per middleware, at WARNING, saying what to change."""

from __future__ import annotations

import logging

import pytest
from channels.routing import URLRouter
from django.urls import path

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import MemoryBackend
from support.ws_app import Echo, User, client, expect_refused, expect_welcome, make_app


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "ratelimit_channels" and record.levelno == logging.WARNING
    ]


def chat_app(**overrides: object) -> RateLimitMiddleware:
    """The Channels tutorial's route: the room kwarg is ``room_name``, not ``room_id``."""
    return make_app(MemoryBackend(), URLRouter([path("ws/chat/<str:room_name>/", Echo.as_asgi())]), **overrides)


async def test_a_per_user_limit_without_user_in_the_scope_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(MemoryBackend(), conn_per_user=5)
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        for n in range(3):
            communicator = client(app, ip=f"10.0.0.{n}")
            await expect_welcome(communicator)
            await communicator.disconnect()
    [message] = warnings(caplog)
    assert "no 'user' in the scope" in message
    assert "AuthMiddlewareStack(RateLimitMiddleware(URLRouter(...)))" in message


async def test_each_middleware_logs_its_own_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    apps = [make_app(MemoryBackend(), conn_per_user=5) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        for app in apps * 2:
            communicator = client(app)
            await expect_welcome(communicator)
            await communicator.disconnect()
    assert len(warnings(caplog)) == 2


@pytest.mark.parametrize(
    ("user", "limit"),
    [(User(pk=1), 5), (User(pk=1, is_authenticated=False), 5), (None, None)],
    ids=["signed-in", "anonymous-user", "no-per-user-limit"],
)
async def test_no_user_warning_with_a_user_in_the_scope_or_no_per_user_limit(
    caplog: pytest.LogCaptureFixture, user: User | None, limit: int | None
) -> None:
    app = make_app(MemoryBackend(), conn_per_user=limit)
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        communicator = client(app, user=user)
        await expect_welcome(communicator)
        await communicator.disconnect()
    assert warnings(caplog) == []


async def test_a_room_limit_on_a_route_without_the_room_kwarg_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    app = chat_app(room_max_members=3)
    sockets = [client(app, "/ws/chat/lobby/", user=User(pk=n)) for n in range(5)]
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        for socket in sockets:
            assert (await expect_welcome(socket))["room"] is None  # all admitted: the limit is not applied
    [message] = warnings(caplog)
    assert "'ws/chat/<str:room_name>/'" in message
    assert "['room_name']" in message
    assert "'room_id'" in message
    assert "WS_RATE_ROOM_KWARG" in message and "WS_RATE_ROOM_RESOLVER" in message
    for socket in sockets:
        await socket.disconnect()


async def test_a_nested_route_is_named_by_its_whole_pattern(caplog: pytest.LogCaptureFixture) -> None:
    inner = URLRouter([path("ws/games/<int:game>/", URLRouter([path("tables/<slug:table>/", Echo.as_asgi())]))])
    app = make_app(MemoryBackend(), inner, room_max_members=3)
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        await expect_welcome(client(app, "/ws/games/7/tables/red/", user=User(pk=1)))
    [message] = warnings(caplog)
    assert "'ws/games/<int:game>/tables/<slug:table>/'" in message
    assert "['game', 'table']" in message


async def test_setting_the_room_kwarg_applies_the_limit_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    app = chat_app(room_max_members=1, room_kwarg="room_name")
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        held = client(app, "/ws/chat/lobby/", user=User(pk=1))
        assert (await expect_welcome(held))["room"] == "lobby"
        await expect_refused(client(app, "/ws/chat/lobby/", user=User(pk=2)), "room_full")
    assert warnings(caplog) == []
    await held.disconnect()


@pytest.mark.parametrize(
    ("path_", "overrides"),
    [
        ("/ws/chat/lobby/", {"room_max_members": None}),  # no room limit
        ("/ws/chat/lobby/", {"room_max_members": 3, "room_resolver": lambda scope: None}),  # the resolver decides
    ],
    ids=["no-room-limit", "resolver"],
)
async def test_no_room_warning_without_a_room_limit_or_with_a_resolver(
    caplog: pytest.LogCaptureFixture, path_: str, overrides: dict[str, object]
) -> None:
    app = chat_app(**overrides)
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        await expect_welcome(client(app, path_, user=User(pk=1)))
    assert warnings(caplog) == []


async def test_no_room_warning_on_a_route_without_kwargs(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(MemoryBackend(), room_max_members=3)  # the test router's ws/echo/ has no kwargs
    with caplog.at_level(logging.WARNING, logger="ratelimit_channels"):
        await expect_welcome(client(app, "/ws/echo/", user=User(pk=1)))
    assert warnings(caplog) == []
