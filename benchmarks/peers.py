"""The peers, behind one small interface, built only when their package is installed.

Each peer check is "hit `key` once; was it allowed?". The allowed path uses a
limit no run can reach; the denied path a limit of one per hour, used up before
timing starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

__all__ = [
    "ASYNC_MEMORY_PEERS",
    "MEMORY_PEERS",
    "REDIS_PEERS",
    "AsyncCheck",
    "AsyncMemoryPeer",
    "MemoryPeer",
    "RedisPeer",
    "SyncCheck",
    "installed",
    "peer_versions",
]

SyncCheck = Callable[[str], object]
AsyncCheck = Callable[[str], Awaitable[object]]

_HUGE = 10**9


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def peer_versions() -> dict[str, str]:
    """The version of each peer package found (for the JSON report)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("limits", "pyrate-limiter", "redis", "hiredis", "fakeredis"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True, slots=True)
class MemoryPeer:
    name: str
    module: str
    make: Callable[[bool], SyncCheck]
    """allowed -> a check; each call builds fresh storage."""


@dataclass(frozen=True, slots=True)
class AsyncMemoryPeer:
    name: str
    module: str
    make: Callable[[bool], AsyncCheck]


@dataclass(frozen=True, slots=True)
class RedisPeer:
    name: str
    module: str
    make: Callable[[str, bool], tuple[AsyncCheck, Callable[[], Awaitable[None]]]]
    """(redis URL, allowed) -> (a check, a function that closes it)."""


def _limits_item(allowed: bool) -> Any:
    from limits import RateLimitItemPerHour, RateLimitItemPerSecond

    return RateLimitItemPerSecond(_HUGE) if allowed else RateLimitItemPerHour(1)


def _limits_memory(strategy: str) -> Callable[[bool], SyncCheck]:
    def make(allowed: bool) -> SyncCheck:
        from limits import storage, strategies

        limiter = getattr(strategies, strategy)(storage.MemoryStorage())
        return partial(limiter.hit, _limits_item(allowed))

    return make


def _limits_async_memory(strategy: str) -> Callable[[bool], AsyncCheck]:
    def make(allowed: bool) -> AsyncCheck:
        from limits.aio import storage, strategies

        limiter = getattr(strategies, strategy)(storage.MemoryStorage())
        return partial(limiter.hit, _limits_item(allowed))

    return make


def _limits_redis(strategy: str) -> Callable[[str, bool], tuple[AsyncCheck, Callable[[], Awaitable[None]]]]:
    def make(url: str, allowed: bool) -> tuple[AsyncCheck, Callable[[], Awaitable[None]]]:
        from limits.aio import storage, strategies

        # limits' own async Redis storage, on the same redis-py client library as ours.
        backend = storage.RedisStorage("async+" + url, implementation="redispy")
        limiter = getattr(strategies, strategy)(backend)

        async def close() -> None:
            await backend.reset()

        return partial(limiter.hit, _limits_item(allowed)), close

    return make


def _pyrate_memory(allowed: bool) -> SyncCheck:
    from pyrate_limiter import BucketFactory, Duration, InMemoryBucket, Limiter, Rate, RateItem
    from pyrate_limiter.clocks import MonotonicClock

    rates = [Rate(_HUGE, Duration.SECOND) if allowed else Rate(1, Duration.HOUR)]

    class PerKey(BucketFactory):
        """One bucket per key, as pyrate-limiter's docs route items by name."""

        def __init__(self) -> None:
            self.clock = MonotonicClock()
            self.buckets: dict[str, Any] = {}

        def wrap_item(self, name: str, weight: int = 1) -> Any:
            return RateItem(name, self.clock.now(), weight=weight)

        def get(self, item: Any) -> Any:
            bucket = self.buckets.get(item.name)
            if bucket is None:
                bucket = self.buckets[item.name] = self.create(InMemoryBucket, rates)
            return bucket

    limiter = Limiter(PerKey())
    return partial(limiter.try_acquire, blocking=False)


MEMORY_PEERS = (
    MemoryPeer("limits fixed window", "limits", _limits_memory("FixedWindowRateLimiter")),
    MemoryPeer("limits moving window", "limits", _limits_memory("MovingWindowRateLimiter")),
    MemoryPeer("limits sliding window", "limits", _limits_memory("SlidingWindowCounterRateLimiter")),
    MemoryPeer("pyrate-limiter", "pyrate_limiter", _pyrate_memory),
)

ASYNC_MEMORY_PEERS = (
    AsyncMemoryPeer("limits fixed window (asyncio)", "limits", _limits_async_memory("FixedWindowRateLimiter")),
)

REDIS_PEERS = (
    RedisPeer("limits fixed window", "limits", _limits_redis("FixedWindowRateLimiter")),
    RedisPeer("limits moving window", "limits", _limits_redis("MovingWindowRateLimiter")),
    RedisPeer("limits sliding window", "limits", _limits_redis("SlidingWindowCounterRateLimiter")),
)
