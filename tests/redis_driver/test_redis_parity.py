"""Seeded random call sequences give the same results on Redis as on MemoryBackend.

The conformance state machine covers the shared contract; this adds what it may
not reach: a clock that moves backwards, huge values and precision-heavy buckets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from ratelimit_core import InvalidArgument, MemoryBackend
from ratelimit_core.bucket import bucket_spec
from support.redis_storages import MakeBackend

KEYS = ["a", "b", "#a", "é:{x}", "k" * 200]
MEMBERS = ["m1", "m2", "m3", "\ud800", "x y"]
RATES = [1, 0.3, 2.5, 1000, 0.001, 7, 0.123457, 999_999_999.999999]
TICKS = [0, 0, 1, 2, 5, 19, 20, 50, 1_000, -3, -50, 10**9]


class SteerableClock:
    """A clock a test may move backwards (a ManualClock cannot)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _bucket_args(rng: random.Random) -> dict[str, Any] | None:
    burst = rng.choice([1, 2, 6, 10**9, rng.randint(1, 10**6)])
    args = {"rate": rng.choice(RATES), "burst": burst, "cost": rng.choice([1, burst, rng.randint(1, burst)])}
    try:
        bucket_spec(**args)
    except InvalidArgument:
        return None
    return args


Call = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A backend method's name, its positional arguments and its options."""


def _counter_incr(rng: random.Random, key: str) -> Call:
    options = {"limit": rng.choice([None, 0, 1, 3, 6, 10**15]), "window_ms": rng.choice([None, 1, 5, 20, 10**15])}
    return "counter_incr", (key, rng.choice([1, 2, 5, 10**15])), options


def _counter_decr(rng: random.Random, key: str) -> Call:
    return "counter_decr", (key, rng.randint(1, 4)), {}


def _set_add(rng: random.Random, key: str) -> Call:
    options = {"capacity": rng.choice([None, 0, 1, 2, 3]), "lease_ms": rng.choice([None, 1, 5, 20, 50])}
    return "set_add", (key, rng.choice(MEMBERS)), options


def _set_remove(rng: random.Random, key: str) -> Call:
    return "set_remove", (key, rng.choice(MEMBERS)), {}


def _bucket_consume(rng: random.Random, key: str) -> Call | None:
    bucket = _bucket_args(rng)
    return None if bucket is None else ("bucket_consume", (key,), bucket)


def _read(name: str) -> Callable[[random.Random, str], Call]:
    """A call that only reads `key` (it draws nothing more)."""
    return lambda _rng, key: (name, (key,), {})


def _clock_step(_rng: random.Random, _key: str) -> None:
    """No call: the test moves the clock instead."""


_KINDS: tuple[Callable[[random.Random, str], Call | None], ...] = (
    _counter_incr,
    _counter_decr,
    _read("counter_get"),
    _set_add,
    _set_remove,
    _read("set_size"),
    _read("set_members"),
    _bucket_consume,
    _clock_step,
)
"""Equally likely; the order is part of each seed's sequence."""


def _random_call(rng: random.Random) -> Call | None:
    key = rng.choice(KEYS)
    return _KINDS[rng.randrange(len(_KINDS))](rng, key)


@pytest.mark.parametrize("seed", range(6))
async def test_random_calls_match_memory_backend(make_backend: MakeBackend, seed: int) -> None:
    rng = random.Random(seed)
    clock = SteerableClock(rng.choice([1_000_000, 3 * 10**15]))
    memory = MemoryBackend(clock=clock)
    redis_backend = make_backend(clock)
    for step in range(250):
        call = _random_call(rng)
        if call is None:
            clock.now = max(0, clock.now + rng.choice(TICKS))
            continue
        name, args, options = call
        expected = await getattr(memory, name)(*args, **options)
        assert await getattr(redis_backend, name)(*args, **options) == expected, (step, name, args, options)


async def test_documented_edge_cases_match_memory_backend(make_backend: MakeBackend) -> None:
    clock = SteerableClock(1_000_000)
    memory = MemoryBackend(clock=clock)
    redis_backend = make_backend(clock)
    script: list[tuple[str, tuple[Any, ...], dict[str, Any]] | int] = [
        ("counter_incr", ("refused", 5), {"limit": 4, "window_ms": 10}),  # creates nothing
        ("counter_get", ("refused",), {}),
        ("counter_incr", ("c", 1), {"window_ms": 10}),
        4,
        ("counter_incr", ("c", 1), {"window_ms": 1_000}),  # keeps the original window
        ("counter_decr", ("c", 1), {}),
        ("counter_incr", ("c", 1), {}),
        6,  # exactly at the window's end: expired
        ("counter_incr", ("c", 1), {"limit": 1}),
        ("counter_get", ("c",), {}),
        ("counter_incr", ("c", 2), {"limit": 2}),
        ("counter_decr", ("c", 2), {}),  # reaching 0 removes the key
        ("counter_incr", ("c", 1), {"window_ms": 5}),
        ("set_add", ("s", "a"), {"capacity": 0}),  # capacity 0 refuses every new member
        ("set_add", ("s", "a"), {"lease_ms": 10}),
        ("set_add", ("s", "b"), {"capacity": 1, "lease_ms": 10}),
        ("set_add", ("s", "a"), {"capacity": 1, "lease_ms": 20}),  # present: accepted and refreshed
        ("set_add", ("s", "p"), {"lease_ms": 5}),
        ("set_add", ("s", "p"), {}),  # lease_ms=None makes a leased member permanent
        10,
        ("set_members", ("s",), {}),
        10,  # exactly at a's lease end: gone, so b fits
        ("set_add", ("s", "b"), {"capacity": 2}),
        ("set_members", ("s",), {}),
        ("bucket_consume", ("b",), {"rate": 1, "burst": 2, "cost": 2}),
        ("bucket_consume", ("b",), {"rate": 1, "burst": 2, "cost": 1}),  # refused: stores nothing
        -500,  # a clock going backwards refills nothing
        ("bucket_consume", ("b",), {"rate": 1, "burst": 2, "cost": 1}),
        1_500,
        ("bucket_consume", ("b",), {"rate": 1, "burst": 2, "cost": 1}),
        ("bucket_consume", ("b",), {"rate": 4, "burst": 8, "cost": 8}),  # another spec on the same key
        2_000,  # exactly when it is full again
        ("bucket_consume", ("b",), {"rate": 4, "burst": 8, "cost": 8}),
        ("bucket_consume", ("b2",), {"rate": 1, "burst": 2, "cost": 2}),
        2_000,  # exactly when it is full again, asked with another spec: full under the new one
        ("bucket_consume", ("b2",), {"rate": 0.5, "burst": 2, "cost": 1}),
    ]
    for step in script:
        if isinstance(step, int):
            clock.now += step
            continue
        name, args, options = step
        expected = await getattr(memory, name)(*args, **options)
        assert await getattr(redis_backend, name)(*args, **options) == expected, step
