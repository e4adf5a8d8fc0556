"""The memory backend's bytes per idle key (tracemalloc), and that expired keys are reclaimed.

Keys are built inside the measured region, as an application builds them per
request: the backend keeps each key string, so it counts.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Awaitable, Callable

from ratelimit_core import ManualClock, MemoryBackend

from .measure import Figure
from .scales import Scale

__all__ = ["footprint_figures"]

_IDLE_MS = 3_600_000
"""Every primitive's state below expires within this."""

Fill = Callable[[MemoryBackend, int], Awaitable[None]]


async def _buckets(backend: MemoryBackend, n: int) -> None:
    for i in range(n):
        await backend.bucket_consume(f"user:{i}", rate=10, burst=20)


async def _counters(backend: MemoryBackend, n: int) -> None:
    for i in range(n):
        await backend.counter_incr(f"user:{i}", limit=100, window_ms=60_000)


async def _sets(backend: MemoryBackend, n: int) -> None:
    for i in range(n):
        await backend.set_add(f"user:{i}", "connection-1", capacity=5, lease_ms=60_000)


async def _bytes_per_key(fill: Fill, n: int) -> tuple[float, MemoryBackend, ManualClock]:
    clock = ManualClock(0)
    backend = MemoryBackend(clock=clock)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await fill(backend, n)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / n, backend, clock


async def _amortised_writes_to_reclaim(n: int) -> float:
    """New writes per expired key until the amortised sweep has dropped every expired key."""
    clock = ManualClock(0)
    backend = MemoryBackend(clock=clock)
    await _buckets(backend, n)
    clock.advance(_IDLE_MS)
    writes = 0
    limit = 20 * n  # bounded: the sweep drops 32 entries every 64 writes, so 2 * n should do
    while backend.key_count() > 1 and writes < limit:  # the new key stays; the old ones go
        await backend.bucket_consume("fresh", rate=10**6, burst=10**6)
        writes += 1
        clock.advance(1)
    return writes / n


async def footprint_figures(scale: Scale) -> list[Figure]:
    n = scale.footprint_keys
    small = min(n, 100_000)
    figures = []
    for name, fill, keys in (("bucket", _buckets, n), ("counter", _counters, small), ("set, one member", _sets, small)):
        per_key, backend, clock = await _bytes_per_key(fill, keys)
        note = f"{keys:,} idle keys"
        figures.append(Figure("footprint", f"{name}: bytes per idle key", value=per_key, unit="bytes", note=note))
        if fill is _buckets:
            clock.advance(_IDLE_MS)
            dropped = backend.sweep()
            figures.append(
                Figure(
                    "footprint",
                    "expired keys left after sweep()",
                    value=backend.key_count(),
                    unit="keys",
                    note=f"{dropped:,} of {keys:,} dropped",
                )
            )
    writes = await _amortised_writes_to_reclaim(small)
    figures.append(
        Figure(
            "footprint",
            "writes per expired key until the amortised sweep reclaimed all",
            value=writes,
            unit="writes",
            note=f"{small:,} expired keys, no sweep() call",
        )
    )
    return figures
