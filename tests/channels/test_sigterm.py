"""WS_RATE_RELEASE_ON_SIGTERM in this process: a real SIGTERM releases every slot, then reaches the previous handler.

Each test installs a recording handler first (never the default action in the test
process), and puts the original back at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from ratelimit_channels.backends import BackendCache
from ratelimit_core import Backend
from ratelimit_core.policies import ClientIdentity, Occupancy
from support.held_calls import HeldCalls, calls_to
from support.ws_app import User, client, expect_welcome, make_app, occupancy

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


async def test_the_server_handler_waits_for_the_release_but_no_longer_than_the_bound(
    backend: Backend, server_handler: Recorder
) -> None:
    storage = HeldCalls(backend)
    cache = BackendCache()
    cache.sigterm = type(cache.sigterm)(cache, timeout_s=0.2)
    app = make_app(storage, backend_cache=cache, release_on_sigterm=True, **LIMITS)
    socket = client(app, "/ws/rooms/r/", user=User(pk=1))
    await expect_welcome(socket)
    gate = storage.hold(calls_to("set_remove"))
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    assert not server_handler.called.is_set(), "the server's handler waits for the release"
    await asyncio.wait_for(server_handler.called.wait(), timeout=10)
    assert loop.time() - sent_at >= 0.19  # it waited for the bound, no more
    gate.go.set()
    await socket.disconnect()
    await storage.settle()
    assert await occupancy(backend, ClientIdentity("unknown", "1"), "r") == Occupancy(identity=0, ip=0, room=0)
    cache.sigterm.uninstall()
    await cache.aclose()


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
