"""MemoryBackend's own behaviour: lazy expiry, the amortised sweep, key_count and clear."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from ratelimit_core import Backend, ManualClock, MemoryBackend
from ratelimit_core.clock import Clock, monotonic_ms
from ratelimit_core.testing import RewindableClock, run_conformance


@pytest.fixture
def memory(clock: ManualClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


async def test_key_count_counts_counters_sets_and_buckets(memory: MemoryBackend) -> None:
    await memory.counter_incr("k")
    await memory.set_add("k", "m")
    await memory.bucket_consume("k", rate=1, burst=2)
    assert memory.key_count() == 3


async def test_calls_that_change_nothing_store_nothing(memory: MemoryBackend) -> None:
    await memory.counter_incr("k", 2, limit=1, window_ms=10)
    await memory.set_add("s", "m", capacity=0)
    await memory.bucket_consume("b", rate=1, burst=2, cost=2)
    await memory.bucket_consume("b2", rate=1, burst=2, cost=2)
    await memory.bucket_consume("b2", rate=1, burst=2, cost=1)  # refused
    await memory.counter_decr("missing")
    await memory.set_remove("missing", "m")
    assert memory.key_count() == 2  # the two allowed bucket consumes


async def test_expired_state_is_dropped_when_touched(memory: MemoryBackend, clock: ManualClock) -> None:
    await memory.counter_incr("k", window_ms=10)
    await memory.set_add("s", "m", lease_ms=10)
    clock.advance(10)
    assert memory.key_count() == 2  # expired, not yet reclaimed
    assert await memory.counter_get("k") == 0
    assert await memory.set_size("s") == 0
    assert memory.key_count() == 0


async def test_a_set_whose_last_member_is_removed_is_dropped(memory: MemoryBackend) -> None:
    await memory.set_add("s", "m")
    await memory.set_remove("s", "m")
    assert memory.key_count() == 0


async def test_sweep_drops_all_expired_state_and_keeps_live_state(memory: MemoryBackend, clock: ManualClock) -> None:
    await memory.counter_incr("expiring", window_ms=10)
    await memory.counter_incr("lasting", window_ms=11)
    await memory.counter_incr("forever")
    await memory.set_add("leased", "m", lease_ms=10)
    await memory.set_add("mixed", "gone", lease_ms=10)
    await memory.set_add("mixed", "stays")
    await memory.bucket_consume("refilled", rate=1000, burst=10, cost=10)  # full again after 10 ms
    await memory.bucket_consume("refilling", rate=1, burst=10, cost=1)
    clock.advance(10)
    assert memory.sweep() == 3
    assert memory.key_count() == 4
    assert await memory.counter_get("lasting") == 1
    assert await memory.counter_get("forever") == 1
    assert await memory.set_members("mixed") == frozenset({"stays"})
    assert (await memory.bucket_consume("refilling", rate=1, burst=10, cost=1)).remaining == 8


async def test_bucket_state_lasts_exactly_until_the_bucket_is_full(memory: MemoryBackend, clock: ManualClock) -> None:
    result = await memory.bucket_consume("b", rate=0.3, burst=2, cost=1)
    clock.advance(result.reset_after_ms - 1)
    assert memory.sweep() == 0
    clock.advance(1)
    assert memory.sweep() == 1
    assert memory.key_count() == 0


async def test_after_a_step_back_a_refused_bucket_lasts_until_full_from_now() -> None:
    """The refusal re-bases the state, so its expiry is the reset_after_ms it reported, not 600 s later."""
    clock = RewindableClock(10**6)
    memory = MemoryBackend(clock=clock)
    await memory.bucket_consume("b", rate=1, burst=2, cost=2)
    clock.rewind(600_000)
    refused = await memory.bucket_consume("b", rate=1, burst=2, cost=1)
    assert (refused.allowed, refused.reset_after_ms) == (False, 2_000)
    clock.advance(1_999)
    assert memory.sweep() == 0
    clock.advance(1)
    assert memory.sweep() == 1
    assert memory.key_count() == 0


async def test_later_writes_reclaim_idle_expired_keys_without_touching_them(
    memory: MemoryBackend, clock: ManualClock
) -> None:
    for i in range(20):
        await memory.counter_incr(f"idle{i}", window_ms=5)
        await memory.set_add(f"idle{i}", "m", lease_ms=5)
        await memory.bucket_consume(f"idle{i}", rate=1000, burst=5, cost=5)
    clock.advance(5)
    for _ in range(200):  # bounded: a handful of sweep periods
        await memory.set_add("busy", "m")
    assert memory.key_count() == 1


class SweepingAfterEveryCall:
    """A MemoryBackend that sweeps everything after every call."""

    def __init__(self, clock: Clock) -> None:
        self.memory = MemoryBackend(clock=clock)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.memory, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            self.memory.sweep()
            return result

        return call


def test_sweeping_never_changes_an_answer() -> None:
    run_conformance(lambda clock: cast(Backend, SweepingAfterEveryCall(clock)))


async def test_the_sweep_looks_at_a_bounded_batch(memory: MemoryBackend, clock: ManualClock) -> None:
    for i in range(10):
        await memory.counter_incr(f"k{i}", window_ms=1)
    clock.advance(1)
    assert memory.sweep(batch=4) == 4
    assert memory.key_count() == 6


async def test_clear_forgets_everything(memory: MemoryBackend) -> None:
    await memory.counter_incr("k", 3)
    await memory.set_add("s", "m")
    await memory.bucket_consume("b", rate=1, burst=2)
    await memory.clear()
    assert memory.key_count() == 0
    assert await memory.counter_get("k") == 0
    assert (await memory.bucket_consume("b", rate=1, burst=2)).remaining == 1


async def test_each_memory_backend_has_storage_of_its_own_whatever_the_prefix(clock: ManualClock) -> None:
    first, second = MemoryBackend(clock=clock, prefix="a:"), MemoryBackend(clock=clock, prefix="a:")
    await first.counter_incr("k")
    assert await second.counter_get("k") == 0


def test_default_clock_is_the_monotonic_clock() -> None:
    assert MemoryBackend().clock is monotonic_ms


def test_repr_names_prefix_and_key_count() -> None:
    assert repr(MemoryBackend(prefix="x:")) == "MemoryBackend(prefix='x:', keys=0)"


async def test_a_member_refreshed_many_times_keeps_the_set_small(memory: MemoryBackend, clock: ManualClock) -> None:
    # Each refresh leaves its earlier lease end behind; the set is rebuilt before those outnumber the members.
    for _ in range(10_000):
        clock.advance(1)
        await memory.set_add("room", "m", lease_ms=60_000)
    leased = memory._sets["room"]
    assert len(leased.heap) <= 2 * len(leased.ends) + 16
    clock.advance(60_000 - 1)
    assert await memory.set_members("room") == {"m"}  # its last lease ends one ms later
    clock.advance(1)
    assert await memory.set_size("room") == 0


async def test_a_lease_shortened_by_a_clock_step_back_ends_at_its_new_end() -> None:
    clock = RewindableClock(10_000)
    memory = MemoryBackend(clock=clock)
    await memory.set_add("room", "m", lease_ms=5_000)  # ends at 15,000
    clock.rewind(9_000)
    await memory.set_add("room", "m", lease_ms=5_000)  # refreshed under the earlier clock: ends at 6,000
    await memory.set_add("room", "n")  # permanent
    clock.advance(4_999)
    assert await memory.set_members("room") == {"m", "n"}
    clock.advance(1)
    assert await memory.set_members("room") == {"n"}
