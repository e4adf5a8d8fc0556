"""`write_back`: after an outage, make the primary hold what this process holds, exactly once.

The first round re-acquires every member this process still holds (a primary
that restarted empty gets them back at once; adding a present member only
refreshes its lease, so nothing is counted twice), without a capacity check,
since they belong to live connections (a set may briefly hold more than its
capacity). The same round applies the journal: removals, adds, and each
counter's net change (never below 0). Token buckets are not written back: each
process refilled its own during the outage.

Calls keep being answered locally while this runs, and journalled; each further
round writes what the previous one left behind, until a round ends with nothing
new. The caller closes the breaker right then, with no await in between, so no
change can fall between the write-back and the primary.

Calls of a round go concurrently, in chunks of `CHUNK`, so a driver that
pipelines concurrent calls (`RedisBackend`) sends them in a few round trips. If a
round fails, or the task running it is cancelled, what it did not write is put
back in the journal (a counter change already sent is not: increments are written
at most once), and the next recovery starts over with every holding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ..backend import Backend
from ..errors import BackendError, BackendUnavailable
from .breaker import logger
from .holdings import Holdings
from .journal import Absent, Journal

__all__ = ["CHUNK", "MAX_ROUNDS", "Written", "write_back"]

T = TypeVar("T")

CHUNK: Final = 1_000
"""Calls in flight at once during a write-back."""
MAX_ROUNDS: Final = 50
"""Rounds after which a write-back that never catches up gives up until the next probe."""

Watched = Callable[[Awaitable[Any]], Awaitable[Any]]
_Calls = list[tuple[object, Coroutine[Any, Any, Any]]]
"""(what a call writes: a (key, member) or a counter key, the call)."""


@dataclass(slots=True)
class Written:
    """What a write-back did, for the log."""

    held: int = 0
    removals: int = 0
    counters: int = 0
    rounds: int = 0

    def __str__(self) -> str:
        return (
            f"re-acquired {self.held} held set members, replayed {self.removals} removals"
            f" and {self.counters} counters in {self.rounds} round(s)"
        )


async def write_back(primary: Backend, journal: Journal, holdings: Holdings, watched: Watched) -> Written:
    """Write `holdings` and `journal` to `primary` until the journal stays empty (see the module docstring).

    `watched` wraps each call in the primary's deadline. Raises `BackendUnavailable`
    (or `TimeoutError`) when the primary fails again, with the journal restored.
    """
    written = Written()
    pending = journal.take()
    first = True
    while True:
        written.rounds += 1
        calls: _Calls = []
        for (key, member), state in pending.members.items():
            if isinstance(state, Absent):
                written.removals += 1
                calls.append(((key, member), primary.set_remove(key, member)))
            else:
                calls.append(((key, member), primary.set_add(key, member, lease_ms=state)))
        if first:
            for key, member, lease_ms in holdings.live():
                if (key, member) not in pending.members:
                    written.held += 1
                    calls.append(((key, member), primary.set_add(key, member, lease_ms=lease_ms)))
        for key, (change, window_ms) in pending.counters.items():
            written.counters += 1
            call = (
                primary.counter_incr(key, change, window_ms=window_ms)
                if change > 0
                else primary.counter_decr(key, -change)
            )
            calls.append((key, call))
        await _run(calls, pending, journal, watched)
        if not journal:
            return written
        if written.rounds >= MAX_ROUNDS:
            raise BackendUnavailable(f"the write-back did not catch up after {MAX_ROUNDS} rounds")
        pending = journal.take()
        first = False


async def _run(calls: _Calls, pending: Journal, journal: Journal, watched: Watched) -> None:
    """Run `calls` in chunks; on failure put back in `journal` what `pending` still needs."""
    done = 0
    try:
        for start in range(0, len(calls), CHUNK):
            chunk = calls[start : start + CHUNK]
            done = start + len(chunk)
            failure = await _run_chunk(chunk, pending, watched)
            if failure is not None:
                raise failure
    except BaseException:
        for _, call in calls[done:]:
            call.close()  # never started
        journal.restore(pending)
        raise


async def _run_chunk(chunk: _Calls, pending: Journal, watched: Watched) -> BaseException | None:
    """Run one chunk at once, forgetting from `pending` what was written; the first failure, if any."""
    try:
        results = await asyncio.gather(*(watched(call) for _, call in chunk), return_exceptions=True)
    except BaseException:
        _forget_counters(pending, chunk)
        raise
    failure: BaseException | None = None
    for (target, _), result in zip(chunk, results, strict=True):
        if isinstance(result, BackendError) and not isinstance(result, BackendUnavailable):
            # Not an outage (a key of the wrong type, a refused client): retrying will not help.
            logger.error("could not write back %r after an outage: %s", target, result)
            _forget(pending, target)
        elif isinstance(result, BaseException):
            failure = failure or result
        else:
            _forget(pending, target)
    if failure is not None:
        _forget_counters(pending, chunk)
    return failure


def _forget(pending: Journal, target: object) -> None:
    """`target` (a member or a counter key) was written: it need not be put back."""
    if isinstance(target, tuple):
        pending.members.pop(target, None)
    else:
        pending.counters.pop(str(target), None)


def _forget_counters(pending: Journal, chunk: _Calls) -> None:
    """The counter changes of a chunk that got no answer: they may have been applied, so they are
    not sent again (members are: adding and removing are idempotent)."""
    for target, _ in chunk:
        if isinstance(target, str) and target in pending.counters:
            logger.warning("counter %r: its write-back got no answer; not sent again", target)
            del pending.counters[target]
