"""`BackendCache`: the backends built from ``WS_RATE_BACKEND`` URLs, one per URL and options where it may be shared.

A memory backend is built once per process: it is the state, so every connection
must see the same one, whatever the options. A Redis backend is built once per
URL and `BackendOptions` per event loop, because a redis.asyncio client is bound
to the loop it first ran on (test runners and ``async_to_sync`` start several
loops); an entry goes away with its loop.

`build_backend` wraps a Redis backend in a `FallbackBackend` unless
``WS_RATE_FALLBACK`` is off, so an outage or a hung server costs a connection or a
frame about ``WS_RATE_BACKEND_TIMEOUT_MS`` (the wrapper's watchdog, which does not
count time the event loop spent elsewhere); the client's own timeouts are then
only a backstop. Without the wrapper the client times out after that long itself.
The wrapper's per-process store lives with the backend: one per URL, options and
event loop, which in a served process means one per process.

The cache also holds the `LeaseKeeper` of each backend the middleware uses (per
event loop and heartbeat interval): one task per process refreshes every live
connection's slots together. `aclose` closes the keepers with the backends, and
`release_all` gives back every slot they hold (a server shutting down: `sigterm`
does that on SIGTERM once installed, see `shutdown`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ratelimit_core import Backend, FallbackBackend
from ratelimit_core.failure_modes import OnError
from ratelimit_core.fallback import (
    DEFAULT_COOLDOWN_MS,
    DEFAULT_MAX_COOLDOWN_MS,
    DEFAULT_TIMEOUT_MS,
    DEFAULT_WARMUP_MS,
)
from ratelimit_core.policies.keeper import LeaseKeeper
from ratelimit_core.urls import backend_from_url, is_in_process

from .shutdown import SigtermRelease

__all__ = [
    "DEFAULT_OPTIONS",
    "BackendCache",
    "BackendFactory",
    "BackendOptions",
    "build_backend",
    "default_backend_cache",
]


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """How a backend is built from a URL (and so part of the cache key); ignored by ``memory://``."""

    fallback: bool = True
    """Wrap the backend in a `FallbackBackend` (``WS_RATE_FALLBACK``)."""
    on_error: OnError = "fallback"
    """The wrapper's outage policy (``WS_RATE_ON_BACKEND_ERROR``)."""
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    """The wrapper's timeout, or the client's without one (``WS_RATE_BACKEND_TIMEOUT_MS``)."""
    processes: int = 1
    """The wrapper divides limits by this while degraded (``WS_RATE_FALLBACK_PROCESSES``)."""
    cooldown_ms: int = DEFAULT_COOLDOWN_MS
    """The wrapper's first probe interval (``WS_RATE_FALLBACK_COOLDOWN_MS``)."""


DEFAULT_OPTIONS: Final = BackendOptions()
"""The options every setting left at its default gives."""

BackendFactory = Callable[[str, BackendOptions], Backend]
"""(URL, options) -> a new backend (default: `build_backend`)."""


def build_backend(url: str, options: BackendOptions = DEFAULT_OPTIONS) -> Backend:
    """The backend `url` names, built as `options` say.

    ``memory://`` is a plain `MemoryBackend` (it never fails). Anything else is a
    `RedisBackend` in a `FallbackBackend` whose timeout is `options.timeout_ms`
    (its client's timeouts are the wrapper's warm-up allowance, a backstop), or, when
    `options.fallback` is False, a `RedisBackend` whose client times out after
    `options.timeout_ms`. A URL query such as ``?socket_timeout=2`` still wins for a
    single server. The probe interval backs off from `options.cooldown_ms` up to 30 s
    (or `cooldown_ms`, if longer).
    """
    if is_in_process(url):
        return backend_from_url(url)
    if not options.fallback:
        timeout_s = options.timeout_ms / 1000
        return backend_from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    backstop_s = max(options.timeout_ms, DEFAULT_WARMUP_MS) / 1000
    primary = backend_from_url(url, socket_timeout=backstop_s, socket_connect_timeout=backstop_s)
    return FallbackBackend(
        primary,
        on_error=options.on_error,
        processes=options.processes,
        timeout_ms=options.timeout_ms,
        cooldown_ms=options.cooldown_ms,
        max_cooldown_ms=max(DEFAULT_MAX_COOLDOWN_MS, options.cooldown_ms),
    )


_Key = tuple[str, BackendOptions | None]
_KeeperKey = tuple[int, int]
"""(id of the backend, heartbeat interval in ms)."""
_Kept = tuple[Backend, LeaseKeeper]


class BackendCache:
    """Backends by URL: loop-free ones (``memory://``) per process, others per options and event loop.

    `factory` builds a backend for a URL and options; pass another one to wrap
    backends differently or to set other client options.
    """

    __slots__ = ("_factory", "_keepers", "_per_loop", "_shared", "sigterm")

    def __init__(self, factory: BackendFactory = build_backend) -> None:
        self._factory = factory
        self.sigterm = SigtermRelease(self)
        """Releases every slot of this cache's keepers on SIGTERM once installed (``WS_RATE_RELEASE_ON_SIGTERM``)."""
        self._shared: dict[_Key, Backend] = {}
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, Backend]] = (
            weakref.WeakKeyDictionary()
        )
        self._keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_KeeperKey, _Kept]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"BackendCache(shared={sorted(url for url, _ in self._shared)}, loops={len(self._per_loop)})"

    def get(self, url: str, options: BackendOptions = DEFAULT_OPTIONS) -> Backend:
        """The backend for `url` and `options`, built on first use; call it from a running event loop."""
        key: _Key
        if is_in_process(url):
            # The memory backend is the state itself: one for every option set.
            backends, key = self._shared, (url, None)
        else:
            backends, key = self._per_loop.setdefault(asyncio.get_running_loop(), {}), (url, options)
        backend = backends.get(key)
        if backend is None:
            backend = backends[key] = self._factory(url, options)
        return backend

    def keeper(self, backend: Backend, interval_ms: int) -> LeaseKeeper:
        """The `LeaseKeeper` of `backend` on the running loop for `interval_ms`, made on first use."""
        keepers = self._keepers.setdefault(asyncio.get_running_loop(), {})
        key = (id(backend), interval_ms)
        kept = keepers.get(key)
        if kept is None or kept[0] is not backend:
            # The backend is kept with its keeper: its id stays its own while the entry lives.
            kept = keepers[key] = (backend, LeaseKeeper(interval_ms))
        return kept[1]

    async def release_all(self, timeout_s: float | None = None) -> int:
        """Release every slot the keepers of the running loop hold, at once; the connections still unreleased
        after `timeout_s` (their removals go on)."""
        keepers = [keeper for _, keeper in self._keepers.get(asyncio.get_running_loop(), {}).values()]
        if not keepers:
            return 0
        pending = await asyncio.gather(*(keeper.release_all(timeout_s) for keeper in keepers))
        return sum(pending)

    def clear(self) -> None:
        """Forget every backend and keeper (for tests); the next `get` builds new ones. Nothing is closed."""
        self._shared.clear()
        self._per_loop.clear()
        self._keepers.clear()

    async def aclose(self) -> None:
        """Close and forget the keepers of the running loop, then the process-wide backends and those of the loop.

        A keeper closed stops refreshing: the slots of connections still open expire with their leases.
        """
        loop = asyncio.get_running_loop()
        for _, keeper in self._keepers.pop(loop, {}).values():
            await keeper.aclose()
        loop_backends = self._per_loop.pop(loop, {})
        backends = [*self._shared.values(), *loop_backends.values()]
        self._shared.clear()
        for backend in backends:
            await backend.aclose()


default_backend_cache = BackendCache()
"""The cache `RateLimitMiddleware` uses unless given another; `BackendCache.clear` it between tests."""
