"""`MemoryBackend`: the primitives in this process's memory.

Every method runs without awaiting, so on one event loop each call is atomic.
Expired state is dropped lazily when touched, and an amortised sweep looks at a
few of the oldest entries every `_SWEEP_EVERY` writes, so idle keys are reclaimed
without a background thread or timer.
"""

from __future__ import annotations

from collections.abc import Sequence
from heapq import heapify, heappop, heappush
from itertools import islice
from typing import TypeVar

from .arguments import check_optional_count
from .backend import BucketResult, ClosesOnExit, CounterResult, SetResult
from .bucket import BucketSpecCache, bucket_peek_step, bucket_step
from .clock import Clock, monotonic_ms
from .errors import BackendError, BackendFull
from .keys import check_prefix
from .primitives import PRIMITIVES

__all__ = ["DEFAULT_MAX_KEYS", "MemoryBackend"]

_SWEEP_EVERY = 64
_SWEEP_BATCH = 32
_FULL_SWEEP_BATCH = 1024
"""Oldest entries of each kind looked at when `max_keys` is reached, before refusing."""

DEFAULT_MAX_KEYS = 1_000_000
"""About 200-300 MB of state at most (see the benchmarks' bytes per key)."""

_V = TypeVar("_V")

# A bucket: (level, updated_ms, full_at), a tuple because the hot path makes one per
# call. A set: a `_LeasedSet`.
_Bucket = tuple[int, int, int]

_COUNTER_INCR = PRIMITIVES["counter_incr"].check
_COUNTER_DECR = PRIMITIVES["counter_decr"].check
_COUNTER_GET = PRIMITIVES["counter_get"].check
_SET_ADD = PRIMITIVES["set_add"].check
_SET_REMOVE = PRIMITIVES["set_remove"].check
_SET_SIZE = PRIMITIVES["set_size"].check
_SET_MEMBERS = PRIMITIVES["set_members"].check
_BUCKET_KEY = PRIMITIVES["bucket_reset"].check
"""The arguments' checks, declared in `primitives`; a bucket's key alone is checked as
`bucket_reset`'s, its other arguments by `BucketSpecCache`."""


class _Counter:
    """A live counter: its value (> 0) and the instant its window ends (None: no window)."""

    __slots__ = ("expires_at", "value")

    def __init__(self, value: int, expires_at: int | None) -> None:
        self.value = value
        self.expires_at = expires_at


class _LeasedSet:
    """A set's members, each with its lease end (None: permanent), and the ends in a heap.

    The heap finds the expired members without looking at the live ones, so that an
    add or a refresh costs O(log n) in a set of n members, not O(n) (a room of
    thousands, refreshed member by member at every heartbeat). A refresh leaves its
    member's earlier end in the heap: an entry whose end is no longer its member's is
    skipped when it comes up, and the heap is rebuilt when stale entries outnumber the
    members, so it holds at most about twice as many entries as there are members.
    """

    __slots__ = ("ends", "heap")

    def __init__(self) -> None:
        self.ends: dict[str, int | None] = {}
        self.heap: list[tuple[int, str]] = []

    def drop_expired(self, now: int) -> None:
        """Remove every member whose lease ended at `now` or before (a lease ends when now >= its end)."""
        heap, ends = self.heap, self.ends
        while heap and heap[0][0] <= now:
            end, member = heappop(heap)
            if ends.get(member, None) == end:
                del ends[member]

    def put(self, member: str, end: int | None) -> None:
        self.ends[member] = end
        if end is not None:
            heap = self.heap
            heappush(heap, (end, member))
            if len(heap) > 2 * len(self.ends) + 16:
                self.heap = [(end, m) for m, end in self.ends.items() if end is not None]
                heapify(self.heap)


class MemoryBackend(ClosesOnExit):
    """A `Backend` for one process: fast, and forgotten when the process ends.

    `clock` defaults to the monotonic clock; `prefix` is accepted for parity with
    the other drivers (this process's memory is not shared, so it separates nothing).
    `max_keys` bounds the memory a flood of distinct keys can take: when that many
    keys are held, expired ones are swept first, and if all are live, a call that
    would create a new key raises `BackendFull` (existing keys keep working; no
    live limit is ever evicted). None means unbounded.
    """

    def __init__(
        self, *, clock: Clock | None = None, prefix: str = "rl:", max_keys: int | None = DEFAULT_MAX_KEYS
    ) -> None:
        self.clock: Clock = clock if clock is not None else monotonic_ms
        self.prefix = check_prefix(prefix)
        self.max_keys = check_optional_count("max_keys", max_keys)
        self._counters: dict[str, _Counter] = {}
        self._sets: dict[str, _LeasedSet] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._bucket_specs = BucketSpecCache()
        self._writes = 0

    def __repr__(self) -> str:
        return f"MemoryBackend(prefix={self.prefix!r}, keys={self.key_count()})"

    def key_count(self) -> int:
        """Entries held, live or not yet swept (for tests and memory reports)."""
        return len(self._counters) + len(self._sets) + len(self._buckets)

    # -- counters -------------------------------------------------------------

    def _live_counter(self, key: str, now: int) -> _Counter | None:
        entry = self._counters.get(key)
        if entry is None:
            return None
        expires_at = entry.expires_at
        if expires_at is not None and now >= expires_at:
            del self._counters[key]
            return None
        return entry

    async def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        _COUNTER_INCR(key, amount, limit, window_ms)
        now = self.clock()
        entry = self._live_counter(key, now)
        value = 0 if entry is None else entry.value
        expires_at = None if entry is None else entry.expires_at
        reset_after = None if expires_at is None else expires_at - now
        if limit is not None and value + amount > limit:
            return CounterResult(False, value, reset_after)
        if entry is None:
            self._make_room(now)
            expires_at = None if window_ms is None else now + window_ms
            reset_after = window_ms
            self._counters[key] = _Counter(amount, expires_at)
            self._wrote(now)
        else:
            entry.value = value + amount
        return CounterResult(True, value + amount, reset_after)

    async def counter_decr(self, key: str, amount: int = 1) -> int:
        _COUNTER_DECR(key, amount)
        entry = self._live_counter(key, self.clock())
        if entry is None:
            return 0
        value = entry.value
        if value <= amount:
            del self._counters[key]
            return 0
        entry.value = value - amount
        return value - amount

    async def counter_get(self, key: str) -> int:
        _COUNTER_GET(key)
        entry = self._live_counter(key, self.clock())
        return 0 if entry is None else entry.value

    # -- bounded sets with leases ----------------------------------------------

    def _live_set(self, key: str, now: int) -> _LeasedSet | None:
        leased = self._sets.get(key)
        if leased is None:
            return None
        leased.drop_expired(now)
        if not leased.ends:
            del self._sets[key]
            return None
        return leased

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        _SET_ADD(key, member, capacity, lease_ms)
        now = self.clock()
        leased = self._live_set(key, now)
        size = 0 if leased is None else len(leased.ends)
        if leased is None or member not in leased.ends:
            if capacity is not None and size >= capacity:
                return SetResult(False, size)
            size += 1
        if leased is None:
            self._make_room(now)
            leased = self._sets[key] = _LeasedSet()
        leased.put(member, None if lease_ms is None else now + lease_ms)
        _move_to_end(self._sets, key)
        self._wrote(now)
        return SetResult(True, size)

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        """`set_add` of each ``(key, member)`` with `lease_ms` and no capacity (see `AddsMany`)."""
        for key, member in members:
            _SET_ADD(key, member, None, lease_ms)
        results: list[SetResult | BackendError] = []
        for key, member in members:
            try:
                results.append(await self.set_add(key, member, lease_ms=lease_ms))
            except BackendFull as exc:  # a new key past max_keys: that add alone fails
                results.append(exc)
        return results

    async def set_remove(self, key: str, member: str) -> int:
        _SET_REMOVE(key, member)
        leased = self._live_set(key, self.clock())
        if leased is None:
            return 0
        leased.ends.pop(member, None)  # its heap entry is skipped when it comes up
        if not leased.ends:
            del self._sets[key]
            return 0
        return len(leased.ends)

    async def set_size(self, key: str) -> int:
        _SET_SIZE(key)
        leased = self._live_set(key, self.clock())
        return 0 if leased is None else len(leased.ends)

    async def set_members(self, key: str) -> frozenset[str]:
        _SET_MEMBERS(key)
        leased = self._live_set(key, self.clock())
        return frozenset() if leased is None else frozenset(leased.ends)

    # -- token buckets ------------------------------------------------------------

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        # The hot path of every message: checks and bookkeeping are inlined here.
        if key.__class__ is not str:
            _BUCKET_KEY(key)
        spec = self._bucket_specs.get(rate, burst, cost)
        now = self.clock()
        buckets = self._buckets
        state = buckets.get(key)
        if state is None or now >= state[2]:
            allowed, level, retry, reset = bucket_step(spec, None, None, now)
        else:
            allowed, level, retry, reset = bucket_step(spec, state[0], state[1], now)
        if allowed:
            if state is not None:
                del buckets[key]  # re-inserted at the end, where the newest entries are
            else:
                self._make_room(now)
            buckets[key] = (level, now, now + reset)
            self._writes = writes = self._writes + 1
            if not writes % _SWEEP_EVERY:
                self.sweep(now, _SWEEP_BATCH)
        elif state is not None and now < state[1]:
            # The clock went backwards: re-base the update time to now (level unchanged),
            # or the wait just reported would not be honoured until the clock caught up.
            buckets[key] = (level, now, now + reset)
        return BucketResult(allowed, level // spec.unit, retry, reset)

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        if key.__class__ is not str:
            _BUCKET_KEY(key)
        spec = self._bucket_specs.get(rate, burst, cost)
        now = self.clock()
        state = self._buckets.get(key)
        if state is None or now >= state[2]:
            allowed, level, retry, reset = bucket_peek_step(spec, None, None, now)
        else:
            allowed, level, retry, reset = bucket_peek_step(spec, state[0], state[1], now)
            if now < state[1]:  # the clock went backwards: re-based as bucket_consume does
                self._buckets[key] = (level, now, now + reset)
        return BucketResult(allowed, level // spec.unit, retry, reset)

    async def bucket_reset(self, key: str) -> None:
        _BUCKET_KEY(key)
        self._buckets.pop(key, None)

    # -- housekeeping ---------------------------------------------------------------

    def _make_room(self, now: int) -> None:
        """Before a new key: past `max_keys`, sweep the oldest entries, then refuse if still full."""
        if self.max_keys is None or self.key_count() < self.max_keys:
            return
        self.sweep(now, _FULL_SWEEP_BATCH)
        if self.key_count() >= self.max_keys:
            raise BackendFull(f"MemoryBackend holds max_keys={self.max_keys} live keys; refusing a new key")

    def _wrote(self, now: int) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self.sweep(now, _SWEEP_BATCH)

    def sweep(self, now: int | None = None, batch: int | None = None) -> int:
        """Drop expired state among the `batch` oldest entries of each kind (all when None).

        Returns how many entries were dropped. Called automatically every few
        writes; call it with no arguments to reclaim everything at once.
        """
        now = self.clock() if now is None else now
        dropped = 0
        for key in _oldest(self._counters, batch):
            expires_at = self._counters[key].expires_at
            if expires_at is not None and now >= expires_at:
                del self._counters[key]
                dropped += 1
        for key in _oldest(self._buckets, batch):
            if now >= self._buckets[key][2]:
                del self._buckets[key]
                dropped += 1
        for key in _oldest(self._sets, batch):
            if self._live_set(key, now) is None:
                dropped += 1
        return dropped

    async def ping(self) -> None:
        return None

    async def clear(self) -> None:
        self._counters.clear()
        self._sets.clear()
        self._buckets.clear()

    async def aclose(self) -> None:
        return None


def _oldest(entries: dict[str, _V], batch: int | None) -> list[str]:
    keys = iter(entries)
    return list(keys if batch is None else islice(keys, batch))


def _move_to_end(entries: dict[str, _V], key: str) -> None:
    # Dicts keep insertion order; re-inserting a refreshed entry keeps the oldest
    # (most likely expired) entries at the front, where the sweep looks.
    entries[key] = entries.pop(key)
