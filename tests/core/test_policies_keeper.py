"""LeaseKeeper: one task refreshes every held lease together, survives failures, and stops when it holds none."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from ratelimit_core import Backend, BackendError, BackendUnavailable, InvalidArgument, ManualClock, SetResult
from ratelimit_core.backend import add_many
from ratelimit_core.policies import LeaseKeeper, Leases
from ratelimit_core.policies.leases import Slot
from support.held_calls import HeldCalls, calls_to


class Writes:
    """Delegates to a backend, counting `set_add` per key; raises `failure` from it while that is set."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.adds: Counter[str] = Counter()
        self.failure: BaseException | None = None
        self.written = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_add(self, key: str, member: str, **kwargs: Any) -> SetResult:
        self.adds[key] += 1
        self.written.set()
        if self.failure is not None:
            raise self.failure
        return await self.backend.set_add(key, member, **kwargs)

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        """The keeper's one call per heartbeat: counted per key, failing as a whole while `failure` is set."""
        for key, _ in members:
            self.adds[key] += 1
        self.written.set()
        if self.failure is not None:
            raise self.failure
        return await add_many(self.backend, members, lease_ms)


async def held(backend: Backend, name: str, slots: int = 2) -> Leases:
    taken = [Slot(f"conn:{name}:{n}", name) for n in range(slots)]
    for slot in taken:
        await backend.set_add(slot.key, slot.member, lease_ms=1_000)
    return Leases(backend, taken, lease_ms=1_000)


async def ticks(keeper: LeaseKeeper, count: int) -> None:
    """Wait (bounded) until the keeper has made `count` more refreshes."""
    target = keeper.refreshes + count
    for _ in range(1_000):
        if keeper.refreshes >= target:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the keeper made {keeper.refreshes} refreshes, expected {target}")


def keeper_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "ratelimit lease keeper" and not task.done()]


async def test_one_task_refreshes_every_held_lease_at_each_tick_and_stops_with_the_last(backend: Backend) -> None:
    writes = Writes(backend)
    keeper = LeaseKeeper(10)
    connections = [await held(writes, f"c{n}") for n in range(20)]
    writes.adds.clear()
    for leases in connections:
        keeper.keep(leases)
    assert len(keeper_tasks()) == 1
    await ticks(keeper, 3)
    await asyncio.sleep(0)  # the last tick's writes, issued together
    assert len(writes.adds) == 40
    for leases in connections:
        keeper.forget(leases)
        await leases.release()
    await asyncio.sleep(0)
    assert keeper_tasks() == []
    assert len(keeper) == 0


async def test_a_released_lease_is_dropped_and_never_written_again(backend: Backend) -> None:
    writes = Writes(backend)
    keeper = LeaseKeeper(5)
    stays, goes = await held(writes, "stays"), await held(writes, "goes")
    keeper.keep(stays)
    keeper.keep(goes)
    await ticks(keeper, 1)
    await goes.release()  # released without `forget`: the keeper notices at its next tick
    before = writes.adds["conn:goes:0"]
    await ticks(keeper, 3)
    assert writes.adds["conn:goes:0"] == before
    assert len(keeper) == 1
    assert await backend.set_size("conn:goes:0") == 0
    await keeper.aclose()
    assert keeper_tasks() == []


async def test_a_failing_refresh_is_logged_and_retried_at_the_next_tick(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    writes = Writes(backend)
    keeper = LeaseKeeper(5)
    leases = await held(writes, "x")
    keeper.keep(leases)
    with caplog.at_level(logging.WARNING):
        writes.failure = BackendUnavailable("connection refused (test)")
        await ticks(keeper, 2)
        writes.failure = RuntimeError("a bug below (test)")
        await ticks(keeper, 2)
    assert "could not refresh the leases of 1 connection(s) (retrying at the next heartbeat)" in caplog.text
    assert "a bug below (test)" in caplog.text
    writes.failure = None
    writes.written.clear()
    await ticks(keeper, 2)
    assert writes.written.is_set()
    assert len(keeper_tasks()) == 1, "the keeper outlived both failures"
    await keeper.aclose()
    await leases.release()


async def test_an_expired_slot_of_a_kept_lease_comes_back_without_a_capacity_check(
    backend: Backend, clock: ManualClock
) -> None:
    leases = await held(backend, "x", slots=1)
    clock.advance(1_000)  # expired (say the loop stalled); someone else fills the set meanwhile
    await backend.set_add("conn:x:0", "other", capacity=1, lease_ms=60_000)
    keeper = LeaseKeeper(5)
    keeper.keep(leases)
    await ticks(keeper, 1)
    await asyncio.sleep(0)
    assert await backend.set_members("conn:x:0") == {"x", "other"}
    keeper.forget(leases)
    await leases.release()


async def test_release_all_waits_for_the_refresh_in_flight_and_nothing_comes_back(backend: Backend) -> None:
    storage = HeldCalls(backend)
    connections = [await held(storage, f"c{n}") for n in range(5)]
    gate = storage.hold(calls_to("set_add", "conn:c3:"))
    keeper = LeaseKeeper(5)
    for leases in connections:
        keeper.keep(leases)
    await asyncio.wait_for(gate.started.wait(), timeout=10)  # a refresh is held in storage
    release = asyncio.create_task(keeper.release_all())
    await asyncio.sleep(0.05)
    assert not release.done(), "the release of c3 waits for its refresh"
    gate.go.set()
    assert await asyncio.wait_for(release, timeout=10) == 0
    await storage.settle()
    for n in range(5):
        assert await backend.set_size(f"conn:c{n}:0") == 0
    assert storage.removals == {(f"conn:c{n}:{s}", f"c{n}"): 1 for n in range(5) for s in range(2)}
    assert keeper_tasks() == []


async def test_a_refresh_in_flight_counts_as_started_not_as_made(backend: Backend) -> None:
    """`refreshes_started` is ahead of `refreshes` by the refresh in flight, and only by it."""
    storage = HeldCalls(backend)
    connection = await held(storage, "c")
    gate = storage.hold(calls_to("set_add", "conn:c:"))
    keeper = LeaseKeeper(5)
    keeper.keep(connection)
    await asyncio.wait_for(gate.started.wait(), timeout=10)  # the first refresh is held in storage
    assert (keeper.refreshes_started, keeper.refreshes) == (1, 0)
    gate.go.set()
    await ticks(keeper, 1)
    assert keeper.refreshes_started - keeper.refreshes in (0, 1)  # the next one may have begun meanwhile
    keeper.forget(connection)
    await connection.release()
    await storage.settle()


async def test_release_all_reports_what_did_not_finish_in_time_and_finishes_it_later(backend: Backend) -> None:
    storage = HeldCalls(backend)
    slow = await held(storage, "slow")
    gate = storage.hold(calls_to("set_remove"))
    keeper = LeaseKeeper(60_000)
    keeper.keep(slow)
    assert await keeper.release_all(timeout_s=0.05) == 1
    gate.go.set()
    await storage.settle()
    assert slow.released
    assert await backend.set_size("conn:slow:0") == 0


def test_bad_arguments_are_refused_naming_them() -> None:
    with pytest.raises(InvalidArgument, match="interval_ms"):
        LeaseKeeper(0)
    with pytest.raises(InvalidArgument, match="jitter"):
        LeaseKeeper(1_000, jitter=1.0)
    assert LeaseKeeper(1_000, jitter=0).interval_ms == 1_000


async def test_each_interval_is_shortened_by_the_jitter_and_never_longer(backend: Backend) -> None:
    draws = iter([0.0, 0.5, 0.999] * 10)
    keeper = LeaseKeeper(40, jitter=0.5, rng=lambda: next(draws))
    leases = await held(backend, "x")
    loop = asyncio.get_running_loop()
    started = loop.time()
    keeper.keep(leases)
    await ticks(keeper, 3)
    elapsed = loop.time() - started
    # 40 + 30 + 20 ms at the least; far less than three full intervals would add up to on an idle loop is not
    # asserted (a busy machine runs late), only the lower bound, which a wrong jitter would break.
    assert elapsed >= 0.089
    await keeper.aclose()
    await leases.release()


class SlowWrites(Writes):
    """`Writes` whose heartbeat call takes `delay_s` (a large process on a loaded machine)."""

    delay_s = 0.09

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        await asyncio.sleep(self.delay_s)
        return await super().set_add_many(members, lease_ms=lease_ms)


async def test_a_slow_refresh_does_not_stretch_the_period_between_ticks(backend: Backend) -> None:
    writes = SlowWrites(backend)
    keeper = LeaseKeeper(100, jitter=0)
    leases = await held(writes, "x")
    keeper.keep(leases)
    await asyncio.sleep(2.0)
    made = keeper.refreshes
    await keeper.aclose()
    await leases.release()
    # Ticks 100 ms apart from start to start: about 20 in 2 s. Spaced from the end of each 90 ms refresh
    # instead, they would be about 10; a loaded machine runs each sleep late, which the spacing absorbs.
    assert made >= 15
