"""`FallbackBackend`: keep deciding while the primary backend (Redis) is down.

While the primary answers, every call goes to it, and what this process holds
(set members it added, counter increments it made) is mirrored into a local
fallback backend. When the primary raises `BackendUnavailable` or does not answer
within `timeout_ms`, a circuit breaker opens: calls are answered at once according
to `on_error`, and the primary is left alone until a probe is due. Probes (a
`ping`) back off from `cooldown_ms` to `max_cooldown_ms`; the first one that
succeeds replays what changed during the outage onto the primary and closes the
breaker.

`on_error`:

- ``"fallback"`` (default): the fallback decides. It cannot see other processes,
  so limits hold per process; `processes` divides capacities, limits and bucket
  rates by the number of processes expected to share the load. Because holdings
  are mirrored, a user holding 2 of 3 slots through this process before the
  outage gets only 1 more during it.
- ``"allow"``: every decision is allowed (fail open); holdings are still recorded,
  so they are released and replayed correctly.
- ``"deny"``: every decision is refused (fail closed).

Replay after an outage: members removed during it are removed from the primary,
and every member this process still holds (taken before or during the outage) is
added again without a capacity check, since they belong to live connections (a
set may briefly hold more than its capacity, and a primary that restarted empty
gets this process's holdings back at once); counter changes are applied as one
net increment or decrement (never below 0). Token
buckets are not replayed: each process refilled its own during the outage.

A call that timed out may still run on a server that was only frozen, when it
wakes. Set operations are idempotent, so replay and such a late write agree (an
add the fallback then refused is taken back on recovery, which assumes, as the
Channels adapter does, that a member name belongs to one holder); counter
increments are not idempotent, which is why connection slots are set members.

Decisions made without the primary carry ``degraded=True``. The breaker's
transitions are logged once each on the ``ratelimit_core.fallback`` logger
(WARNING when the primary goes away, INFO when it is back) and reported to
`on_transition`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .arguments import check_count, check_optional_count
from .backend import Backend, BucketResult, ClosesOnExit, CounterResult, SetResult
from .bucket import bucket_spec
from .clock import Clock, monotonic_ms
from .errors import BackendUnavailable, InvalidArgument
from .failure_modes import OnError, check_on_error
from .memory import MemoryBackend

__all__ = ["DEFAULT_COOLDOWN_MS", "DEFAULT_MAX_COOLDOWN_MS", "DEFAULT_TIMEOUT_MS", "FallbackBackend", "OnError"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 50
DEFAULT_COOLDOWN_MS = 1_000
DEFAULT_MAX_COOLDOWN_MS = 30_000

_T = TypeVar("_T")


class _Down:
    """The primary did not answer this call."""


_DOWN = _Down()


@dataclass
class _Journal:
    """What changed locally while the primary was down, to replay onto it."""

    members: dict[tuple[str, str], int | _Down | None] = field(default_factory=dict)
    """(key, member) -> lease_ms of an add (None: permanent), or `_DOWN` for a removal."""
    counters: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """key -> (net change, window_ms of the first increment)."""

    def __bool__(self) -> bool:
        return bool(self.members or self.counters)

    def counter_change(self, key: str, change: int, window_ms: int | None) -> None:
        net, window = self.counters.get(key, (0, window_ms))
        self.counters[key] = (net + change, window)

    def merge_newer(self, newer: _Journal) -> None:
        self.members.update(newer.members)
        for key, (change, window_ms) in newer.counters.items():
            self.counter_change(key, change, window_ms)


class FallbackBackend(ClosesOnExit):
    """A `Backend` that answers from `fallback` (or allows, or denies) while `primary` is down.

    `clock` times the breaker (monotonic by default); it is not the backends' clock.
    """

    def __init__(
        self,
        primary: Backend,
        fallback: Backend | None = None,
        *,
        on_error: OnError = "fallback",
        processes: int = 1,
        timeout_ms: int | None = DEFAULT_TIMEOUT_MS,
        cooldown_ms: int = DEFAULT_COOLDOWN_MS,
        max_cooldown_ms: int = DEFAULT_MAX_COOLDOWN_MS,
        clock: Clock | None = None,
        on_transition: Callable[[bool], None] | None = None,
    ) -> None:
        check_on_error(on_error)
        self._primary = primary
        self._fallback = MemoryBackend() if fallback is None else fallback
        self.on_error: OnError = on_error
        self.processes = check_count("processes", processes)
        timeout = check_optional_count("timeout_ms", timeout_ms)
        self._timeout_s = None if timeout is None else timeout / 1000
        self.cooldown_ms = check_count("cooldown_ms", cooldown_ms)
        self.max_cooldown_ms = check_count("max_cooldown_ms", max_cooldown_ms, minimum=cooldown_ms)
        self._clock = clock or monotonic_ms
        self._on_transition = on_transition
        self._up = True
        self._probing = False
        self._next_probe_ms = 0
        self._backoff_ms = cooldown_ms
        self._journal = _Journal()
        self._holdings: dict[tuple[str, str], int | None] = {}
        """(key, member) -> lease_ms of every set member this process holds, to re-acquire after an outage."""

    def __repr__(self) -> str:
        state = "up" if self._up else "degraded"
        return f"FallbackBackend({self._primary!r}, {self._fallback!r}, on_error={self.on_error!r}, {state})"

    @property
    def primary(self) -> Backend:
        return self._primary

    @property
    def fallback(self) -> Backend:
        return self._fallback

    @property
    def degraded(self) -> bool:
        """True while the breaker is open (calls are not going to the primary)."""
        return not self._up

    # -- the breaker --------------------------------------------------------------

    async def _call_primary(self, call: Callable[[Backend], Awaitable[_T]]) -> _T | _Down:
        if not self._up and not await self._probe():
            return _DOWN
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call(self._primary)
        except (BackendUnavailable, TimeoutError) as exc:
            self._went_down(exc)
            return _DOWN

    def _went_down(self, exc: BaseException) -> None:
        self._next_probe_ms = self._clock() + self._backoff_ms
        if self._up:
            self._up = False
            logger.warning(
                "primary backend %r unavailable (%s); on_error=%r until it answers again",
                self._primary,
                exc or type(exc).__name__,
                self.on_error,
            )
            if self._on_transition is not None:
                self._on_transition(False)

    async def _probe(self) -> bool:
        """Try the primary if a probe is due; on success replay the journal and close the breaker."""
        if self._probing or self._clock() < self._next_probe_ms:
            return False
        self._probing = True
        journal, self._journal = self._journal, _Journal()
        # Counted now: the replay empties the journal as it goes.
        removals = sum(1 for lease in journal.members.values() if isinstance(lease, _Down))
        counters, holdings = len(journal.counters), len(self._holdings)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._primary.ping()
            # Replay gets no timeout of its own: it runs once per outage, on a primary that just answered.
            await self._replay(journal)
        except (BackendUnavailable, TimeoutError) as exc:
            journal.merge_newer(self._journal)
            self._journal = journal
            self._backoff_ms = min(self._backoff_ms * 2, self.max_cooldown_ms)
            self._next_probe_ms = self._clock() + self._backoff_ms
            logger.debug("primary backend %r still unavailable (%s)", self._primary, exc)
            return False
        finally:
            self._probing = False
        self._up = True
        self._backoff_ms = self.cooldown_ms
        logger.info(
            "primary backend %r is back; re-acquired %d held set members, replayed %d removals and %d counters",
            self._primary,
            holdings,
            removals,
            counters,
        )
        if self._on_transition is not None:
            self._on_transition(True)
        return True

    async def _replay(self, journal: _Journal) -> None:
        for (key, member), lease in list(journal.members.items()):
            if isinstance(lease, _Down):
                await self._primary.set_remove(key, member)
            del journal.members[key, member]
        # Re-acquire everything this process still holds, not only what it took during the
        # outage: a primary that restarted has lost the rest. Adding a present member only
        # refreshes its lease, so nothing is counted twice.
        for key in {key for key, _ in self._holdings}:
            live = await self._fallback.set_members(key)
            for held_key, member in [held for held in self._holdings if held[0] == key]:
                if member in live:
                    await self._primary.set_add(key, member, lease_ms=self._holdings[held_key, member])
                else:
                    del self._holdings[held_key, member]  # its lease ran out meanwhile
        for key, (change, window_ms) in list(journal.counters.items()):
            if change > 0:
                await self._primary.counter_incr(key, change, window_ms=window_ms)
            elif change < 0:
                await self._primary.counter_decr(key, -change)
            del journal.counters[key]

    def _share(self, limit: int | None) -> int | None:
        """This process's part of `limit` while degraded."""
        return None if limit is None else math.ceil(limit / self.processes)

    def _bucket_share(self, rate: float, burst: int, cost: int) -> tuple[float, int]:
        """This process's rate and burst while degraded (unscaled if the scaled rate is not representable)."""
        if self.processes == 1:
            return rate, burst
        local_rate, local_burst = rate / self.processes, max(cost, math.ceil(burst / self.processes))
        try:
            bucket_spec(local_rate, local_burst, cost)
        except InvalidArgument:
            return rate, local_burst
        return local_rate, local_burst

    # -- counters -------------------------------------------------------------------

    async def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        result = await self._call_primary(lambda b: b.counter_incr(key, amount, limit=limit, window_ms=window_ms))
        if not isinstance(result, _Down):
            if result.allowed:
                await self._fallback.counter_incr(key, amount, window_ms=window_ms)
            return result
        # The primary did not see the arguments: bad input fails here as it would there.
        check_count("amount", amount)
        check_optional_count("limit", limit, minimum=0)
        check_optional_count("window_ms", window_ms)
        if self.on_error == "deny":
            return CounterResult(False, await self._fallback.counter_get(key), None, degraded=True)
        local_limit = None if self.on_error == "allow" else self._share(limit)
        local = await self._fallback.counter_incr(key, amount, limit=local_limit, window_ms=window_ms)
        if local.allowed:
            self._journal.counter_change(key, amount, window_ms)
        return CounterResult(local.allowed, local.value, local.reset_after_ms, degraded=True)

    async def counter_decr(self, key: str, amount: int = 1) -> int:
        result = await self._call_primary(lambda b: b.counter_decr(key, amount))
        local = await self._fallback.counter_decr(key, amount)
        if not isinstance(result, _Down):
            return result
        self._journal.counter_change(key, -amount, None)
        return local

    async def counter_get(self, key: str) -> int:
        result = await self._call_primary(lambda b: b.counter_get(key))
        return await self._fallback.counter_get(key) if isinstance(result, _Down) else result

    # -- bounded sets with leases -------------------------------------------------------

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        result = await self._call_primary(lambda b: b.set_add(key, member, capacity=capacity, lease_ms=lease_ms))
        if not isinstance(result, _Down):
            if result.added:
                await self._fallback.set_add(key, member, lease_ms=lease_ms)
                self._holdings[key, member] = lease_ms
            return result
        check_optional_count("capacity", capacity, minimum=0)
        check_optional_count("lease_ms", lease_ms)
        if self.on_error == "deny":
            local = SetResult(False, await self._fallback.set_size(key))
        else:
            local_capacity = None if self.on_error == "allow" else self._share(capacity)
            local = await self._fallback.set_add(key, member, capacity=local_capacity, lease_ms=lease_ms)
        if local.added:
            self._journal.members[key, member] = lease_ms
            self._holdings[key, member] = lease_ms
        elif (key, member) not in self._holdings:
            # A frozen server may still run the add that timed out: take it back on recovery.
            self._journal.members[key, member] = _DOWN
        return SetResult(local.added, local.size, degraded=True)

    async def set_remove(self, key: str, member: str) -> int:
        result = await self._call_primary(lambda b: b.set_remove(key, member))
        local = await self._fallback.set_remove(key, member)
        self._holdings.pop((key, member), None)
        if not isinstance(result, _Down):
            return result
        self._journal.members[key, member] = _DOWN
        return local

    async def set_size(self, key: str) -> int:
        result = await self._call_primary(lambda b: b.set_size(key))
        return await self._fallback.set_size(key) if isinstance(result, _Down) else result

    async def set_members(self, key: str) -> frozenset[str]:
        result = await self._call_primary(lambda b: b.set_members(key))
        return await self._fallback.set_members(key) if isinstance(result, _Down) else result

    # -- token buckets --------------------------------------------------------------------

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        result = await self._call_primary(lambda b: b.bucket_consume(key, rate=rate, burst=burst, cost=cost))
        if not isinstance(result, _Down):
            return result
        bucket_spec(rate, burst, cost)  # the primary did not see the arguments
        if self.on_error != "fallback":
            allowed = self.on_error == "allow"
            retry_after_ms = 0 if allowed else max(self._next_probe_ms - self._clock(), 1)
            return BucketResult(allowed, 0, retry_after_ms, 0, degraded=True)
        local_rate, local_burst = self._bucket_share(rate, burst, cost)
        local = await self._fallback.bucket_consume(key, rate=local_rate, burst=local_burst, cost=cost)
        return BucketResult(local.allowed, local.remaining, local.retry_after_ms, local.reset_after_ms, degraded=True)

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        result = await self._call_primary(lambda b: b.bucket_peek(key, rate=rate, burst=burst, cost=cost))
        if not isinstance(result, _Down):
            return result
        bucket_spec(rate, burst, cost)  # the primary did not see the arguments
        local_rate, local_burst = self._bucket_share(rate, burst, cost)
        local = await self._fallback.bucket_peek(key, rate=local_rate, burst=local_burst, cost=cost)
        return BucketResult(local.allowed, local.remaining, local.retry_after_ms, local.reset_after_ms, degraded=True)

    async def bucket_reset(self, key: str) -> None:
        await self._call_primary(lambda b: b.bucket_reset(key))
        await self._fallback.bucket_reset(key)

    # -- the rest of the protocol -----------------------------------------------------------

    async def ping(self) -> None:
        """Answer while the fallback answers; the primary is tried when a probe is due."""
        await self._call_primary(lambda b: b.ping())
        await self._fallback.ping()

    async def clear(self) -> None:
        self._journal = _Journal()
        self._holdings.clear()
        await self._fallback.clear()
        await self._primary.clear()

    async def aclose(self) -> None:
        try:
            await self._primary.aclose()
        finally:
            await self._fallback.aclose()
