"""`BackendCache`: the backends built from ``WS_RATE_BACKEND`` URLs, one per URL where it may be shared.

A memory backend is built once per process: it is the state, so every connection
must see the same one. A Redis backend is built once per URL per event loop,
because a redis.asyncio client is bound to the loop it first ran on (test runners
and ``async_to_sync`` start several loops); an entry goes away with its loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from ratelimit_core import Backend
from ratelimit_core.urls import backend_from_url

__all__ = ["BackendCache", "BackendFactory", "default_backend_cache"]

BackendFactory = Callable[[str], Backend]
"""URL -> a new backend (default: `ratelimit_core.urls.backend_from_url`)."""

_LOOP_FREE_SCHEMES = frozenset({"memory"})


class BackendCache:
    """Backends by URL: loop-free ones (``memory://``) per process, others per event loop.

    `factory` builds a backend for a URL; pass another one to wrap backends (for
    example in a `FallbackBackend`) or to set client options.
    """

    __slots__ = ("_factory", "_per_loop", "_shared")

    def __init__(self, factory: BackendFactory = backend_from_url) -> None:
        self._factory = factory
        self._shared: dict[str, Backend] = {}
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Backend]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"BackendCache(shared={sorted(self._shared)}, loops={len(self._per_loop)})"

    def get(self, url: str) -> Backend:
        """The backend for `url`, built on first use; call it from a running event loop."""
        if url.partition("://")[0].lower() in _LOOP_FREE_SCHEMES:
            backends = self._shared
        else:
            backends = self._per_loop.setdefault(asyncio.get_running_loop(), {})
        backend = backends.get(url)
        if backend is None:
            backend = backends[url] = self._factory(url)
        return backend

    def clear(self) -> None:
        """Forget every backend (for tests); the next `get` builds new ones. Nothing is closed."""
        self._shared.clear()
        self._per_loop.clear()

    async def aclose(self) -> None:
        """Close and forget the process-wide backends and those of the running loop."""
        loop_backends = self._per_loop.pop(asyncio.get_running_loop(), {})
        backends = [*self._shared.values(), *loop_backends.values()]
        self._shared.clear()
        for backend in backends:
            await backend.aclose()


default_backend_cache = BackendCache()
"""The cache `RateLimitMiddleware` uses unless given another; `clear()` it between tests."""
