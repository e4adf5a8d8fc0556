"""The edge cases the Backend contract pins, on every backend (the `backend` fixture).

The conformance state machine explores random sequences; these are the cases
written down once, so a regression names the rule it breaks.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ratelimit_core import Backend, BucketResult, CounterResult, ManualClock, SetResult
from support.backends import NewBackend

# -- counters ---------------------------------------------------------------------------


async def test_refused_incr_on_a_missing_key_creates_nothing(backend: Backend, clock: ManualClock) -> None:
    assert await backend.counter_incr("k", 5, limit=4, window_ms=10) == CounterResult(False, 0, None)
    assert await backend.counter_get("k") == 0
    clock.advance(5)
    # Had the refusal created the key, this window would have started 5 ms ago.
    assert await backend.counter_incr("k", 1, window_ms=10) == CounterResult(True, 1, 10)


async def test_limit_zero_refuses_every_increment(backend: Backend) -> None:
    assert await backend.counter_incr("k", 1, limit=0) == CounterResult(False, 0, None)


async def test_incr_up_to_the_limit_is_allowed_and_past_it_changes_nothing(backend: Backend) -> None:
    assert await backend.counter_incr("k", 3, limit=4) == CounterResult(True, 3, None)
    assert await backend.counter_incr("k", 1, limit=4) == CounterResult(True, 4, None)
    assert await backend.counter_incr("k", 1, limit=4) == CounterResult(False, 4, None)
    assert await backend.counter_get("k") == 4


async def test_window_given_for_an_existing_key_keeps_the_original_window(backend: Backend, clock: ManualClock) -> None:
    assert await backend.counter_incr("k", window_ms=10) == CounterResult(True, 1, 10)
    clock.advance(4)
    assert await backend.counter_incr("k", window_ms=1_000) == CounterResult(True, 2, 6)
    assert await backend.counter_incr("k") == CounterResult(True, 3, 6)
    clock.advance(6)
    assert await backend.counter_get("k") == 0


async def test_window_ends_at_its_expiry_instant(backend: Backend, clock: ManualClock) -> None:
    await backend.counter_incr("k", 2, window_ms=10)
    clock.advance(9)
    assert await backend.counter_get("k") == 2
    clock.advance(1)
    assert await backend.counter_get("k") == 0
    assert await backend.counter_incr("k", window_ms=10) == CounterResult(True, 1, 10)


async def test_refused_incr_reports_the_time_left_in_the_window(backend: Backend, clock: ManualClock) -> None:
    await backend.counter_incr("k", 2, window_ms=10)
    clock.advance(3)
    assert await backend.counter_incr("k", 1, limit=2) == CounterResult(False, 2, 7)


async def test_decr_keeps_the_window(backend: Backend, clock: ManualClock) -> None:
    await backend.counter_incr("k", 3, window_ms=10)
    clock.advance(4)
    assert await backend.counter_decr("k") == 2
    assert await backend.counter_incr("k") == CounterResult(True, 3, 6)
    clock.advance(6)
    assert await backend.counter_get("k") == 0


async def test_decr_never_goes_below_zero_and_removes_the_key(backend: Backend, clock: ManualClock) -> None:
    await backend.counter_incr("k", 2, window_ms=10)
    assert await backend.counter_decr("k", 5) == 0
    clock.advance(3)
    # Removed with its window: the next increment starts a new one.
    assert await backend.counter_incr("k", window_ms=100) == CounterResult(True, 1, 100)
    assert await backend.counter_decr("missing") == 0
    assert await backend.counter_get("missing") == 0


async def test_counter_without_window_never_expires(backend: Backend, clock: ManualClock) -> None:
    await backend.counter_incr("k", 7)
    clock.advance(10**15)
    assert await backend.counter_incr("k") == CounterResult(True, 8, None)


async def test_counter_stays_exact_past_two_to_the_53(backend: Backend) -> None:
    for _ in range(10):
        await backend.counter_incr("k", 10**15)
    assert await backend.counter_incr("k", 1) == CounterResult(True, 10**16 + 1, None)
    assert await backend.counter_decr("k", 1) == 10**16


# -- bounded sets with leases ---------------------------------------------------------------


async def test_lease_ends_at_its_expiry_instant(backend: Backend, clock: ManualClock) -> None:
    assert await backend.set_add("s", "m", lease_ms=10) == SetResult(True, 1)
    clock.advance(9)
    assert await backend.set_members("s") == frozenset({"m"})
    clock.advance(1)
    assert await backend.set_size("s") == 0
    assert await backend.set_members("s") == frozenset()


async def test_expired_member_no_longer_counts_against_capacity(backend: Backend, clock: ManualClock) -> None:
    await backend.set_add("s", "a", capacity=1, lease_ms=10)
    assert await backend.set_add("s", "b", capacity=1, lease_ms=10) == SetResult(False, 1)
    clock.advance(10)
    assert await backend.set_add("s", "b", capacity=1, lease_ms=10) == SetResult(True, 1)
    assert await backend.set_members("s") == frozenset({"b"})


async def test_refused_new_member_changes_nothing(backend: Backend) -> None:
    await backend.set_add("s", "a", capacity=1)
    assert await backend.set_add("s", "b", capacity=1) == SetResult(False, 1)
    assert await backend.set_members("s") == frozenset({"a"})


async def test_capacity_zero_refuses_every_new_member(backend: Backend) -> None:
    assert await backend.set_add("s", "a", capacity=0) == SetResult(False, 0)
    assert await backend.set_size("s") == 0


async def test_present_member_is_accepted_over_capacity_and_its_lease_refreshed(
    backend: Backend, clock: ManualClock
) -> None:
    await backend.set_add("s", "a", lease_ms=10)
    await backend.set_add("s", "b", lease_ms=100)
    clock.advance(5)
    assert await backend.set_add("s", "a", capacity=1, lease_ms=10) == SetResult(True, 2)
    clock.advance(9)
    assert await backend.set_members("s") == frozenset({"a", "b"})
    clock.advance(1)
    assert await backend.set_members("s") == frozenset({"b"})


async def test_lease_none_makes_a_leased_member_permanent(backend: Backend, clock: ManualClock) -> None:
    await backend.set_add("s", "m", lease_ms=5)
    assert await backend.set_add("s", "m") == SetResult(True, 1)
    clock.advance(10**15)
    assert await backend.set_members("s") == frozenset({"m"})


async def test_a_lease_on_a_permanent_member_makes_it_expire(backend: Backend, clock: ManualClock) -> None:
    await backend.set_add("s", "m")
    await backend.set_add("s", "m", lease_ms=5)
    clock.advance(5)
    assert await backend.set_size("s") == 0


async def test_set_remove_returns_the_size_after_and_ignores_absent_members(backend: Backend) -> None:
    await backend.set_add("s", "a")
    await backend.set_add("s", "b")
    assert await backend.set_remove("s", "a") == 1
    assert await backend.set_remove("s", "a") == 1
    assert await backend.set_remove("s", "b") == 0
    assert await backend.set_remove("missing", "a") == 0


# -- token buckets ---------------------------------------------------------------------------


async def test_new_bucket_is_full(backend: Backend) -> None:
    assert await backend.bucket_consume("b", rate=1, burst=5, cost=5) == BucketResult(True, 0, 0, 5_000)


async def test_refused_consume_takes_nothing(backend: Backend, clock: ManualClock) -> None:
    await backend.bucket_consume("b", rate=1, burst=3, cost=2)
    assert await backend.bucket_consume("b", rate=1, burst=3, cost=2) == BucketResult(False, 1, 1_000, 2_000)
    assert await backend.bucket_consume("b", rate=1, burst=3, cost=1) == BucketResult(True, 0, 0, 3_000)


async def test_bucket_is_full_again_after_reset_after_ms(backend: Backend, clock: ManualClock) -> None:
    first = await backend.bucket_consume("b", rate=2, burst=4, cost=3)
    assert first == BucketResult(True, 1, 0, 1_500)
    clock.advance(first.reset_after_ms)
    assert await backend.bucket_consume("b", rate=2, burst=4, cost=1) == BucketResult(True, 3, 0, 500)


# -- keys -----------------------------------------------------------------------------------

ODD_KEYS = ["", " ", "a b", "a:b", ":", "{a}", "{", "}", "#", "#a", "*", "é", "键🔑", "\x00", "\ud800"]


async def test_odd_keys_are_valid_and_never_share_state(backend: Backend) -> None:
    for amount, key in enumerate(ODD_KEYS, start=1):
        await backend.counter_incr(key, amount)
    assert [await backend.counter_get(key) for key in ODD_KEYS] == list(range(1, len(ODD_KEYS) + 1))


@pytest.mark.parametrize("char", ["k", "é", "🔑"])
async def test_ten_kilobyte_keys_and_members_work_and_stay_distinct(backend: Backend, char: str) -> None:
    long = char * (10_240 // len(char.encode()))
    await backend.counter_incr(long, 1)
    await backend.counter_incr(long[:-1], 2)
    assert (await backend.counter_get(long), await backend.counter_get(long[:-1])) == (1, 2)
    await backend.set_add(long, long)
    await backend.set_add(long, long[:-1])
    assert await backend.set_members(long) == frozenset({long, long[:-1]})
    assert (await backend.bucket_consume(long, rate=1, burst=2)).remaining == 1
    assert (await backend.bucket_consume(long[:-1], rate=1, burst=2)).remaining == 1


async def test_members_round_trip_exactly(backend: Backend) -> None:
    for member in ODD_KEYS:
        await backend.set_add("s", member)
    assert await backend.set_members("s") == frozenset(ODD_KEYS)


async def test_counter_set_and_bucket_with_one_key_never_share_state(backend: Backend) -> None:
    await backend.counter_incr("k", 5)
    await backend.set_add("k", "m")
    assert (await backend.bucket_consume("k", rate=1, burst=3)).remaining == 2
    assert await backend.counter_get("k") == 5
    assert await backend.set_members("k") == frozenset({"m"})


async def test_keys_are_isolated_by_prefix(new_backend: NewBackend, clock: ManualClock) -> None:
    first, second = new_backend(clock, "pa:"), new_backend(clock, "pb:")
    await first.counter_incr("k", 1)
    await second.counter_incr("k", 2)
    await first.set_add("s", "a")
    assert (await first.counter_get("k"), await second.counter_get("k")) == (1, 2)
    assert await second.set_size("s") == 0
    await second.clear()
    assert await first.counter_get("k") == 1
    assert await first.set_members("s") == frozenset({"a"})


async def test_clear_deletes_every_key_of_the_backend(backend: Backend) -> None:
    await backend.counter_incr("k")
    await backend.set_add("s", "m")
    await backend.bucket_consume("b", rate=1, burst=2)
    await backend.clear()
    assert await backend.counter_get("k") == 0
    assert await backend.set_size("s") == 0
    assert (await backend.bucket_consume("b", rate=1, burst=2)).remaining == 1


# -- atomicity and lifecycle ---------------------------------------------------------------


async def test_concurrent_increments_never_pass_the_limit(backend: Backend) -> None:
    results = await asyncio.gather(*(backend.counter_incr("k", limit=10) for _ in range(40)))
    assert sum(result.allowed for result in results) == 10
    assert await backend.counter_get("k") == 10


async def test_concurrent_adds_never_pass_the_capacity(backend: Backend) -> None:
    results = await asyncio.gather(*(backend.set_add("s", f"m{i}", capacity=5) for i in range(20)))
    assert sum(result.added for result in results) == 5
    assert await backend.set_size("s") == 5


async def test_concurrent_consumes_never_take_more_than_the_burst(backend: Backend) -> None:
    results = await asyncio.gather(*(backend.bucket_consume("b", rate=0.001, burst=7) for _ in range(20)))
    assert sum(result.allowed for result in results) == 7


async def test_ping_answers_inside_async_with(new_backend: NewBackend) -> None:
    async with new_backend() as backend:
        await backend.ping()


def test_results_are_immutable_values() -> None:
    assert CounterResult(True, 1, None) == CounterResult(True, 1, None)
    assert SetResult(True, 1) != SetResult(False, 1)
    assert BucketResult(True, 0, 0, 5) == BucketResult(True, 0, 0, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CounterResult(True, 1, None).value = 2  # type: ignore[misc]
