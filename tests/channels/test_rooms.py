"""Room capacity on every backend, and finding the room the way the URLRouter would."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit_channels import RateLimitMiddleware
from ratelimit_channels.rooms import resolve_room
from ratelimit_core import Backend
from ratelimit_core.policies import ClientIdentity
from support.ws_app import Echo, Tagging, User, client, expect_refused, expect_welcome, make_app, occupancy, router


async def test_a_full_room_refuses_the_next_member_until_one_leaves(backend: Backend) -> None:
    app = make_app(backend, room_max_members=2)
    members = [client(app, "/ws/rooms/final/", user=User(pk=n)) for n in (1, 2)]
    for member in members:
        assert (await expect_welcome(member))["room"] == "final"
    frame = await expect_refused(client(app, "/ws/rooms/final/", user=User(pk=3)), "room_full")
    assert frame["retry_after_ms"] == 5_000
    await members[0].disconnect()
    newcomer = client(app, "/ws/rooms/final/", user=User(pk=3))
    await expect_welcome(newcomer)
    assert (await occupancy(backend, ClientIdentity("unknown"), "final")).room == 2
    for member in (members[1], newcomer):
        await member.disconnect()
    assert (await occupancy(backend, ClientIdentity("unknown"), "final")).room == 0


async def test_rooms_are_independent(backend: Backend) -> None:
    app = make_app(backend, room_max_members=1)
    held = client(app, "/ws/rooms/a/", user=User(pk=1))
    await expect_welcome(held)
    await expect_refused(client(app, "/ws/rooms/a/", user=User(pk=2)), "room_full")
    await expect_welcome(client(app, "/ws/rooms/b/", user=User(pk=2)))


async def test_a_path_without_a_room_gets_no_room_check(backend: Backend) -> None:
    app = make_app(backend, room_max_members=0)
    await expect_welcome(client(app, "/ws/echo/"))
    await expect_refused(client(app, "/ws/rooms/a/"), "room_full")


@pytest.mark.parametrize(
    ("path", "scope", "room"),
    [
        ("/ws/rooms/a/", {}, "a"),
        ("/ws/echo/", {}, None),
        ("/ws/nowhere/", {}, None),
        ("/ws/lobby/", {}, "lobby"),  # default_args
        ("/ws/wrapped/w/", {}, "w"),  # a route wrapped in middleware
        ("/ws/games/7/rooms/final-2/", {}, "final-2"),  # a nested URLRouter
        ("/ws/games/x/rooms/final/", {}, None),  # the int converter refuses "x"
        ("/ws/deep/d/", {}, None),  # a wrapped nested router keeps an endpoint pattern, as in Channels
        ("/ws/tagged/t/", {}, "t"),  # a nested router wrapped in middleware
        ("/ws/re/abc/", {}, "abc"),
        ("/prefix/ws/rooms/r/", {"root_path": "/prefix"}, "r"),
        ("/ws/rooms/r/", {"root_path": "/prefix"}, None),  # outside root_path: the router refuses it
        ("/ws/echo/", {"url_route": {"args": (), "kwargs": {"room_id": "given"}}}, "given"),
    ],
)
def test_the_room_is_found_as_the_url_router_would_route(path: str, scope: dict[str, Any], room: str | None) -> None:
    app = RateLimitMiddleware(router())
    assert resolve_room({"type": "websocket", "path": path, **scope}, app.inner, room_kwarg="room_id") == room


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/ws/rooms/a/", {}),
        ("/ws/echo/", {}),
        ("/ws/lobby/", {}),
        ("/ws/wrapped/w/", {}),
        ("/ws/games/7/rooms/final-2/", {}),
        ("/ws/tagged/t/", {}),
        ("/ws/re/abc/", {}),
        ("/prefix/ws/rooms/r/", {"root_path": "/prefix"}),
    ],
)
async def test_the_middleware_finds_the_same_room_as_the_router_later_does(
    backend: Backend, path: str, scope: dict[str, Any]
) -> None:
    socket = client(make_app(backend), path, **scope)
    frame = await expect_welcome(socket)
    assert frame["room"] == frame["routed_room"]
    await socket.disconnect()


def test_a_nested_router_is_matched_on_the_remaining_path_with_the_outer_kwargs() -> None:
    scope = {
        "type": "websocket",
        "path": "/ws/games/7/rooms/r/",
        "path_remaining": "rooms/r/",
        "url_route": {"args": (), "kwargs": {"game": 7}},
    }
    from channels.routing import URLRouter
    from django.urls import path

    inner = URLRouter([path("rooms/<str:room_id>/", Echo.as_asgi())])
    assert resolve_room(scope, inner, room_kwarg="room_id") == "r"
    assert resolve_room(scope, inner, room_kwarg="game") == "7"


def test_a_room_resolver_wins() -> None:
    def resolver(scope: Any) -> str | None:
        return str(scope["path"]).rsplit("/", 2)[-2]

    scope = {"type": "websocket", "path": "/ws/echo/"}
    assert resolve_room(scope, router(), room_kwarg="room_id", resolver=resolver) == "echo"


async def test_the_room_is_resolved_through_nested_routers_and_root_path_for_real(backend: Backend) -> None:
    app = make_app(backend, room_max_members=1)
    held = client(app, "/prefix/ws/games/1/rooms/r/", root_path="/prefix")
    assert (await expect_welcome(held))["room"] == "r"
    await expect_refused(client(app, "/prefix/ws/games/2/rooms/r/", root_path="/prefix"), "room_full")
    lobby = client(app, "/ws/lobby/")
    assert (await expect_welcome(lobby))["room"] == "lobby"
    await expect_refused(client(app, "/ws/lobby/"), "room_full")


async def test_wrapping_a_single_consumer_uses_the_url_route_the_router_set(backend: Backend) -> None:
    from channels.routing import URLRouter
    from django.urls import path

    limited = RateLimitMiddleware(Echo.as_asgi(), backend=backend, room_max_members=1)
    app = URLRouter([path("ws/match/<str:room_id>/", limited)])
    held = client(app, "/ws/match/m1/")
    assert (await expect_welcome(held))["room"] == "m1"
    await expect_refused(client(app, "/ws/match/m1/"), "room_full")


async def test_a_custom_room_kwarg_and_a_room_resolver(backend: Backend) -> None:
    by_kwarg = make_app(backend, room_max_members=1, room_kwarg="game")
    held = client(by_kwarg, "/ws/games/5/rooms/a/")
    assert (await expect_welcome(held))["room"] == "5"
    await expect_refused(client(by_kwarg, "/ws/games/5/rooms/b/"), "room_full")

    by_resolver = make_app(
        backend, room_max_members=1, room_resolver=lambda scope: scope["query_string"].decode() or None
    )
    first = client(by_resolver, "/ws/echo/?table-9")
    assert (await expect_welcome(first))["room"] == "table-9"
    await expect_refused(client(by_resolver, "/ws/echo/?table-9"), "room_full")
    await expect_welcome(client(by_resolver, "/ws/echo/"))


def test_tagging_middleware_is_looked_through() -> None:
    from ratelimit_channels.rooms import find_router

    inner = router()
    assert find_router(Tagging(RateLimitMiddleware(inner))) is inner
    assert find_router(Echo.as_asgi()) is None
