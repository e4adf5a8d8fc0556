"""Slots are released exactly once however a connection ends, and leases outlive dead processes only briefly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ratelimit_core import Backend, BackendUnavailable, ManualClock, SetResult
from ratelimit_core.policies import ClientIdentity, Occupancy
from support.ws_app import User, client, expect_refused, expect_welcome, make_app, occupancy

ALICE = User(pk=1)
ALICE_ID = ClientIdentity("unknown", "1")
LIMITS: dict[str, Any] = {"conn_per_user": 1, "conn_per_ip": 1, "room_max_members": 1}


async def test_slots_are_released_after_an_exception_in_the_consumer(backend: Backend) -> None:
    app = make_app(backend, **LIMITS)
    socket = client(app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    await socket.send_to(text_data="boom")
    with pytest.raises(RuntimeError, match="the consumer failed"):
        await socket.wait()
    assert await occupancy(backend, ALICE_ID, "r") == Occupancy(identity=0, ip=0, room=0)
    await expect_welcome(client(app, "/ws/rooms/r/", user=ALICE))


async def test_slots_are_released_when_the_server_cancels_the_app(backend: Backend) -> None:
    app = make_app(backend, **LIMITS)
    socket = client(app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    socket.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await socket.future
    assert await occupancy(backend, ALICE_ID, "r") == Occupancy(identity=0, ip=0, room=0)


async def test_a_refused_connection_holds_nothing_afterwards(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=5, conn_per_ip=5, room_max_members=1)
    held = client(app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(held)
    await expect_refused(client(app, "/ws/rooms/r/", user=User(pk=2)), "room_full")
    assert await occupancy(backend, ClientIdentity("unknown", "2"), "r") == Occupancy(identity=0, ip=1, room=1)


class Vanishing:
    """A backend whose process dies on `vanish()`: from then on nothing reaches storage."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.gone = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.gone:
                raise BackendUnavailable("the process is gone")
            return await method(*args, **kwargs)

        return call

    def vanish(self) -> None:
        self.gone = True


async def test_slots_of_a_connection_that_vanished_expire_with_their_lease(
    backend: Backend, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    dying = Vanishing(backend)
    dead_app = make_app(dying, lease_ms=30_000, **LIMITS)
    live_app = make_app(backend, lease_ms=30_000, **LIMITS)
    doomed = client(dead_app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(doomed)
    dying.vanish()
    with caplog.at_level(logging.WARNING):
        await doomed.disconnect()  # its release never reaches storage
    assert "expires with its lease" in caplog.text
    await expect_refused(client(live_app, "/ws/rooms/r/", user=ALICE), "connection_limit_exceeded")
    clock.advance(30_000)
    survivor = client(live_app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(survivor)
    await survivor.disconnect()


class RefreshSpy:
    """Delegates to a backend and signals each lease refresh made at or after `wanted` ms."""

    def __init__(self, backend: Backend, clock: ManualClock) -> None:
        self.backend = backend
        self.clock = clock
        self.wanted = 0
        self.refreshed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_add(self, key: str, member: str, *, capacity: int | None = None, **kwargs: Any) -> SetResult:
        at = self.clock()
        result = await self.backend.set_add(key, member, capacity=capacity, **kwargs)
        if capacity is None and at >= self.wanted:  # a refresh, not an admission
            self.refreshed.set()
        return result


async def test_a_live_connection_keeps_its_slots_across_many_lease_periods(
    backend: Backend, clock: ManualClock
) -> None:
    spy = RefreshSpy(backend, clock)
    app = make_app(spy, lease_ms=1_000, heartbeat_ms=1, **LIMITS)
    socket = client(app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    for _ in range(5):
        spy.refreshed.clear()
        spy.wanted = clock.advance(600)
        await asyncio.wait_for(spy.refreshed.wait(), timeout=5)
    assert clock() == 3_000  # three leases long
    await expect_refused(client(app, "/ws/rooms/r/", user=ALICE), "connection_limit_exceeded")
    await socket.disconnect()
    assert await occupancy(backend, ALICE_ID, "r") == Occupancy(identity=0, ip=0, room=0)
