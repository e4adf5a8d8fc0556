"""The testing kit `ratelimit_channels.testing` used as a user would: a user suite run by pytester, and the helpers."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from ratelimit_channels import RateLimitMiddleware
from ratelimit_channels.testing import (
    SignedInUser,
    assert_admitted,
    assert_message_refused,
    assert_refused,
    clear_limits,
    limited_communicator,
    reset_limits,
)
from ratelimit_core import MemoryBackend
from support.backends import backends

pytest_plugins = ["pytester"]

# The user's project: Django settings from the environment, an echo consumer behind the middleware.
USER_CONFTEST = """
import os

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="user-suite",
    INSTALLED_APPS=[],
    DATABASES={},
    WS_RATE_BACKEND=os.environ.get("USER_SUITE_BACKEND", "memory://"),
    WS_RATE_MSG_RPS=0.001,
    WS_RATE_MSG_BURST=1,
    WS_RATE_CONN_PER_USER=1,
)
django.setup()
"""

USER_APP = """
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from ratelimit_channels import RateLimitMiddleware


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data)


application = RateLimitMiddleware(URLRouter([path("ws/echo/", Echo.as_asgi())]))
"""

# Two tests in a row on one bucket (burst 1, refilling once in 1000 s): the second passes only if isolated.
USER_TESTS = """
from app import application
from ratelimit_channels.testing import (
    SignedInUser, assert_admitted, assert_message_refused, assert_refused, limited_communicator,
)

ALICE = SignedInUser(pk=1)


async def test_first_uses_up_the_bucket():
    socket = limited_communicator(application, "/ws/echo/", user=ALICE, ip="10.0.0.1")
    await assert_admitted(socket)
    await socket.send_to(text_data="one")
    assert await socket.receive_from() == "one"
    await socket.send_to(text_data="two")
    await assert_message_refused(socket, "rate_limit_exceeded")
    await socket.disconnect()


async def test_second_starts_with_a_full_bucket():
    socket = limited_communicator(application, "/ws/echo/", user=ALICE, ip="10.0.0.1")
    await assert_admitted(socket)
    await socket.send_to(text_data="one")
    assert await socket.receive_from() == "one"
    await socket.disconnect()


async def test_a_second_socket_of_the_user_is_refused_and_another_user_admitted():
    held = limited_communicator(application, "/ws/echo/", user=ALICE, ip="10.0.0.1")
    await assert_admitted(held)
    await assert_refused(limited_communicator(application, "/ws/echo/", user=ALICE, ip="10.0.0.2"),
                         "connection_limit_exceeded", close_code=4008)
    await assert_admitted(limited_communicator(application, "/ws/echo/", user=SignedInUser(pk=2), ip="10.0.0.1"))
    await held.disconnect()
"""


@pytest.fixture
def user_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A temp dir holding the user's settings, app and tests, set up to load the kit with ``-p``."""
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(app=USER_APP, test_user_app=USER_TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


@pytest.fixture(params=backends("memory", "redis"))
def user_backend_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``WS_RATE_BACKEND`` the user's suite runs on (passed through the environment)."""
    url = "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))
    monkeypatch.setenv("USER_SUITE_BACKEND", url)
    return url


def test_the_plugin_isolates_a_used_up_bucket_from_the_next_test(
    user_suite: pytest.Pytester, user_backend_url: str
) -> None:
    result = user_suite.runpytest_subprocess("-p", "ratelimit_channels.testing", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_isolation_the_bucket_used_up_in_one_test_refuses_the_next(user_suite: pytest.Pytester) -> None:
    result = user_suite.runpytest_subprocess(
        "-p", "ratelimit_channels.testing", "-p", "no:cacheprovider", "-o", "ratelimit_isolation=false"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_second_starts_with_a_full_bucket*", "*rate_limit_exceeded*"])


class Echo(AsyncWebsocketConsumer):
    """Says "welcome" on connect, then echoes."""

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data="welcome")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)


def app(**overrides: Any) -> RateLimitMiddleware:
    return RateLimitMiddleware(URLRouter([path("ws/echo/", Echo.as_asgi())]), backend=MemoryBackend(), **overrides)


async def test_limited_communicator_sets_the_user_and_the_client_ip() -> None:
    alice = SignedInUser(pk=7)
    socket = limited_communicator(app(), "/ws/echo/", user=alice, ip="192.0.2.1", port=1234)
    assert (socket.scope["user"], socket.scope["client"]) == (alice, ("192.0.2.1", 1234))
    assert "client" not in limited_communicator(app(), "/ws/echo/", ip=None).scope


async def test_the_ip_helper_separates_anonymous_clients_that_the_bare_communicator_merges() -> None:
    limited = app(conn_per_ip=1)
    held = limited_communicator(limited, "/ws/echo/", ip="10.0.0.1")
    await assert_admitted(held)
    await assert_admitted(limited_communicator(limited, "/ws/echo/", ip="10.0.0.2"))
    await assert_refused(limited_communicator(limited, "/ws/echo/", ip="10.0.0.1"), "connection_limit_exceeded")
    unknown = limited_communicator(limited, "/ws/echo/", ip=None)
    await assert_admitted(unknown)
    await assert_refused(limited_communicator(limited, "/ws/echo/", ip=None), "connection_limit_exceeded")


async def test_assert_refused_returns_the_frame_and_checks_the_default_close_code() -> None:
    frame = await assert_refused(limited_communicator(app(conn_per_user=0), "/ws/echo/"), "connection_limit_exceeded")
    assert (frame["type"], frame["code"]) == ("error", "connection_limit_exceeded")
    assert frame["retry_after_ms"] > 0


async def test_assert_admitted_fails_on_a_refusal_naming_its_code() -> None:
    with pytest.raises(AssertionError, match=r"refused it with 'connection_limit_exceeded'.*\(True, None\)"):
        await assert_admitted(limited_communicator(app(conn_per_user=0), "/ws/echo/"))


async def test_assert_admitted_leaves_what_the_consumer_sent_for_the_test() -> None:
    socket = limited_communicator(app(), "/ws/echo/")
    await assert_admitted(socket)
    assert await socket.receive_from() == "welcome"
    await socket.disconnect()


async def test_assert_refused_fails_on_an_admitted_socket() -> None:
    socket = limited_communicator(app(), "/ws/echo/")
    with pytest.raises(AssertionError, match="expected the error frame 'room_full', but the socket was admitted"):
        await assert_refused(socket, "room_full")
    await socket.disconnect()


async def test_assert_refused_fails_on_another_code_or_close_code() -> None:
    with pytest.raises(AssertionError, match="expected the error frame 'room_full', got 'connection_limit_exceeded'"):
        await assert_refused(limited_communicator(app(conn_per_user=0), "/ws/echo/"), "room_full")
    with pytest.raises(AssertionError, match=r"expected the close 4010 after the error frame, got .*4008"):
        await assert_refused(
            limited_communicator(app(conn_per_user=0), "/ws/echo/"), "connection_limit_exceeded", close_code=4010
        )


async def test_assert_message_refused_checks_a_denied_frame_and_its_close() -> None:
    socket = limited_communicator(app(max_payload_bytes=40), "/ws/echo/")
    await assert_admitted(socket)
    assert await socket.receive_from() == "welcome"
    await socket.send_to(text_data="x" * 41)
    frame = await assert_message_refused(socket, "payload_too_large", close_code=4009)
    assert frame["retry_after_ms"] is None


def test_the_helpers_import_without_pytest() -> None:
    blocked = "import sys; sys.modules['pytest'] = None; import ratelimit_channels.testing as kit;"
    check = "print(hasattr(kit, 'assert_refused'), hasattr(kit, 'ratelimit_isolation'))"
    ran = subprocess.run([sys.executable, "-c", blocked + check], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["True", "False"]


async def test_reset_limits_in_a_coroutine_points_to_clear_limits() -> None:
    with pytest.raises(RuntimeError, match="await clear_limits"):
        reset_limits()
    await clear_limits()  # the coroutine form works there


async def test_the_kit_knows_the_close_codes_of_a_connect_rate_refusal_and_a_quota_refusal() -> None:
    limited = app(connect_rps=0.001, msg_quota=(1, 60))
    socket = limited_communicator(limited, "/ws/echo/")
    await assert_admitted(socket)
    assert await socket.receive_from() == "welcome"
    await socket.send_to(text_data="one")
    assert await socket.receive_from() == "one"
    await socket.send_to(text_data="two")
    frame = await assert_message_refused(socket, "quota_exceeded")
    assert frame["retry_after_ms"] > 0
    await socket.disconnect()
    with pytest.raises(AssertionError, match="refused it with 'connection_rate_exceeded'"):
        await assert_admitted(limited_communicator(limited, "/ws/echo/"))
    await assert_refused(limited_communicator(limited, "/ws/echo/"), "connection_rate_exceeded")
