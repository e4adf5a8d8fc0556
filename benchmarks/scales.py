"""How much work each mode does: ``full`` for the README, ``quick`` for CI, ``smoke`` for the test suite."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCALES", "Scale"]


@dataclass(frozen=True, slots=True)
class Scale:
    name: str
    runs: int
    """Runs per figure; the figure is their median."""
    memory_ops: int
    """Checks per run on an in-memory limiter."""
    redis_ops: int
    """Checks per run for one caller on Redis."""
    concurrent_ops: int
    """Checks per run, all callers together, for 50 concurrent callers on Redis."""
    many_keys: int
    """The "many keys" case (10,000 in the issue's terms)."""
    footprint_keys: int
    """Idle keys held when measuring bytes per key."""
    frames: int
    """WebSocket frames per run through the middleware."""
    connects: int
    """WebSocket connections per run through the middleware."""
    callers: int = 50


SCALES = {
    "full": Scale(
        "full", runs=5, memory_ops=200_000, redis_ops=5_000, concurrent_ops=30_000, many_keys=10_000,
        footprint_keys=1_000_000, frames=100_000, connects=10_000,
    ),
    "quick": Scale(
        "quick", runs=3, memory_ops=20_000, redis_ops=1_000, concurrent_ops=5_000, many_keys=10_000,
        footprint_keys=100_000, frames=20_000, connects=2_000,
    ),
    "smoke": Scale(
        "smoke", runs=1, memory_ops=300, redis_ops=60, concurrent_ops=200, many_keys=50,
        footprint_keys=500, frames=100, connects=20, callers=10,
    ),
}  # fmt: skip
