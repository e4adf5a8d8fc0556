"""`Watchdog`: tell a silent primary from a busy event loop.

A call to the primary is abandoned when the primary has answered nothing for
`timeout_ms` while the call waits. Any answer from any call (a result, or an
error reply) is progress and restarts the count, so a long queue of calls that
keeps moving is never mistaken for an outage.

The count advances in ticks of a quarter of the timeout, and a tick that fires
late is credited with its nominal length only. Time the event loop spent on other
work (a stall, a burst of handshakes, a slow callback) is therefore not counted as
silence: the primary's reply may have been sitting unread in the socket all along.
The price is that, on a loop that is late for every tick, detection takes longer
than `timeout_ms` of wall time; on an idle loop it takes `timeout_ms`.

A primary that shows its progress (`ShowsProgress`: replies read so far, as each
arrives) is not silent while a reply arrived since the last tick, even if no call
has ended yet: one call that carries thousands of writes (a heartbeat) is answered
in parts, and each part is a sign of life.

Until the primary has answered once (connection set-up, cluster discovery,
script loading), and again after each outage, the allowance is `warmup_ms`.

The tick runs only while calls wait: the first tick after the last call ended
stops it, so an idle backend runs nothing. A call that arrives while a tick is
still due does not reschedule it (a timer handle per burst of calls costs more
than the calls): the count restarts at the call, the next tick credits only the
time since then, and the last tick is shortened so that, on an idle loop, the
allowance runs out exactly `timeout_ms` after the count started.

A call is watched by a `Watch`, which behaves as an ``asyncio.timeout`` whose
deadline only the watchdog moves: when the allowance runs out, the task of every
waiting call is cancelled (on the next turn of the loop, unless the call ended
first), and the call ends with `TimeoutError` unless something else cancelled the
task too. It is cheaper than an ``asyncio.timeout`` (no context manager, no timer
handle per call), which matters since every call to the primary is watched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Watch", "Watchdog"]

_TICKS_PER_TIMEOUT = 4


class Watch:
    """One call waiting on the primary: its task, and whether the watchdog cancelled that task."""

    __slots__ = ("_cancelling", "_task", "ended", "expired")

    def __init__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a call to the primary must run inside an asyncio task")
        self._task = task
        self._cancelling = task.cancelling()
        self.ended = False
        self.expired = False
        """The watchdog cancelled the call's task (the allowance ran out while it waited)."""

    def __repr__(self) -> str:
        return f"Watch({'expired' if self.expired else 'ended' if self.ended else 'waiting'})"

    def expire(self) -> None:
        """The allowance ran out: cancel the call's task, unless the call ended meanwhile."""
        if not self.ended:
            self.expired = True
            self._task.cancel()

    def end(self) -> bool:
        """The call ended; True when it must end with `TimeoutError` instead of `CancelledError`.

        As ``asyncio.timeout`` does, the watchdog's own cancellation is withdrawn
        (`Task.uncancel`) whatever the call ended with, and the call is reported as
        timed out only when nothing else asked to cancel the task meanwhile.
        """
        self.ended = True
        return self.expired and self._task.uncancel() <= self._cancelling


class Watchdog:
    """Deadlines for the calls waiting on one primary; see the module docstring."""

    __slots__ = (
        "_answered",
        "_due",
        "_handle",
        "_interval_s",
        "_last_tick",
        "_progress",
        "_progress_seen",
        "_quiet_s",
        "_timeout_s",
        "_waiting",
        "_warmup_s",
    )

    def __init__(self, timeout_ms: int, warmup_ms: int, progress: Callable[[], int] | None = None) -> None:
        self._progress = progress
        self._progress_seen = 0 if progress is None else progress()
        self._timeout_s = timeout_ms / 1000
        self._warmup_s = max(timeout_ms, warmup_ms) / 1000
        self._interval_s = self._timeout_s / _TICKS_PER_TIMEOUT
        self._waiting: set[Watch] = set()
        self._quiet_s = 0.0
        self._last_tick = 0.0
        self._due = 0.0
        """When the scheduled tick is due: a tick that fires later is credited up to this only."""
        self._handle: asyncio.TimerHandle | None = None
        self._answered = False

    def __repr__(self) -> str:
        return f"Watchdog(timeout={self._timeout_s * 1000:g} ms, waiting={len(self._waiting)})"

    @property
    def warm(self) -> bool:
        """True once the primary answered since the watchdog was made or last `reset`."""
        return self._answered

    def watch(self) -> Watch:
        """Watch one call of the current task: call `done` when it ends, however it ends."""
        watch = Watch()
        if not self._waiting:
            # Nothing waited until now, so no silence could be observed: start counting afresh.
            loop = asyncio.get_running_loop()
            self._quiet_s = 0.0
            self._last_tick = loop.time()
            if self._progress is not None:
                self._progress_seen = self._progress()
            if self._handle is None:
                self._schedule(loop, self._last_tick + self._interval_s)
        self._waiting.add(watch)
        return watch

    def done(self, watch: Watch, *, answered: bool) -> bool:
        """The call under `watch` ended; `answered` when the primary replied (even with an error).

        True when the watchdog cancelled the call and nothing else did: the caller
        raises `TimeoutError` in place of the `CancelledError` (see `Watch.end`).
        """
        timed_out = watch.end()
        self._waiting.discard(watch)
        if answered:
            self._quiet_s = 0.0
            self._answered = True
        return timed_out

    def reset(self) -> None:
        """The primary went away: its next first answer gets the warm-up allowance again."""
        self._answered = False

    def _schedule(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self._due = due
        self._handle = loop.call_at(due, self._tick)

    def _tick(self) -> None:
        if not self._waiting:
            self._handle = None  # every call ended since the last tick: stop until the next one
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Late or not, a tick counts no more than the time from the last tick (or the restart) to its due time.
        self._quiet_s += max(min(now, self._due) - self._last_tick, 0.0)
        self._last_tick = now
        if self._progress is not None:
            seen = self._progress()
            if seen != self._progress_seen:  # a reply arrived since the last tick
                self._progress_seen = seen
                self._quiet_s = 0.0
        allowance = self._timeout_s if self._answered else self._warmup_s
        if self._quiet_s < allowance * 0.999:
            self._schedule(loop, now + min(self._interval_s, allowance - self._quiet_s))
            return
        # Silent for the whole allowance: every waiting call ends with TimeoutError. The tasks are
        # cancelled on the next turn, as an expired asyncio.timeout does: a call that ends first is spared.
        self._handle = None
        waiting, self._waiting = self._waiting, set()
        for watch in waiting:
            loop.call_soon(watch.expire)
