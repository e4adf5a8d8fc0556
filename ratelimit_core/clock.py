"""Clocks: callables returning the current time as integer milliseconds."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "monotonic_ms"]

Clock = Callable[[], int]
"""Any zero-argument callable returning integer milliseconds.

A clock should not go backwards; when one does (a wall clock stepped, a failover to
a server whose clock is behind), no bucket refuses for longer than its
``retry_after_ms`` says (see `Backend.bucket_consume`)."""


def monotonic_ms() -> int:
    """The process's monotonic clock in whole milliseconds (the memory backend's default)."""
    return time.monotonic_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    __slots__ = ("_now",)

    def __init__(self, start_ms: int = 0) -> None:
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0:
            raise ValueError(f"start_ms must be a non-negative int, got {start_ms!r}")
        self._now = start_ms

    def __call__(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        """Move the clock forward by `ms` milliseconds and return the new time."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"ms must be a non-negative int, got {ms!r}")
        self._now += ms
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now})"
