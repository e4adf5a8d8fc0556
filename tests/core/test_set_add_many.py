"""`set_add_many` (the optional `AddsMany`): each add as `set_add` would make it, in one call, on every backend.

Through `FallbackBackend` too: an outage during the call leaves each add taken
locally, and a primary that answers a long call in parts (`ShowsProgress`) is not
taken for a silent one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from ratelimit_core import (
    Backend,
    BackendError,
    BackendUnavailable,
    FallbackBackend,
    InvalidArgument,
    ManualClock,
    MemoryBackend,
    SetResult,
)
from ratelimit_core.backend import AddsMany, ShowsProgress, add_many
from support.backends import NewBackend

MEMBERS = [("room:1", "a"), ("room:1", "b"), ("user:7", "a"), ("room:1", "a"), ("ip:1", "c")]


async def test_each_add_is_what_set_add_of_it_would_be(new_backend: NewBackend, clock: ManualClock) -> None:
    one_by_one = new_backend(clock=clock, prefix="one:")
    together = new_backend(clock=clock, prefix="many:")
    assert isinstance(together, AddsMany)
    for backend in (one_by_one, together):
        await backend.set_add("room:1", "old", lease_ms=500)
        await backend.set_add("room:1", "permanent")
    clock.advance(600)  # "old" expired; the adds below see it gone
    expected = [await one_by_one.set_add(key, member, lease_ms=1_000) for key, member in MEMBERS]
    assert await together.set_add_many(MEMBERS, lease_ms=1_000) == expected
    assert await together.set_members("room:1") == {"a", "b", "permanent"}
    clock.advance(1_000)  # the leases given end; the permanent member stays
    assert await together.set_members("room:1") == {"permanent"}
    assert await together.set_size("user:7") == 0


async def test_bad_arguments_raise_before_anything_is_written(backend: Backend) -> None:
    assert isinstance(backend, AddsMany)
    with pytest.raises(InvalidArgument, match="lease_ms"):
        await backend.set_add_many([("k", "m")], lease_ms=0)
    with pytest.raises(InvalidArgument, match="member"):
        await backend.set_add_many([("k", "m"), ("k", 7)], lease_ms=1_000)  # type: ignore[list-item]
    assert await backend.set_size("k") == 0
    assert await backend.set_add_many([], lease_ms=1_000) == []


class WithoutMany:
    """Only the `Backend` protocol (no `set_add_many`), as a custom backend may be."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.adds = 0

    def __getattr__(self, name: str) -> Any:
        if name == "set_add_many":
            raise AttributeError(name)
        return getattr(self.backend, name)

    async def set_add(self, key: str, member: str, **options: Any) -> SetResult:
        self.adds += 1
        if key == "broken":
            raise BackendError("WRONGTYPE (test)")
        return await self.backend.set_add(key, member, **options)


async def test_a_backend_without_it_gets_one_set_add_per_member_and_each_its_own_failure() -> None:
    plain = WithoutMany(MemoryBackend())
    assert not isinstance(plain, AddsMany)
    outcomes = await add_many(plain, [("a", "1"), ("broken", "1"), ("a", "2")], 1_000)  # type: ignore[arg-type]
    assert plain.adds == 3
    assert outcomes[0] == SetResult(True, 1)
    assert isinstance(outcomes[1], BackendError)
    assert outcomes[2] == SetResult(True, 2)


class Primary:
    """A MemoryBackend behind a switch: ``down`` refuses, ``lost-some`` loses all replies but the first, and
    `set_add_many` answers after `delay_s` (counting a reply every 10 ms meanwhile, see `ProgressivePrimary`)."""

    def __init__(self, clock: ManualClock) -> None:
        self.store = MemoryBackend(clock=clock)
        self.state = "up"
        self.delay_s = 0.0
        self.replies = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        if self.state == "down":
            raise BackendUnavailable("connection refused (test)")
        if self.state == "lost-some":  # the connection broke after the first reply
            results: list[SetResult | BackendError] = [await self.store.set_add(*members[0], lease_ms=lease_ms)]
            return results + [BackendUnavailable("connection lost (test)")] * (len(members) - 1)
        for _ in range(round(self.delay_s / 0.01)):
            await asyncio.sleep(0.01)
            self.replies += 1
        return await self.store.set_add_many(members, lease_ms=lease_ms)


class ProgressivePrimary(Primary):
    """A `Primary` that shows its progress (`ShowsProgress`)."""

    @property
    def replies_read(self) -> int:
        return self.replies


def _make(clock: ManualClock, *, shows_progress: bool = True) -> Primary:
    return ProgressivePrimary(clock) if shows_progress else Primary(clock)


def _fallback(primary: Primary, clock: ManualClock, **options: Any) -> FallbackBackend:
    return FallbackBackend(primary, MemoryBackend(clock=clock), clock=clock, **options)  # type: ignore[arg-type]


async def test_through_the_fallback_an_outage_leaves_every_add_taken_locally_and_written_back_later(
    clock: ManualClock,
) -> None:
    primary = _make(clock)
    backend = _fallback(primary, clock, cooldown_ms=1_000)
    assert [result.degraded for result in await backend.set_add_many(MEMBERS, lease_ms=60_000)] == [False] * 5
    primary.state = "down"
    results = await backend.set_add_many([*MEMBERS, ("room:1", "new")], lease_ms=60_000)
    assert all(isinstance(result, SetResult) and result.added and result.degraded for result in results)
    assert backend.degraded
    primary.state = "up"
    clock.advance(1_000)
    assert not (await backend.set_add("probe", "p")).degraded  # the probe's recovery writes back what was taken
    assert await primary.store.set_members("room:1") == {"a", "b", "new"}


async def test_through_the_fallback_a_connection_lost_midway_opens_the_breaker_for_the_adds_it_took(
    clock: ManualClock,
) -> None:
    primary = _make(clock)
    backend = _fallback(primary, clock)
    primary.state = "lost-some"
    results = await backend.set_add_many([("room:1", "a"), ("room:1", "b")], lease_ms=60_000)
    assert [(result.added, result.degraded) for result in results if isinstance(result, SetResult)] == [
        (True, False),
        (True, True),
    ]
    assert backend.degraded


@pytest.mark.parametrize("shows_progress", [True, False])
async def test_a_long_call_answered_in_parts_is_no_outage_and_a_silent_one_is(
    clock: ManualClock, shows_progress: bool
) -> None:
    primary = _make(clock, shows_progress=shows_progress)
    backend = _fallback(primary, clock, timeout_ms=50)
    await backend.set_add_many(MEMBERS, lease_ms=60_000)  # answered once: the watchdog is warm
    assert isinstance(primary, ShowsProgress) is shows_progress
    primary.delay_s = 0.3  # six times the timeout, with a reply every 10 ms when it shows progress
    results = await backend.set_add_many(MEMBERS, lease_ms=60_000)
    assert backend.degraded is not shows_progress
    assert all(isinstance(result, SetResult) and result.degraded is not shows_progress for result in results)
