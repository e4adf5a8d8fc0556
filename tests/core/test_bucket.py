"""Token-bucket arithmetic is exact, on every backend: no float drift, exact waits.

The expected numbers are worked out by hand (comments) or with `fractions.Fraction`,
never with `ratelimit_core.bucket`, whose integer units are what is under test.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from ratelimit_core import Backend, BucketResult, InvalidArgument, ManualClock
from ratelimit_core.bucket import bucket_spec


async def test_point_three_per_second_waits_are_exact(backend: Backend, clock: ManualClock) -> None:
    # One token at 0.3/s takes 10000/3 = 3333.33... ms, so the wait is 3334 ms; two take 6667.
    assert await backend.bucket_consume("b", rate=0.3, burst=2, cost=2) == BucketResult(True, 0, 0, 6_667)
    assert await backend.bucket_consume("b", rate=0.3, burst=2) == BucketResult(False, 0, 3_334, 6_667)
    clock.advance(3_333)  # 0.9999 tokens
    assert await backend.bucket_consume("b", rate=0.3, burst=2) == BucketResult(False, 0, 1, 3_334)
    clock.advance(1)  # 1.0002 tokens: one is taken, 0.0002 stay
    assert await backend.bucket_consume("b", rate=0.3, burst=2) == BucketResult(True, 0, 0, 6_666)
    assert await backend.bucket_consume("b", rate=0.3, burst=2) == BucketResult(False, 0, 3_333, 6_666)


async def test_a_thousand_per_second_is_one_token_per_millisecond(backend: Backend, clock: ManualClock) -> None:
    assert await backend.bucket_consume("b", rate=1000, burst=10, cost=10) == BucketResult(True, 0, 0, 10)
    assert await backend.bucket_consume("b", rate=1000, burst=10, cost=3) == BucketResult(False, 0, 3, 10)
    clock.advance(3)
    assert await backend.bucket_consume("b", rate=1000, burst=10, cost=3) == BucketResult(True, 0, 0, 10)


async def test_many_refills_add_up_without_drift(backend: Backend, clock: ManualClock) -> None:
    """At 0.3/s the k-th token after a drain is there at exactly ceil(k * 10000 / 3) ms.

    Each token is taken the moment it is there, so the level stays below the burst
    and the leftover fractions must carry over exactly.
    """
    await backend.bucket_consume("b", rate=0.3, burst=2, cost=2)
    start = clock()
    for k in range(1, 301):
        refused = await backend.bucket_consume("b", rate=0.3, burst=2)
        clock.advance(refused.retry_after_ms)
        assert clock() - start == math.ceil(Fraction(k * 10_000, 3)), k
        assert (await backend.bucket_consume("b", rate=0.3, burst=2)).allowed, k
    assert clock() - start == 1_000_000


@pytest.mark.parametrize(
    ("rate", "burst", "cost"),
    [(0.3, 5, 5), (2.5, 3, 2), (7, 10, 9), (0.001, 2, 1), (0.123457, 10, 7), (0.000001, 3, 1), (10**9, 10**9, 10**9)],
)
async def test_retry_after_is_the_exact_wait(
    backend: Backend, clock: ManualClock, rate: float, burst: int, cost: int
) -> None:
    await backend.bucket_consume("b", rate=rate, burst=burst, cost=burst)
    refused = await backend.bucket_consume("b", rate=rate, burst=burst, cost=cost)
    assert not refused.allowed
    assert refused.retry_after_ms == math.ceil(cost * 1000 / Fraction(Decimal(str(rate))))
    clock.advance(refused.retry_after_ms - 1)
    assert not (await backend.bucket_consume("b", rate=rate, burst=burst, cost=cost)).allowed
    clock.advance(1)
    assert (await backend.bucket_consume("b", rate=rate, burst=burst, cost=cost)).allowed


async def test_remaining_counts_whole_tokens_only(backend: Backend, clock: ManualClock) -> None:
    await backend.bucket_consume("b", rate=0.3, burst=3, cost=3)
    clock.advance(6_666)  # 1.9998 tokens, 0.9998 after taking one: 2.0002 missing take 6667.33 ms
    assert await backend.bucket_consume("b", rate=0.3, burst=3, cost=1) == BucketResult(True, 0, 0, 6_668)


async def test_largest_values_stay_exact(backend: Backend, clock: ManualClock) -> None:
    # 4_503_599 tokens at 0.000001/s refill in 4_503_599 * 10**9 ms: just under 2**52.
    burst = 4_503_599
    drained = await backend.bucket_consume("b", rate=0.000001, burst=burst, cost=burst)
    assert drained == BucketResult(True, 0, 0, burst * 10**9)
    clock.advance(10**9 - 1)
    assert await backend.bucket_consume("b", rate=0.000001, burst=burst, cost=1) == BucketResult(
        False, 0, 1, burst * 10**9 - 10**9 + 1
    )


@pytest.mark.parametrize("rate", [0.000001, Decimal("0.000001"), Fraction(1, 10**6), 10**9, 1e9])
def test_documented_rate_bounds_are_accepted(rate: float) -> None:
    bucket_spec(rate, 1, 1)


@pytest.mark.parametrize("rate", [0, -1, 0.0000004, 10**9 + 1, float("nan"), float("inf")])
def test_rates_outside_the_bounds_are_refused_naming_rate(rate: float) -> None:
    with pytest.raises(InvalidArgument, match="rate"):
        bucket_spec(rate, 1, 1)


def test_rates_count_to_six_decimal_places_rounding_half_even() -> None:
    assert bucket_spec(Fraction(15, 10**7), 1, 1) == bucket_spec(0.000002, 1, 1)  # 1.5 millionths -> 2
    assert bucket_spec(Fraction(25, 10**7), 1, 1) == bucket_spec(0.000002, 1, 1)  # 2.5 millionths -> 2
    assert bucket_spec(0.30000000001, 1, 1) == bucket_spec(0.3, 1, 1)


@pytest.mark.parametrize("rate", [0.001, 0.3, 1, 999_999.999, 10**9])
def test_rates_with_up_to_three_decimals_work_for_the_largest_burst(rate: float) -> None:
    bucket_spec(rate, 10**9, 10**9)


def test_precision_beyond_two_to_the_52_is_refused_naming_burst_and_rate() -> None:
    # 0.123457/s needs 10**9 units per token, so 2**52 units hold 4_503_599 tokens.
    bucket_spec(0.123457, 4_503_599, 1)
    with pytest.raises(InvalidArgument, match=r"burst=4503600 with rate=0\.123457"):
        bucket_spec(0.123457, 4_503_600, 1)
    with pytest.raises(InvalidArgument, match="precision"):
        bucket_spec(0.000001, 10**9, 1)


async def test_precision_refusal_comes_from_every_backend(backend: Backend) -> None:
    with pytest.raises(InvalidArgument, match="burst"):
        await backend.bucket_consume("b", rate=0.123457, burst=10**9)


@pytest.mark.parametrize(
    ("burst", "cost", "argument"),
    [(0, 1, "burst"), (10**9 + 1, 1, "burst"), (2, 0, "cost"), (2, 3, "cost"), (2.0, 1, "burst"), (2, True, "cost")],
)
def test_burst_and_cost_bounds_errors_name_the_argument(burst: int, cost: int, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument):
        bucket_spec(1, burst, cost)
