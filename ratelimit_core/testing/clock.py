"""`RewindableClock`: a `ManualClock` that can also step backwards, as real clocks do."""

from __future__ import annotations

from ..clock import ManualClock

__all__ = ["RewindableClock"]


class RewindableClock(ManualClock):
    """A `ManualClock` that `rewind` moves backwards: an NTP step, or a failover to a
    Redis server whose clock is behind. It breaks the `Clock` promise on purpose, to
    test what the backends do then (see `Backend.bucket_consume`)."""

    __slots__ = ()

    def rewind(self, ms: int) -> int:
        """Move the clock back by `ms` milliseconds (never below 0) and return the new time."""
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= self._now:
            raise ValueError(f"ms must be an int between 0 and the current time ({self._now}), got {ms!r}")
        self._now -= ms
        return self._now

    def __repr__(self) -> str:
        return f"RewindableClock(now={self._now})"
