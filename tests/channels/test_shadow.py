"""``WS_RATE_SHADOW`` through the middleware on every backend: everything reported, nothing refused or closed."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from prometheus_client import CollectorRegistry

from ratelimit_channels import RateLimitMiddleware
from ratelimit_channels.checks import INVALID_VALUE, check_settings
from ratelimit_core import Backend, ManualClock
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import ClientIdentity, Occupancy
from ratelimit_core.prometheus import PrometheusMetrics
from support.ws_app import User, client, expect_refused, expect_welcome, make_app, occupancy, router

ALICE = User(pk=1)
ALICE_ID = ClientIdentity("1.1.1.1", "1")


async def test_the_n_plus_first_socket_over_a_per_user_limit_is_admitted_reported_and_held_until_close(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Decision] = []
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    app = make_app(backend, hooks=DecisionHooks(seen.append, metrics.record), conn_per_user=2, shadow=True)
    sockets = [client(app, "/ws/rooms/r/", user=ALICE, ip="1.1.1.1") for _ in range(3)]
    with caplog.at_level(logging.DEBUG, logger="ratelimit_channels"):
        welcomes = [await expect_welcome(socket) for socket in sockets]
    assert [w["shadowed"] for w in welcomes] == [None, None, "connection_limit_exceeded"]
    assert [(d.limit, d.allowed, d.code, d.shadow) for d in seen] == [
        ("user", True, None, True),
        ("user", True, None, True),
        ("user", False, "connection_limit_exceeded", True),
    ]
    counted = {"limit": "user", "degraded": "false", "shadow": "true"}
    assert registry.get_sample_value("ratelimit_decisions_total", {**counted, "outcome": "allowed", "code": ""}) == 2
    over = {**counted, "outcome": "denied", "code": "connection_limit_exceeded"}
    assert registry.get_sample_value("ratelimit_decisions_total", over) == 1
    (logged,) = [r for r in caplog.records if getattr(r, "ratelimit_shadow", False)]
    assert (logged.ratelimit_code, logged.levelno) == ("connection_limit_exceeded", logging.DEBUG)  # type: ignore[attr-defined]
    assert "shadow: would have refused a connection of user:1" in logged.getMessage()
    # The storage counts the real traffic: three sockets.
    assert (await occupancy(backend, ALICE_ID, "r")).identity == 3
    for socket in sockets:
        await socket.send_to(text_data="still open")
        assert await socket.receive_from() == "still open"
        await socket.disconnect()
    assert await occupancy(backend, ALICE_ID, "r") == Occupancy(identity=0, ip=0, room=0)


async def test_connect_storms_and_full_rooms_are_reported_not_refused(backend: Backend) -> None:
    app = make_app(backend, connect_rps=1, connect_burst=2, room_max_members=1, conn_per_ip=10, shadow=True)
    sockets = [client(app, "/ws/rooms/r/", user=User(pk=n), ip="1.1.1.1") for n in (1, 1, 1, 2)]
    welcomes = [await expect_welcome(socket) for socket in sockets]
    assert [w["shadowed"] for w in welcomes] == [None, "room_full", "connection_rate_exceeded", "room_full"]
    for socket in sockets:
        await socket.disconnect()


async def test_messages_over_every_limit_are_delivered_and_reported_and_nothing_closes(
    backend: Backend, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Decision] = []
    app = make_app(
        backend,
        hooks=DecisionHooks(seen.append),
        msg_rps=0.001,
        msg_burst=1,
        msg_strikes=2,
        max_payload_bytes=8,
        msg_quota=(3, 60),
        shadow=True,
    )
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    with caplog.at_level(logging.DEBUG, logger="ratelimit_channels"):
        for text in ("one", "two", "three", "x" * 9, "five"):
            await socket.send_to(text_data=text)
            assert await socket.receive_from() == text  # delivered, echoed: no error frame, no close
    assert await socket.receive_nothing()
    codes = [r.ratelimit_code for r in caplog.records if getattr(r, "ratelimit_shadow", False)]  # type: ignore[attr-defined]
    assert codes == ["rate_limit_exceeded", "rate_limit_exceeded", "payload_too_large", "quota_exceeded"]
    messages = [r.getMessage() for r in caplog.records if getattr(r, "ratelimit_shadow", False)]
    assert messages[1].endswith("closing 4010")  # the second strike would have closed
    denied = [(d.limit, d.code) for d in seen if not d.allowed]
    assert denied == [
        ("rate", "rate_limit_exceeded"),
        ("rate", "rate_limit_exceeded"),
        ("payload", "payload_too_large"),
        ("rate", "rate_limit_exceeded"),
        ("quota", "quota_exceeded"),
        ("rate", "rate_limit_exceeded"),
        ("quota", "quota_exceeded"),
    ]
    assert all(d.shadow for d in seen)
    await socket.disconnect()


async def test_a_tier_can_turn_shadow_mode_on_for_its_connections(backend: Backend) -> None:
    def tiers(scope: dict[str, object]) -> dict[str, object] | None:
        user = scope.get("user")
        return {"shadow": True} if isinstance(user, User) and user.pk == 2 else None

    app = make_app(backend, conn_per_user=0, limits_resolver=tiers)
    await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    trial = client(app, user=User(pk=2))
    assert (await expect_welcome(trial))["shadowed"] == "connection_limit_exceeded"
    await trial.disconnect()


async def test_without_shadow_the_same_socket_is_refused(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1)
    held = client(app, user=ALICE)
    await expect_welcome(held)
    await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    await held.disconnect()


def test_a_shadow_setting_that_is_not_a_bool_is_named_in_the_error_and_the_system_check() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^shadow \(overriding WS_RATE_SHADOW\) must be True or False"):
        RateLimitMiddleware(router(), shadow="yes")
    with override_settings(WS_RATE_SHADOW=1):
        (problem,) = [m for m in check_settings() if m.obj == "WS_RATE_SHADOW"]
    assert problem.id == INVALID_VALUE
    assert "WS_RATE_SHADOW must be True or False, got 1" in problem.msg


async def test_a_cancelled_shadow_connection_releases_its_slots(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=0, shadow=True)
    socket = WebsocketCommunicator(app, "/ws/rooms/r/")
    socket.scope["user"] = ALICE
    socket.scope["client"] = ["1.1.1.1", 50_000]
    assert (await expect_welcome(socket))["shadowed"] == "connection_limit_exceeded"
    assert (await occupancy(backend, ALICE_ID, "r")).identity == 1
    socket.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await socket.future
    for _ in range(100):  # the release runs as its own shielded task
        if (await occupancy(backend, ALICE_ID, "r")).identity == 0:
            break
        await asyncio.sleep(0.01)
    assert await occupancy(backend, ALICE_ID, "r") == Occupancy(identity=0, ip=0, room=0)
