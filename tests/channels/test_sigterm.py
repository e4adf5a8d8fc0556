"""WS_RATE_RELEASE_ON_SIGTERM in this process: a real SIGTERM releases every slot, then reaches the previous handler.

The handler waits for the release up to WS_RATE_RELEASE_TIMEOUT_MS, no longer.

Each test installs a recording handler first (never the default action in the test
process), and puts the original back at the end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ratelimit_channels import RateLimitMiddleware
from ratelimit_channels.backends import BackendCache
from ratelimit_channels.checks import INVALID_VALUE, check_settings
from ratelimit_channels.shutdown import SigtermRelease
from ratelimit_core import Backend, InvalidArgument
from ratelimit_core.arguments import MAX_COUNT
from ratelimit_core.policies import ClientIdentity, Occupancy
from support.held_calls import HeldCalls, calls_to
from support.ws_app import User, client, expect_welcome, make_app, occupancy, router

LIMITS: dict[str, Any] = {"conn_per_user": 5, "conn_per_ip": 50, "room_max_members": 50}


class Recorder:
    """A SIGTERM handler installed with `signal.signal`, as uvicorn and daphne install theirs."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.called = asyncio.Event()
        self.before: Callable[[], None] = lambda: None
        """Run when the handler is called (a test's snapshot of what storage holds then)."""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.before()
        self.calls.append(signum)
        self.called.set()


@pytest.fixture
def server_handler() -> Iterator[Recorder]:
    original = signal.getsignal(signal.SIGTERM)
    recorder = Recorder()
    signal.signal(signal.SIGTERM, recorder)
    try:
        yield recorder
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_sigterm_releases_every_slot_before_the_server_handler_runs(
    backend: Backend, server_handler: Recorder
) -> None:
    storage = HeldCalls(backend)  # counts removals as they are made
    removals_at_handler: list[int] = []
    server_handler.before = lambda: removals_at_handler.append(sum(storage.removals.values()))
    cache = BackendCache()
    app = make_app(storage, backend_cache=cache, release_on_sigterm=True, **LIMITS)
    sockets = [client(app, "/ws/rooms/r/", user=User(pk=n % 3)) for n in range(9)]
    for socket in sockets:
        await expect_welcome(socket)
    assert cache.sigterm.installed
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(server_handler.called.wait(), timeout=10)
    assert server_handler.calls == [signal.SIGTERM]
    assert removals_at_handler == [9 * 3], "every slot of every socket was removed before the server's handler ran"
    assert await occupancy(backend, ClientIdentity("unknown", "0"), "r") == Occupancy(identity=0, ip=0, room=0)
    # The sockets are still open (the server closes them); closing them later removes nothing twice.
    for socket in sockets:
        await socket.disconnect()
    await storage.settle()
    assert max(storage.removals.values()) == 1
    cache.sigterm.uninstall()
    assert signal.getsignal(signal.SIGTERM) is server_handler
    await cache.aclose()


async def test_a_slow_release_holds_the_server_handler_for_the_configured_timeout_no_longer(
    backend: Backend, server_handler: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    storage = HeldCalls(backend)
    cache = BackendCache()
    loop = asyncio.get_running_loop()
    called_at: list[float] = []
    server_handler.before = lambda: called_at.append(loop.time())
    # Two middlewares on one cache: the wait is the one the latest connection's settings give.
    first = make_app(storage, backend_cache=cache, release_on_sigterm=True, release_timeout_ms=30_000, **LIMITS)
    latest = make_app(storage, backend_cache=cache, release_on_sigterm=True, release_timeout_ms=400, **LIMITS)
    sockets = [client(first, "/ws/rooms/r/", user=User(pk=1)), client(latest, "/ws/rooms/r/", user=User(pk=2))]
    for socket in sockets:
        await expect_welcome(socket)
    assert cache.sigterm.timeout_ms == 400
    gate = storage.hold(calls_to("set_remove"))
    with caplog.at_level(logging.INFO, logger="ratelimit_channels"):
        sent_at = loop.time()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(gate.started.wait(), timeout=10)
        assert not server_handler.called.is_set(), "the server's handler waits for the release"
        await asyncio.wait_for(server_handler.called.wait(), timeout=10)
    waited = called_at[0] - sent_at
    # At least the 400 ms configured; well under the 2 s default and the first middleware's 30 s.
    assert 0.39 <= waited < 1.9, f"the server's handler ran {waited:.3f} s after SIGTERM"
    assert server_handler.calls == [signal.SIGTERM]
    assert "2 connection(s) not released within WS_RATE_RELEASE_TIMEOUT_MS (400 ms)" in caplog.text
    # The removals went on: once the store answers, every slot is free.
    gate.go.set()
    for socket in sockets:
        await socket.disconnect()
    await storage.settle()
    for pk in (1, 2):
        assert await occupancy(backend, ClientIdentity("unknown", str(pk)), "r") == Occupancy(identity=0, ip=0, room=0)
    cache.sigterm.uninstall()
    await cache.aclose()


async def test_a_quick_release_passes_the_signal_on_at_once_however_long_the_timeout(
    backend: Backend, server_handler: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    cache = BackendCache()
    app = make_app(backend, backend_cache=cache, release_on_sigterm=True, release_timeout_ms=60_000, **LIMITS)
    sockets = [client(app, "/ws/rooms/r/", user=User(pk=n)) for n in range(3)]
    for socket in sockets:
        await expect_welcome(socket)
    with caplog.at_level(logging.INFO, logger="ratelimit_channels"):
        os.kill(os.getpid(), signal.SIGTERM)
        # Far sooner than the 60 s timeout: the handler runs as soon as the release has ended.
        await asyncio.wait_for(server_handler.called.wait(), timeout=10)
    assert "released every slot of this process" in caplog.text
    assert "not released" not in caplog.text
    for n in range(3):
        assert await occupancy(backend, ClientIdentity("unknown", str(n)), "r") == Occupancy(identity=0, ip=0, room=0)
    for socket in sockets:
        await socket.disconnect()
    cache.sigterm.uninstall()
    await cache.aclose()


async def test_the_timeout_is_read_from_django_settings(backend: Backend, server_handler: Recorder) -> None:
    cache = BackendCache()
    app = RateLimitMiddleware(router(), backend=backend, backend_cache=cache)
    with override_settings(WS_RATE_RELEASE_ON_SIGTERM=True):
        socket = client(app)
        await expect_welcome(socket)
        assert cache.sigterm.timeout_ms == 2000, "the default"
        await socket.disconnect()
        with override_settings(WS_RATE_RELEASE_TIMEOUT_MS=750):
            socket = client(app)
            await expect_welcome(socket)
            assert cache.sigterm.timeout_ms == 750
            await socket.disconnect()
    cache.sigterm.uninstall()
    await cache.aclose()


MUST_BE_POSITIVE_INT = re.escape(f"must be between 1 and {MAX_COUNT}, got ")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, MUST_BE_POSITIVE_INT + "0"),
        (-500, MUST_BE_POSITIVE_INT + "-500"),
        (2.5, r"must be an int, got 2\.5"),
        ("2000", r"must be an int, got '2000'"),
        (True, r"must be an int, got True"),
        (None, r"must be an int, got None"),
    ],
)
def test_a_timeout_that_is_not_a_positive_int_is_refused_naming_the_setting_and_the_fix(
    value: object, problem: str
) -> None:
    with pytest.raises(
        ImproperlyConfigured, match=rf"^release_timeout_ms \(overriding WS_RATE_RELEASE_TIMEOUT_MS\) {problem}$"
    ):
        RateLimitMiddleware(router(), release_timeout_ms=value)
    with override_settings(WS_RATE_RELEASE_TIMEOUT_MS=value):
        with pytest.raises(ImproperlyConfigured, match=rf"^WS_RATE_RELEASE_TIMEOUT_MS {problem}$"):
            RateLimitMiddleware(router())
        [error] = [message for message in check_settings() if message.obj == "WS_RATE_RELEASE_TIMEOUT_MS"]
    assert error.id == INVALID_VALUE
    assert re.match(rf"^WS_RATE_RELEASE_TIMEOUT_MS {problem}$", error.msg)
    assert error.hint == "Set WS_RATE_RELEASE_TIMEOUT_MS to an int of at least 1 (default: 2000), or remove it."


def test_the_release_itself_refuses_a_timeout_that_is_not_a_positive_int() -> None:
    with pytest.raises(InvalidArgument, match=r"^timeout_ms must be between 1 and"):
        SigtermRelease(BackendCache(), timeout_ms=0)
    release = SigtermRelease(BackendCache(), timeout_ms=1)
    with pytest.raises(InvalidArgument, match=r"^timeout_ms must be an int, got 0\.5$"):
        release.timeout_ms = 0.5  # type: ignore[assignment]
    assert release.timeout_ms == 1


async def test_nothing_is_installed_when_sigterm_is_ignored_or_the_setting_is_off(backend: Backend) -> None:
    original = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cache = BackendCache()
        socket = client(make_app(backend, backend_cache=cache, release_on_sigterm=True), "/ws/echo/")
        await expect_welcome(socket)
        assert cache.sigterm.attempted
        assert not cache.sigterm.installed
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        await socket.disconnect()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        off = BackendCache()
        socket = client(make_app(backend, backend_cache=off, release_on_sigterm=False), "/ws/echo/")
        await expect_welcome(socket)
        assert not off.sigterm.attempted
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        await socket.disconnect()
    finally:
        signal.signal(signal.SIGTERM, original)
