"""Leases: refresh and release are serialised, and release never raises for storage failures."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ratelimit_core import Backend, BackendUnavailable, SetResult
from ratelimit_core.policies import Leases
from ratelimit_core.policies.leases import Slot


class HeldSetAdd:
    """Delegates to a backend, but each `set_add` waits until `go` is set."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_add(self, key: str, member: str, **kwargs: Any) -> SetResult:
        self.started.set()
        await self.go.wait()
        return await self.backend.set_add(key, member, **kwargs)


async def test_a_refresh_in_flight_finishes_before_release_and_cannot_revive_the_slot(backend: Backend) -> None:
    held = HeldSetAdd(backend)
    leases = Leases(held, [Slot("conn:x", "m1")], lease_ms=60_000)
    refresh = asyncio.create_task(leases.refresh())
    await held.started.wait()
    release = asyncio.create_task(leases.release())
    await asyncio.sleep(0)
    assert not release.done()
    held.go.set()
    assert await refresh is True
    await release
    assert await backend.set_size("conn:x") == 0
    assert await leases.refresh() is False
    assert await backend.set_size("conn:x") == 0


class FailingRemove:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_remove(self, key: str, member: str) -> int:
        if key == "conn:a":
            raise BackendUnavailable("down")
        return await self.backend.set_remove(key, member)


async def test_release_logs_a_failed_removal_and_still_removes_the_others(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    for key in ("conn:a", "conn:b"):
        await backend.set_add(key, "m", lease_ms=1_000)
    leases = Leases(FailingRemove(backend), [Slot("conn:a", "m"), Slot("conn:b", "m")], 1_000)
    with caplog.at_level(logging.WARNING, logger="ratelimit_core.policies.leases"):
        await leases.release()
    assert "conn:a" in caplog.text
    assert (await backend.set_size("conn:a"), await backend.set_size("conn:b")) == (1, 0)
    assert leases.released
