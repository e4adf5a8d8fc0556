"""`FallbackBackend`: keep deciding while the primary backend (Redis) is down.

What it does is written once, in the documentation's "Outages and recovery" page
(docs/concepts/outages.md): what counts as an outage and what does not, the
``on_error`` choices, per-process limits, the probes, and exactly what is written
back after an outage (and why a late write from a frozen server agrees with it).
This module ties the parts together: `breaker` (open or closed, the probe
schedule), `watchdog` (a silent primary told from a busy event loop), `holdings`
and `journal` (what this process holds and changed), `recovery` (the write-back)
and `shares` (per-process limits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, ParamSpec, TypeVar

from ..arguments import check_count, check_optional_count
from ..backend import (
    ADD_MANY_YIELD_EVERY,
    Backend,
    BucketResult,
    ClosesOnExit,
    CounterResult,
    SetResult,
    ShowsProgress,
    add_many,
)
from ..clock import Clock, monotonic_ms
from ..errors import BackendError, BackendUnavailable
from ..failure_modes import OnError, check_on_error
from ..memory import MemoryBackend
from ..primitives import PRIMITIVES
from .breaker import Breaker, logger
from .holdings import Holdings
from .journal import Journal
from .recovery import write_back
from .shares import bucket_share, share
from .watchdog import Watch, Watchdog

__all__ = [
    "DEFAULT_COOLDOWN_MS",
    "DEFAULT_MAX_COOLDOWN_MS",
    "DEFAULT_TIMEOUT_MS",
    "DEFAULT_WARMUP_MS",
    "FallbackBackend",
]

DEFAULT_TIMEOUT_MS: Final = 50
"""How long the primary may answer nothing while a call waits before the breaker opens."""
DEFAULT_WARMUP_MS: Final = 2_000
"""The same allowance until the primary has answered once, and again after each outage."""
DEFAULT_COOLDOWN_MS: Final = 1_000
"""The first probe of a primary that went down comes this long after the breaker opened."""
DEFAULT_MAX_COOLDOWN_MS: Final = 30_000
"""The interval between probes doubles up to this."""

_T = TypeVar("_T")
_P = ParamSpec("_P")


class _Down:
    """The primary did not answer; `tried` when the call was sent to it (and may still run)."""

    __slots__ = ("tried",)

    def __init__(self, tried: bool) -> None:
        self.tried = tried


_UNTRIED: Final = _Down(tried=False)
_TRIED: Final = _Down(tried=True)


class FallbackBackend(ClosesOnExit):
    """A `Backend` that answers from `fallback` (or allows, or denies) while `primary` is down.

    What it does during and after an outage: docs/concepts/outages.md.

    :param primary: the backend every call goes to while it answers (usually a `RedisBackend`).
    :param fallback: what answers while it is down under ``"fallback"``; a new `MemoryBackend` by default.
    :param on_error: ``"fallback"``, ``"allow"`` (fail open) or ``"deny"`` (fail closed, results marked
        ``unavailable``) while the primary is down.
    :param processes: while degraded, capacities, limits and bucket rates are divided by this.
    :param timeout_ms: how long the primary may answer nothing while a call waits before the breaker
        opens; ``None`` waits as long as the primary's own client does.
    :param warmup_ms: the same allowance until the primary has answered once, and after each outage.
    :param cooldown_ms: the first probe comes this long after the breaker opened.
    :param max_cooldown_ms: the probe interval doubles up to this.
    :param clock: times the breaker and the holdings' leases (monotonic by default); it is not the
        backends' clock.
    :param on_transition: called with False when the breaker opens and True when it closes.
    """

    def __init__(
        self,
        primary: Backend,
        fallback: Backend | None = None,
        *,
        on_error: OnError = "fallback",
        processes: int = 1,
        timeout_ms: int | None = DEFAULT_TIMEOUT_MS,
        warmup_ms: int = DEFAULT_WARMUP_MS,
        cooldown_ms: int = DEFAULT_COOLDOWN_MS,
        max_cooldown_ms: int = DEFAULT_MAX_COOLDOWN_MS,
        clock: Clock | None = None,
        on_transition: Callable[[bool], None] | None = None,
    ) -> None:
        self.on_error: OnError = check_on_error(on_error)
        self._primary = primary
        self._fallback = MemoryBackend() if fallback is None else fallback
        self.processes = check_count("processes", processes)
        timeout = check_optional_count("timeout_ms", timeout_ms)
        warmup = check_count("warmup_ms", warmup_ms)
        self._timeout_s = None if timeout is None else timeout / 1000
        progress = _replies_read(primary) if isinstance(primary, ShowsProgress) else None
        self._watchdog = None if timeout is None else Watchdog(timeout, warmup, progress)
        cooldown = check_count("cooldown_ms", cooldown_ms)
        max_cooldown = check_count("max_cooldown_ms", max_cooldown_ms, minimum=cooldown)
        self._clock = clock or monotonic_ms
        self._breaker = Breaker(
            cooldown_ms=cooldown, max_cooldown_ms=max_cooldown, clock=self._clock, on_transition=on_transition
        )
        self._journal = Journal()
        self._holdings = Holdings(self._clock)
        self._recovery: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "degraded" if self._breaker.is_open else "up"
        return f"FallbackBackend({self._primary!r}, {self._fallback!r}, on_error={self.on_error!r}, {state})"

    @property
    def primary(self) -> Backend:
        """The backend every call goes to while it answers."""
        return self._primary

    @property
    def fallback(self) -> Backend:
        """The per-process backend that answers while the primary is down (``on_error="fallback"``)."""
        return self._fallback

    @property
    def degraded(self) -> bool:
        """True while the breaker is open (calls are not going to the primary)."""
        return self._breaker.is_open

    @property
    def timeout_ms(self) -> int | None:
        """How long the primary may answer nothing while a call waits (None: no limit)."""
        return None if self._timeout_s is None else round(self._timeout_s * 1000)

    @property
    def cooldown_ms(self) -> int:
        """The first probe interval after the breaker opens."""
        return self._breaker.cooldown_ms

    @property
    def max_cooldown_ms(self) -> int:
        """The longest probe interval (the interval doubles up to it)."""
        return self._breaker.max_cooldown_ms

    @property
    def held(self) -> int:
        """Set members this process holds now (what a recovery re-acquires)."""
        return len(self._holdings)

    @property
    def journalled(self) -> int:
        """Changes waiting to be written back to the primary."""
        return len(self._journal)

    # -- the primary, its deadline and the breaker ----------------------------------

    async def _call_primary(
        self, method: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T | _Down:
        """``method(*args, **kwargs)``, a method of the primary, under the watchdog: its result, or `_Down`.

        The primary's method is called only once the breaker lets the call through. The
        watch is written out here rather than through `_watched`: this is every call's
        path, and each coroutine and closure it keeps alive while Redis answers counts
        towards the garbage collector's next pass (see docs/performance.md).
        """
        if self._breaker.is_open and not await self._recovered():
            return _UNTRIED
        watchdog = self._watchdog
        watch = None if watchdog is None else watchdog.watch()
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            if _timed_out(watchdog, watch, exc):
                self._went_down(TimeoutError())
                return _TRIED
            if isinstance(exc, (BackendUnavailable, TimeoutError)):
                self._went_down(exc)
                return _TRIED
            raise
        if watchdog is not None and watch is not None:
            watchdog.done(watch, answered=True)
        return result

    async def _watched(self, call: Awaitable[_T]) -> _T:
        """`call` on the primary under the watchdog's deadline (raises `TimeoutError` on silence)."""
        watchdog = self._watchdog
        if watchdog is None:
            return await call
        watch = watchdog.watch()
        try:
            result = await call
        except BaseException as exc:
            if _timed_out(watchdog, watch, exc):
                raise TimeoutError from exc
            raise
        watchdog.done(watch, answered=True)
        return result

    def _went_down(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError) and not str(exc):
            reason = f"no answer within {self._timeout_s and self._timeout_s * 1000:g} ms"
        else:
            reason = str(exc) or type(exc).__name__
        if not self._breaker.is_open and self._watchdog is not None:
            self._watchdog.reset()
        self._breaker.open(self._primary, reason, self.on_error)
        if self._prober is None:
            # A process with no traffic must still write back what it changed (a release made
            # during the outage would otherwise stay on the primary until its lease ends).
            self._prober = asyncio.get_running_loop().create_task(self._probe_while_down(), name="ratelimit probe")

    async def _probe_while_down(self) -> None:
        """Probe on the breaker's schedule until the primary is back (calls may probe sooner)."""
        try:
            while self._breaker.is_open:
                await asyncio.sleep(self._breaker.retry_after_ms / 1000)
                if self._breaker.is_open and self._recovery is None and self._breaker.probe_due():
                    recovery = self._start_recovery()
                    await asyncio.wait((recovery,))
        finally:
            self._prober = None

    def _start_recovery(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._recover(), name="ratelimit fallback recovery")
        self._recovery = task
        return task

    async def _recovered(self) -> bool:
        """Start a recovery if a probe is due and wait for it up to one timeout; True if the primary is back.

        The recovery runs in a task of its own: cancelling the caller does not cut it
        short, and calls made meanwhile are answered locally (and journalled).
        """
        if self._recovery is not None or not self._breaker.probe_due():
            return False
        await asyncio.wait((self._start_recovery(),), timeout=self._timeout_s)
        return not self._breaker.is_open

    async def _recover(self) -> None:
        try:
            await self._watched(self._primary.ping())
            written = await write_back(self._primary, self._journal, self._holdings, self._watched)
        except (BackendUnavailable, TimeoutError) as exc:
            self._breaker.probe_failed(self._primary, str(exc) or type(exc).__name__)
            return
        except Exception as exc:  # not an outage: a misconfiguration, or a bug; never lost silently
            logger.error("recovery of primary backend %r failed: %s", self._primary, exc, exc_info=exc)
            self._breaker.probe_failed(self._primary, str(exc))
            return
        finally:
            self._recovery = None
        # The journal is empty, and nothing ran since write_back saw so.
        self._breaker.close(self._primary, str(written))

    # -- counters -------------------------------------------------------------------

    async def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        result = await self._call_primary(self._primary.counter_incr, key, amount, limit=limit, window_ms=window_ms)
        if not isinstance(result, _Down):
            if result.allowed:
                await self._fallback.counter_incr(key, amount, window_ms=window_ms)
            return result
        # The primary did not see the arguments: bad input fails here as it would there.
        PRIMITIVES["counter_incr"].check(key, amount, limit, window_ms)
        if self.on_error == "deny":
            value = await self._fallback.counter_get(key)
            return CounterResult(False, value, None, degraded=True, unavailable=True)
        local_limit = None if self.on_error == "allow" else share(limit, self.processes)
        local = await self._fallback.counter_incr(key, amount, limit=local_limit, window_ms=window_ms)
        if local.allowed:
            self._journal.counter_change(key, amount, window_ms)
        return CounterResult(local.allowed, local.value, local.reset_after_ms, degraded=True)

    async def counter_decr(self, key: str, amount: int = 1) -> int:
        result = await self._call_primary(self._primary.counter_decr, key, amount)
        local = await self._fallback.counter_decr(key, amount)
        if not isinstance(result, _Down):
            return result
        self._journal.counter_change(key, -amount, None)
        return local

    async def counter_get(self, key: str) -> int:
        result = await self._call_primary(self._primary.counter_get, key)
        return await self._fallback.counter_get(key) if isinstance(result, _Down) else result

    # -- bounded sets with leases -------------------------------------------------------

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        result = await self._call_primary(self._primary.set_add, key, member, capacity=capacity, lease_ms=lease_ms)
        return await self._set_add_after(result, key, member, capacity, lease_ms)

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        """`set_add` of each ``(key, member)`` with `lease_ms` and no capacity, as one call to the primary.

        Each add then goes on as its own `set_add` would with the primary's answer to it:
        an add the primary failed to answer (an outage, for all of them or some) is
        taken locally and journalled, and the breaker opens, as for one `set_add`.
        """
        for key, member in members:
            PRIMITIVES["set_add"].check(key, member, None, lease_ms)
        answer = await self._call_primary(add_many, self._primary, members, lease_ms)
        if isinstance(answer, _Down):
            answers: list[SetResult | BackendError | _Down] = [answer] * len(members)
        else:
            lost = next((each for each in answer if isinstance(each, BackendUnavailable)), None)
            if lost is not None:
                self._went_down(lost)
            answers = [_TRIED if isinstance(each, BackendUnavailable) else each for each in answer]
        results: list[SetResult | BackendError] = []
        for i, ((key, member), each) in enumerate(zip(members, answers, strict=True)):
            if i and not i % ADD_MANY_YIELD_EVERY:
                await asyncio.sleep(0)  # let other tasks (frames) run between parts of a large heartbeat
            if isinstance(each, BackendError):
                results.append(each)  # a storage error that is no outage (e.g. WRONGTYPE): that add alone fails
            else:
                results.append(await self._set_add_after(each, key, member, None, lease_ms))
        return results

    async def _set_add_after(
        self, result: SetResult | _Down, key: str, member: str, capacity: int | None, lease_ms: int | None
    ) -> SetResult:
        """`set_add`'s outcome, given the primary's answer (or its absence)."""
        journal = self._journal
        if not isinstance(result, _Down):
            if result.added:
                self._holdings.hold(key, member, lease_ms)
                if journal and (key, member) in journal.members:
                    # Sent before the outage began and answered after: the write-back must agree.
                    journal.added(key, member, lease_ms, primary_may_hold=True)
                await self._fallback.set_add(key, member, lease_ms=lease_ms)
            return result
        PRIMITIVES["set_add"].check(key, member, capacity, lease_ms)  # the primary did not see the arguments
        held = (key, member) in self._holdings
        if self.on_error == "deny":
            local = SetResult(False, await self._fallback.set_size(key), degraded=True, unavailable=True)
        else:
            local_capacity = None if self.on_error == "allow" else share(capacity, self.processes)
            added = await self._fallback.set_add(key, member, capacity=local_capacity, lease_ms=lease_ms)
            local = SetResult(added.added, added.size, degraded=True)
        if local.added:
            may_hold = result.tried or (held and (key, member) not in journal.unseen)
            journal.added(key, member, lease_ms, primary_may_hold=may_hold)
            self._holdings.hold(key, member, lease_ms)
        elif result.tried and not held:
            # A frozen server may still run the add that got no answer: take it back on recovery.
            journal.removed(key, member)
        return local

    async def set_remove(self, key: str, member: str) -> int:
        result = await self._call_primary(self._primary.set_remove, key, member)
        local = await self._fallback.set_remove(key, member)
        self._holdings.release(key, member)
        journal = self._journal
        if not isinstance(result, _Down):
            if journal and (key, member) in journal.members:
                journal.removed(key, member)  # an earlier add is still to be written back: keep the order
            return result
        journal.removed(key, member)
        return local

    async def set_size(self, key: str) -> int:
        result = await self._call_primary(self._primary.set_size, key)
        return await self._fallback.set_size(key) if isinstance(result, _Down) else result

    async def set_members(self, key: str) -> frozenset[str]:
        result = await self._call_primary(self._primary.set_members, key)
        return await self._fallback.set_members(key) if isinstance(result, _Down) else result

    # -- token buckets --------------------------------------------------------------------

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        result = await self._call_primary(self._primary.bucket_consume, key, rate=rate, burst=burst, cost=cost)
        if not isinstance(result, _Down):
            return result
        PRIMITIVES["bucket_consume"].check(key, rate, burst, cost)  # the primary did not see the arguments
        if self.on_error == "allow":
            return BucketResult(True, 0, 0, 0, degraded=True)
        if self.on_error == "deny":
            return BucketResult(False, 0, self._breaker.retry_after_ms, 0, degraded=True, unavailable=True)
        local_rate, local_burst = bucket_share(rate, burst, cost, self.processes)
        local = await self._fallback.bucket_consume(key, rate=local_rate, burst=local_burst, cost=cost)
        return BucketResult(local.allowed, local.remaining, local.retry_after_ms, local.reset_after_ms, degraded=True)

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        result = await self._call_primary(self._primary.bucket_peek, key, rate=rate, burst=burst, cost=cost)
        if not isinstance(result, _Down):
            return result
        PRIMITIVES["bucket_peek"].check(key, rate, burst, cost)  # the primary did not see the arguments
        local_rate, local_burst = bucket_share(rate, burst, cost, self.processes)
        local = await self._fallback.bucket_peek(key, rate=local_rate, burst=local_burst, cost=cost)
        return BucketResult(local.allowed, local.remaining, local.retry_after_ms, local.reset_after_ms, degraded=True)

    async def bucket_reset(self, key: str) -> None:
        await self._call_primary(self._primary.bucket_reset, key)
        await self._fallback.bucket_reset(key)

    # -- the rest of the protocol -----------------------------------------------------------

    async def ping(self) -> None:
        """Answer while the fallback answers; the primary is tried when a probe is due."""
        await self._call_primary(self._primary.ping)
        await self._fallback.ping()

    async def clear(self) -> None:
        self._journal = Journal()
        self._holdings.clear()
        await self._fallback.clear()
        await self._primary.clear()

    async def aclose(self) -> None:
        """Stop probing and any recovery in progress (what it did not write stays journalled), then close both."""
        for task in (self._prober, self._recovery):
            if task is not None:
                task.cancel()
                await asyncio.wait((task,))
        try:
            await self._primary.aclose()
        finally:
            await self._fallback.aclose()


def _timed_out(watchdog: Watchdog | None, watch: Watch | None, exc: BaseException) -> bool:
    """A watched call ended with `exc`: tell the watchdog; True when it is the watchdog's own timeout.

    An error reply is an answer (the primary is there); an outage or no reply is not.
    """
    if watchdog is None or watch is None:
        return False
    answered = isinstance(exc, BackendError) and not isinstance(exc, BackendUnavailable)
    return watchdog.done(watch, answered=answered) and isinstance(exc, asyncio.CancelledError)


def _replies_read(primary: ShowsProgress) -> Callable[[], int]:
    return lambda: primary.replies_read
