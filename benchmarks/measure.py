"""Figures and how they are timed.

Every figure is the median of several runs, and the subjects compared in one
table row group run in turn (A, B, C, A, B, C, ...) so that a slow moment of a
shared machine falls on all of them alike. In-process figures (memory, Channels)
count this process's CPU time (`time.process_time`, which includes the peers'
own threads), which other load on the machine disturbs far less than wall time;
Redis figures are wall time, since they include waiting for the server.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["Figure", "cpu_clock", "interleaved", "rate_of", "wall_clock"]

cpu_clock = time.process_time
wall_clock = time.perf_counter


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured row of the table."""

    section: str
    """``memory``, ``footprint``, ``channels``, ``fakeredis`` or ``redis``."""
    subject: str
    """What was measured, e.g. ``ours bucket_consume`` or ``limits fixed window``."""
    keys: str = "-"
    """``1`` or ``10k`` (the many-keys case), or ``-``."""
    path: str = "-"
    """``allowed`` or ``denied``, or ``-``."""
    callers: int = 1
    value: float = 0.0
    """The median, in `unit`."""
    unit: str = "ops/s"
    runs: tuple[float, ...] = field(default=())
    note: str = ""


def rate_of(ops: int, seconds: float) -> float:
    return ops / seconds if seconds > 0 else float("inf")


_Name = TypeVar("_Name", bound=Hashable)


async def interleaved(
    runs: int, subjects: Mapping[_Name, Callable[[], Awaitable[float]]]
) -> dict[_Name, tuple[float, tuple[float, ...]]]:
    """Run each subject once per round, `runs` rounds; each subject's median and runs."""
    values: dict[_Name, list[float]] = {name: [] for name in subjects}
    for _ in range(runs):
        for name, once in subjects.items():
            values[name].append(await once())
    return {name: (statistics.median(found), tuple(found)) for name, found in values.items()}
