"""Token-bucket arithmetic in exact integers, shared by the memory driver and
mirrored line for line by ``redis/scripts/bucket_consume.lua``.

A bucket holding `burst` tokens refills at `rate` tokens per second. Time is whole
milliseconds; `rate` counts to six decimal places, so in one millisecond the bucket
gains ``rate * 10**6`` nano-tokens, an integer. The level is kept in "units" of
``g`` nano-tokens, where ``g = gcd(rate * 10**6, 10**9)``; then the gain per
millisecond, the cost and the full level are all integers, and every value a driver
computes stays below 2**53, where Lua's doubles are still exact.

A clock that moves backwards (an NTP step; a failover to a Redis server whose clock
is behind) refills nothing: when ``now_ms < updated_ms`` the elapsed time is 0. The
driver then stores the level re-based to ``now_ms`` (updated ``now_ms``, full again at
``now_ms + reset_after_ms``) even when the step refuses or only peeks, so that every
wait it reports is honoured by the clock it reported it on: ``retry_after_ms`` later,
the same consume passes. Storing nothing would leave the update time in the future,
and the bucket would refuse, reporting the normal wait, until the clock caught up.
Tokens never appear from nowhere (the time between the last update and the step is
not refilled) and the level never exceeds `burst`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from .arguments import check_count
from .errors import InvalidArgument

__all__ = [
    "BucketSpec",
    "BucketSpecCache",
    "BucketStep",
    "bucket_peek_step",
    "bucket_spec",
    "bucket_step",
    "burst_in_effect",
]

MIN_RATE = Fraction(1, 10**6)
MAX_RATE = 10**9
MAX_BURST = 10**9
PRECISION_LIMIT = 2**52
"""The full level of a bucket, in units, must not exceed this (see `bucket_spec`)."""

_NANO = 10**9


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """A validated (rate, burst, cost) in integer units."""

    per_ms: int
    """Units gained per millisecond."""
    unit: int
    """Units per whole token."""
    full: int
    """Units in a full bucket (`burst` tokens)."""
    cost: int
    """Units taken by one call (`cost` tokens)."""


BucketStep = tuple[bool, int, int, int]
"""The outcome of one `bucket_step`: ``(allowed, level, retry_after_ms, reset_after_ms)``,
where `level` is the units in the bucket after the step (the state to store).

A plain tuple: it is made on every call of the hot path and unpacked at once.
"""


def _micro_rate(rate: object) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, Decimal, Fraction)):
        raise InvalidArgument(f"rate must be a number of tokens per second, got {rate!r}")
    try:
        exact = Fraction(Decimal(rate) if isinstance(rate, float) else rate)
    except (ValueError, OverflowError, InvalidOperation):
        raise InvalidArgument(f"rate must be a finite number, got {rate!r}") from None
    # A float such as 0.3 is really 0.29999999999999998...; six decimal places is
    # the documented resolution, so round half-even to it. The bounds apply to the
    # rounded rate: the float 0.000001 lies just below 1/10**6 and is still valid.
    micro = round(exact * 10**6)
    if not MIN_RATE * 10**6 <= micro <= MAX_RATE * 10**6:
        raise InvalidArgument(f"rate must be between 0.000001 and {MAX_RATE} tokens per second, got {rate!r}")
    return micro


def bucket_spec(rate: object, burst: object, cost: object) -> BucketSpec:
    """Validate `bucket_consume` arguments and convert them to integer units.

    Raises `InvalidArgument` naming the first bad argument. The one combination
    refused beyond the documented ranges: a burst so large, for a rate with so many
    decimal places, that the full bucket would exceed 2**52 units (for example
    burst 10**9 at rate 0.123457/s). Integer rates, and rates with up to three
    decimal places, work for every burst up to 10**9.
    """
    micro = _micro_rate(rate)
    burst_i = check_count("burst", burst)
    if burst_i > MAX_BURST:
        raise InvalidArgument(f"burst must be between 1 and {MAX_BURST}, got {burst!r}")
    cost_i = check_count("cost", cost)
    if cost_i > burst_i:
        raise InvalidArgument(f"cost must not exceed burst ({burst_i}), got {cost!r}")
    g = math.gcd(micro, _NANO)
    unit = _NANO // g
    full = burst_i * unit
    if full > PRECISION_LIMIT:
        raise InvalidArgument(
            f"burst={burst_i} with rate={rate!r} needs more precision than the bucket keeps "
            f"(burst * {unit} > 2**52): use fewer decimal places in rate or a smaller burst"
        )
    return BucketSpec(per_ms=micro // g, unit=unit, full=full, cost=cost_i * unit)


class BucketSpecCache:
    """`bucket_spec` results by (rate, burst, cost), so a hot path validates each combination once.

    The key holds the arguments' types as well as their values: ``True == 1`` and
    ``5.0 == 5``, but only the int is a valid burst, so only identical arguments
    share an entry. Holds at most `maxsize` combinations and starts over when full
    (a limiter uses a handful); `clear` empties it.
    """

    __slots__ = ("_specs", "maxsize")

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._specs: dict[tuple[object, ...], BucketSpec] = {}

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, rate: object, burst: object, cost: object) -> BucketSpec:
        """`bucket_spec(rate, burst, cost)`, computed once per distinct combination."""
        key = (rate, burst, cost, type(rate), type(burst), type(cost))
        try:
            spec = self._specs.get(key)
        except TypeError:  # unhashable (or a signalling NaN): bucket_spec names the argument
            return bucket_spec(rate, burst, cost)
        if spec is None:
            spec = bucket_spec(rate, burst, cost)
            if len(self._specs) >= self.maxsize:
                self._specs.clear()
            self._specs[key] = spec
        return spec

    def clear(self) -> None:
        self._specs.clear()


# In the step, ceil(a / b) for b > 0 is written -((-a) // b): exact integer division.


def bucket_step(spec: BucketSpec, level: int | None, updated_ms: int | None, now_ms: int) -> BucketStep:
    """One atomic consume: refill since `updated_ms`, then take `spec.cost` if there.

    `level` None means no stored state (a full bucket). On refusal nothing is taken
    and the caller need not store anything, except when the clock went backwards
    (``now_ms < updated_ms``): that refills nothing, and the caller must store the
    level it returns re-based to `now_ms`, allowed or not (see the module docstring).
    """
    per_ms = spec.per_ms
    full = spec.full
    if level is None or updated_ms is None:
        level = full
    else:
        elapsed = now_ms - updated_ms if now_ms > updated_ms else 0
        if elapsed >= -((level - full) // per_ms):  # the refill time to full
            level = full
        else:
            level += elapsed * per_ms
    cost = spec.cost
    if level >= cost:
        level -= cost
        return True, level, 0, -((level - full) // per_ms)
    return False, level, -((level - cost) // per_ms), -((level - full) // per_ms)


def bucket_peek_step(spec: BucketSpec, level: int | None, updated_ms: int | None, now_ms: int) -> BucketStep:
    """What the bucket holds at `now_ms`, taking nothing: (would `spec.cost` be allowed, level, retry, reset).

    The same refill as `bucket_step` (kept apart so that the consume path stays one
    function call); the caller stores nothing, except the re-based level when the
    clock went backwards (``now_ms < updated_ms``), as after a refusing `bucket_step`.
    """
    full, per_ms = spec.full, spec.per_ms
    if level is None or updated_ms is None:
        level = full
    else:
        elapsed = now_ms - updated_ms if now_ms > updated_ms else 0
        level = full if elapsed >= -((level - full) // per_ms) else level + elapsed * per_ms
    shortfall = spec.cost - level
    return shortfall <= 0, level, 0 if shortfall <= 0 else -(-shortfall // per_ms), -((level - full) // per_ms)


def burst_in_effect(rate: float | None, burst: int | None) -> int:
    """`burst` when given, else the rate rounded up (at least 1): the default burst of every rate limit."""
    if burst is not None:
        return burst
    value = rate if isinstance(rate, int | float) else 1
    return max(1, math.ceil(value)) if math.isfinite(value) else 1
