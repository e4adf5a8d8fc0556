"""WS_RATE_CONNECT_RPS / WS_RATE_CONNECT_BURST through the middleware, and how the settings are validated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import Backend, ManualClock
from ratelimit_core.policies import ClientIdentity, Occupancy
from support.ws_app import User, client, expect_refused, expect_welcome, make_app, occupancy, router

ALICE = User(pk=1)
BOB = User(pk=2)


async def test_the_burst_th_attempt_passes_and_the_next_is_closed_4008_with_the_bucket_wait(
    backend: Backend, clock: ManualClock
) -> None:
    app = make_app(backend, connect_rps=2, connect_burst=3)
    for _ in range(3):
        socket = client(app, user=ALICE)
        await expect_welcome(socket)
        await socket.disconnect()
    frame = await expect_refused(client(app, user=ALICE), "connection_rate_exceeded", 4008)
    assert frame["retry_after_ms"] == 500
    clock.advance(499)
    frame = await expect_refused(client(app, user=ALICE), "connection_rate_exceeded", 4008)
    assert frame["retry_after_ms"] == 1
    clock.advance(1)
    await expect_welcome(client(app, user=ALICE))


async def test_a_rate_refused_attempt_takes_no_slot_and_a_slot_refused_one_spends_a_token(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1, connect_rps=1, connect_burst=2)
    first = client(app, "/ws/rooms/r/", user=ALICE, ip="10.0.0.1")
    await expect_welcome(first)
    await expect_refused(client(app, "/ws/rooms/r/", user=ALICE, ip="10.0.0.1"), "connection_limit_exceeded")
    await first.disconnect()
    # The slot is free again, but both tokens are spent.
    await expect_refused(client(app, "/ws/rooms/r/", user=ALICE, ip="10.0.0.1"), "connection_rate_exceeded")
    assert await occupancy(backend, ClientIdentity("10.0.0.1", "1"), "r") == Occupancy(identity=0, ip=0, room=0)


async def test_identities_have_their_own_buckets(backend: Backend) -> None:
    app = make_app(backend, connect_rps=0.1)
    kept = [client(app, user=ALICE, ip="10.0.0.1")]
    await expect_welcome(kept[0])
    await expect_refused(client(app, user=ALICE, ip="10.0.0.1"), "connection_rate_exceeded")
    for socket in (client(app, user=BOB, ip="10.0.0.1"), client(app, ip="10.0.0.1"), client(app, ip="10.0.0.2")):
        kept.append(socket)
        await expect_welcome(socket)
    await expect_refused(client(app, ip="10.0.0.1"), "connection_rate_exceeded")


async def test_without_a_rate_attempts_are_not_counted(backend: Backend) -> None:
    app = make_app(backend)
    for _ in range(20):
        socket = client(app, user=ALICE)
        await expect_welcome(socket)
        await socket.disconnect()


@pytest.mark.parametrize(
    ("override", "value"),
    [("connect_rps", 0), ("connect_rps", -1.0), ("connect_rps", float("inf")), ("connect_rps", "10")],
)
def test_a_bad_rate_override_is_named(override: str, value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^connect_rps \(overriding WS_RATE_CONNECT_RPS\)"):
        RateLimitMiddleware(router(), **{override: value})


def test_a_burst_without_a_rate_is_named() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^connect_burst \(overriding WS_RATE_CONNECT_BURST\)"):
        RateLimitMiddleware(router(), connect_burst=5)


def test_a_bad_burst_is_named() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^connect_burst \(overriding WS_RATE_CONNECT_BURST\)"):
        RateLimitMiddleware(router(), connect_rps=1, connect_burst=0)


def test_rate_and_burst_beyond_the_bucket_precision_name_both_settings() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"WS_RATE_CONNECT_RPS.*WS_RATE_CONNECT_BURST"):
        RateLimitMiddleware(router(), connect_rps=0.123457, connect_burst=10**9)


@pytest.fixture
def installed() -> Iterator[None]:
    with override_settings(INSTALLED_APPS=["ratelimit_channels"], DEBUG=True):
        yield


def ours(**settings: Any) -> list[CheckMessage]:
    with override_settings(**settings):
        return [message for message in run_checks() if str(message.id).startswith("ratelimit_channels.")]


@pytest.mark.usefixtures("installed")
def test_valid_connect_settings_give_no_check_message() -> None:
    assert ours(WS_RATE_CONNECT_RPS=0.5, WS_RATE_CONNECT_BURST=5) == []


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("settings", "check_id", "setting"),
    [
        ({"WS_RATE_CONNECT_RPS": "fast"}, "ratelimit_channels.E001", "WS_RATE_CONNECT_RPS"),
        ({"WS_RATE_CONNECT_RPS": 1, "WS_RATE_CONNECT_BURST": 1.5}, "ratelimit_channels.E001", "WS_RATE_CONNECT_BURST"),
        ({"WS_RATE_CONNECT_BURST": 5}, "ratelimit_channels.E002", "WS_RATE_CONNECT_BURST"),
        (
            {"WS_RATE_CONNECT_RPS": 0.123457, "WS_RATE_CONNECT_BURST": 10**9},
            "ratelimit_channels.E002",
            "WS_RATE_CONNECT_BURST",
        ),
    ],
)
def test_the_checks_report_bad_connect_settings_as_the_middleware_does(
    settings: dict[str, object], check_id: str, setting: str
) -> None:
    [error] = ours(**settings)
    assert (error.id, error.obj) == (check_id, setting)
    with override_settings(**settings), pytest.raises(ImproperlyConfigured) as raised:
        RateLimitMiddleware(router())
    assert str(raised.value) == error.msg
