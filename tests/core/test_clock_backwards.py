"""A clock that steps backwards never makes a bucket refuse for longer than its retry_after_ms says.

The scenario of the issue: rate 1/s, burst 1, the bucket drained, then the clock steps
back 600 s (an NTP step; a failover to a Redis server whose clock is behind). A refusal
used to store nothing, so the bucket stayed empty until the clock caught up, refusing
for ten minutes while each refusal said 1000 ms. Every backend runs these tests on a
`RewindableClock`; the last tests show the same with Redis's own TIME.
"""

from __future__ import annotations

import time

import pytest

from ratelimit_core import Backend, BucketResult, ManualClock
from ratelimit_core.testing import RewindableClock
from support.backends import REDIS_BACKENDS, NewBackend, backends

STEP_BACK_MS = 600_000
START_MS = 10**9


@pytest.fixture
def clock() -> RewindableClock:
    """Overrides the suite's `clock`, so the `backend` fixture runs on a clock that can step back."""
    return RewindableClock(START_MS)


async def _drained(backend: Backend, clock: RewindableClock) -> None:
    assert await backend.bucket_consume("b", rate=1, burst=1) == BucketResult(True, 0, 0, 1_000)
    clock.rewind(STEP_BACK_MS)


async def test_after_a_step_back_the_reported_wait_is_honoured(backend: Backend, clock: RewindableClock) -> None:
    await _drained(backend, clock)
    assert await backend.bucket_consume("b", rate=1, burst=1) == BucketResult(False, 0, 1_000, 1_000)
    clock.advance(999)
    assert await backend.bucket_consume("b", rate=1, burst=1) == BucketResult(False, 0, 1, 1)
    clock.advance(1)
    assert await backend.bucket_consume("b", rate=1, burst=1) == BucketResult(True, 0, 0, 1_000)


async def test_every_refusal_after_a_step_back_is_honoured(backend: Backend, clock: RewindableClock) -> None:
    """Refused at every instant of the wait, the bucket still passes when the first refusal said."""
    await _drained(backend, clock)
    for waited in range(0, 1_000, 100):
        refused = await backend.bucket_consume("b", rate=1, burst=1)
        assert refused == BucketResult(False, 0, 1_000 - waited, 1_000 - waited), waited
        clock.advance(100)
    assert (await backend.bucket_consume("b", rate=1, burst=1)).allowed


async def test_a_peek_after_a_step_back_is_honoured_too(backend: Backend, clock: RewindableClock) -> None:
    await _drained(backend, clock)
    peeked = await backend.bucket_peek("b", rate=1, burst=1)
    assert peeked == BucketResult(False, 0, 1_000, 1_000)
    clock.advance(peeked.retry_after_ms)
    assert await backend.bucket_peek("b", rate=1, burst=1) == BucketResult(True, 1, 0, 0)
    assert (await backend.bucket_consume("b", rate=1, burst=1)).allowed


async def test_a_step_back_makes_no_tokens_and_never_overfills(backend: Backend, clock: RewindableClock) -> None:
    # Burst 5 at 1/s: 3 taken at START, 1 s later 3 are there; then the clock steps back.
    await backend.bucket_consume("b", rate=1, burst=5, cost=3)
    clock.advance(1_000)
    assert await backend.bucket_peek("b", rate=1, burst=5) == BucketResult(True, 3, 0, 2_000)
    clock.rewind(STEP_BACK_MS)
    # The 1 s before the step is not refilled, nor is anything before the step: 2 tokens.
    assert await backend.bucket_peek("b", rate=1, burst=5, cost=3) == BucketResult(False, 2, 1_000, 3_000)
    clock.advance(3_000)
    assert await backend.bucket_peek("b", rate=1, burst=5) == BucketResult(True, 5, 0, 0)
    clock.advance(10 * STEP_BACK_MS)
    assert await backend.bucket_consume("b", rate=1, burst=5, cost=5) == BucketResult(True, 0, 0, 5_000)


async def test_a_step_back_within_the_refill_keeps_the_level(backend: Backend, clock: RewindableClock) -> None:
    """Stepping back by less than the time since the last update: still no refill until now catches up."""
    await backend.bucket_consume("b", rate=1000, burst=10, cost=10)
    clock.rewind(5)
    assert await backend.bucket_consume("b", rate=1000, burst=10, cost=3) == BucketResult(False, 0, 3, 10)
    clock.advance(3)
    assert await backend.bucket_consume("b", rate=1000, burst=10, cost=3) == BucketResult(True, 0, 0, 10)


async def test_a_counter_window_ends_when_its_reset_after_says(backend: Backend, clock: RewindableClock) -> None:
    """A window ends at a fixed instant: after a step back it is further away, and says so."""
    await backend.counter_incr("c", limit=1, window_ms=1_000)
    clock.rewind(STEP_BACK_MS)
    refused = await backend.counter_incr("c", limit=1, window_ms=1_000)
    assert refused.reset_after_ms == STEP_BACK_MS + 1_000
    assert not refused.allowed
    clock.advance(STEP_BACK_MS + 999)
    assert not (await backend.counter_incr("c", limit=1, window_ms=1_000)).allowed
    clock.advance(1)
    assert (await backend.counter_incr("c", limit=1, window_ms=1_000)).allowed


async def test_a_member_re_added_after_a_step_back_leases_anew(backend: Backend, clock: RewindableClock) -> None:
    await backend.set_add("s", "m", capacity=1, lease_ms=1_000)
    clock.rewind(STEP_BACK_MS)
    await backend.set_add("s", "m", capacity=1, lease_ms=1_000)
    clock.advance(999)
    assert not (await backend.set_add("s", "other", capacity=1, lease_ms=1_000)).added
    clock.advance(1)
    assert (await backend.set_add("s", "other", capacity=1, lease_ms=1_000)).added


# -- Redis's own TIME (clock=None) ----------------------------------------------------------
#
# A server's TIME cannot be stepped back from a test, but the failover of the issue can
# be made exactly: state written by a client whose clock is 600 s ahead (as a primary's
# clock ahead of its replica's) is then read by a backend on the server's TIME.


def _wall_ms() -> int:
    # The test servers run on this host, so their TIME is this clock.
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize("backend_name", backends(*REDIS_BACKENDS))
async def test_server_clock_behind_the_stored_update_honours_the_wait(new_backend: NewBackend) -> None:
    ahead = new_backend(clock=ManualClock(_wall_ms() + STEP_BACK_MS))
    assert await ahead.bucket_consume("b", rate=1, burst=1) == BucketResult(True, 0, 0, 1_000)
    server_clock = new_backend(clock=None)
    # The server's TIME is 600 s behind the update: no refill, and exactly the normal wait.
    assert await server_clock.bucket_consume("b", rate=1, burst=1) == BucketResult(False, 0, 1_000, 1_000)
    # 1000 ms after any instant at or after that refusal, the same consume passes (before
    # the fix it refused until the server's clock reached the update, 600 s on).
    refused_by = _wall_ms()
    assert (await new_backend(clock=ManualClock(refused_by + 1_000)).bucket_consume("b", rate=1, burst=1)).allowed


@pytest.mark.parametrize("backend_name", backends(*REDIS_BACKENDS))
async def test_server_clock_peek_behind_the_stored_update_honours_the_wait(new_backend: NewBackend) -> None:
    ahead = new_backend(clock=ManualClock(_wall_ms() + STEP_BACK_MS))
    await ahead.bucket_consume("b", rate=1, burst=1)
    assert await new_backend(clock=None).bucket_peek("b", rate=1, burst=1) == BucketResult(False, 0, 1_000, 1_000)
    peeked_by = _wall_ms()
    assert (await new_backend(clock=ManualClock(peeked_by + 1_000)).bucket_consume("b", rate=1, burst=1)).allowed
