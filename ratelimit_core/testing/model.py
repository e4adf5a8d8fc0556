"""`ReferenceModel`: the Backend contract, written as plainly as possible.

It shares no code with the drivers (token arithmetic is in `fractions.Fraction`,
not in `ratelimit_core.bucket`'s integer units), so a bug common to every driver
still disagrees with it. It is synchronous, keeps everything in dicts and never
validates arguments: the conformance machine only sends valid ones.

A clock that steps backwards: a bucket refills nothing while the clock reads
earlier than its last update, and the first call that sees that (a refusal or a
peek too) moves the update time back to now, so every wait it reports holds.
Counter windows and set leases end at fixed instants; behind them the clock just
takes longer to get there. A counter's `reset_after_ms` is that longer, true wait,
and a set reports no wait at all, so neither needs re-basing (re-adding a member
re-bases its lease anyway). State whose instant has passed is collected lazily by
the drivers, so a clock stepping back before that instant finds it or not: the
conformance machine never steps back that far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..backend import BucketResult, CounterResult, SetResult
from ..clock import Clock

__all__ = ["ReferenceModel"]

_MS_PER_S = 1000


@dataclass(slots=True)
class _Counter:
    value: int
    expires_at: int | None


@dataclass(slots=True)
class _Bucket:
    rate: Fraction
    """Tokens per second, as the contract reads it: to six decimal places."""
    burst: int
    tokens: Fraction
    """Tokens at `updated_ms`."""
    updated_ms: int

    def tokens_at(self, now: int) -> Fraction:
        """Tokens at `now`; a clock reading earlier than `updated_ms` refills nothing."""
        elapsed = max(0, now - self.updated_ms)
        return min(Fraction(self.burst), self.tokens + elapsed * self.rate / _MS_PER_S)

    def rebase(self, now: int) -> None:
        """After the clock stepped back behind `updated_ms`, count time from `now` (tokens kept)."""
        self.updated_ms = min(self.updated_ms, now)

    def wait_ms(self, now: int, tokens: Fraction) -> int:
        """Whole milliseconds from `now` until the bucket holds `tokens`."""
        missing = tokens - self.tokens_at(now)
        return max(0, math.ceil(missing * _MS_PER_S / self.rate))


def six_places(rate: float | Fraction) -> Fraction:
    """`rate` rounded half-even to six decimal places, the resolution the contract promises."""
    return Fraction(round(Fraction(rate) * 10**6), 10**6)


class ReferenceModel:
    """Counters, leased sets and token buckets on `clock`, with the Backend's method names."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._counters: dict[str, _Counter] = {}
        self._sets: dict[str, dict[str, int | None]] = {}
        self._buckets: dict[str, _Bucket] = {}

    # -- counters -------------------------------------------------------------

    def _counter(self, key: str) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is not None and counter.expires_at is not None and self.clock() >= counter.expires_at:
            del self._counters[key]
            return None
        return counter

    def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        now = self.clock()
        counter = self._counter(key)
        if counter is None:
            if limit is not None and amount > limit:
                return CounterResult(False, 0, None)
            expires_at = None if window_ms is None else now + window_ms
            self._counters[key] = _Counter(amount, expires_at)
            return CounterResult(True, amount, window_ms)
        reset_after = None if counter.expires_at is None else counter.expires_at - now
        if limit is not None and counter.value + amount > limit:
            return CounterResult(False, counter.value, reset_after)
        counter.value += amount
        return CounterResult(True, counter.value, reset_after)

    def counter_decr(self, key: str, amount: int = 1) -> int:
        counter = self._counter(key)
        if counter is None:
            return 0
        counter.value = max(0, counter.value - amount)
        if counter.value == 0:
            del self._counters[key]
        return counter.value

    def counter_get(self, key: str) -> int:
        counter = self._counter(key)
        return 0 if counter is None else counter.value

    def counter_values(self) -> list[int]:
        """The values of the live counters."""
        return [counter.value for key in list(self._counters) if (counter := self._counter(key)) is not None]

    # -- bounded sets with leases ----------------------------------------------

    def _live(self, key: str) -> dict[str, int | None]:
        now = self.clock()
        members = {m: end for m, end in self._sets.get(key, {}).items() if end is None or now < end}
        self._sets[key] = members
        return members

    def set_add(self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None) -> SetResult:
        members = self._live(key)
        if member not in members and capacity is not None and len(members) >= capacity:
            return SetResult(False, len(members))
        members[member] = None if lease_ms is None else self.clock() + lease_ms
        return SetResult(True, len(members))

    def set_remove(self, key: str, member: str) -> int:
        members = self._live(key)
        members.pop(member, None)
        return len(members)

    def set_size(self, key: str) -> int:
        return len(self._live(key))

    def set_members(self, key: str) -> frozenset[str]:
        return frozenset(self._live(key))

    def set_sizes(self) -> dict[str, int]:
        """The live size of every set ever touched."""
        return {key: len(self._live(key)) for key in list(self._sets)}

    # -- token buckets ------------------------------------------------------------

    def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        now = self.clock()
        exact_rate = six_places(rate)
        bucket = self._buckets.setdefault(key, _Bucket(exact_rate, burst, Fraction(burst), now))
        if (bucket.rate, bucket.burst) != (exact_rate, burst):
            # The drivers keep state in units that depend on (rate, burst); the
            # contract says nothing about changing them for a live key.
            raise ValueError(f"the reference model keeps one (rate, burst) per bucket key; {key!r:.60} changed")
        tokens = bucket.tokens_at(now)
        allowed = tokens >= cost
        if allowed:
            bucket.tokens, bucket.updated_ms = tokens - cost, now
        else:
            bucket.rebase(now)
        return BucketResult(
            allowed=allowed,
            remaining=math.floor(bucket.tokens_at(now)),
            retry_after_ms=0 if allowed else bucket.wait_ms(now, Fraction(cost)),
            reset_after_ms=bucket.wait_ms(now, Fraction(burst)),
        )

    def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            return BucketResult(True, burst, 0, 0)
        bucket.rebase(now)
        tokens = bucket.tokens_at(now)
        return BucketResult(
            allowed=tokens >= cost,
            remaining=math.floor(tokens),
            retry_after_ms=bucket.wait_ms(now, Fraction(cost)),
            reset_after_ms=bucket.wait_ms(now, Fraction(burst)),
        )

    def bucket_reset(self, key: str) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens, bucket.updated_ms = Fraction(bucket.burst), self.clock()

    # -- time -----------------------------------------------------------------------

    def deadlines(self) -> list[int]:
        """Future instants at which some state changes by itself, soonest first.

        Window ends, lease ends, and the instants at which a bucket is full again.
        """
        now = self.clock()
        instants = {c.expires_at for c in self._counters.values() if c.expires_at is not None}
        instants.update(end for members in self._sets.values() for end in members.values() if end is not None)
        for bucket in self._buckets.values():
            # Behind a bucket's update time (the clock stepped back) it refills only from then on.
            start = max(now, bucket.updated_ms)
            instants.add(start + bucket.wait_ms(start, Fraction(bucket.burst)))
        return sorted(t for t in instants if t > now)
