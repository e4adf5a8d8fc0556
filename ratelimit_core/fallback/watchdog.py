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

The tick is scheduled only while a call waits: an idle backend runs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Watchdog"]

_TICKS_PER_TIMEOUT = 4


class Watchdog:
    """Deadlines for the calls waiting on one primary; see the module docstring."""

    __slots__ = (
        "_answered",
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
        self._waiting: set[asyncio.Timeout] = set()
        self._quiet_s = 0.0
        self._last_tick = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._answered = False

    def __repr__(self) -> str:
        return f"Watchdog(timeout={self._timeout_s * 1000:g} ms, waiting={len(self._waiting)})"

    @property
    def warm(self) -> bool:
        """True once the primary answered since the watchdog was made or last `reset`."""
        return self._answered

    def watch(self) -> asyncio.Timeout:
        """A deadline for one call: enter it at once (``async with``), and call `done` after it."""
        timeout = asyncio.timeout(None)
        self._waiting.add(timeout)
        if self._handle is None:
            # Nothing waited until now, so no silence could be observed: start counting afresh.
            loop = asyncio.get_running_loop()
            self._quiet_s = 0.0
            self._last_tick = loop.time()
            if self._progress is not None:
                self._progress_seen = self._progress()
            self._handle = loop.call_at(self._last_tick + self._interval_s, self._tick)
        return timeout

    def done(self, timeout: asyncio.Timeout, *, answered: bool) -> None:
        """The call under `timeout` ended; `answered` when the primary replied (even with an error)."""
        self._waiting.discard(timeout)
        if answered:
            self._quiet_s = 0.0
            self._answered = True
        if not self._waiting and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def reset(self) -> None:
        """The primary went away: its next first answer gets the warm-up allowance again."""
        self._answered = False

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._quiet_s += min(now - self._last_tick, self._interval_s)
        self._last_tick = now
        if self._progress is not None:
            seen = self._progress()
            if seen != self._progress_seen:  # a reply arrived since the last tick
                self._progress_seen = seen
                self._quiet_s = 0.0
        allowance = self._timeout_s if self._answered else self._warmup_s
        if self._quiet_s < allowance * 0.999 or not self._waiting:
            self._handle = loop.call_at(now + self._interval_s, self._tick)
            return
        # Silent for the whole allowance: every waiting call ends with TimeoutError.
        self._handle = None
        waiting, self._waiting = self._waiting, set()
        for timeout in waiting:
            timeout.reschedule(now)
