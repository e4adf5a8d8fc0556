"""`backend_from_url`: pick and build a backend from a URL.

Schemes live in one table, `BACKEND_SCHEMES`; a new driver adds a row. The Redis
driver is imported only when a Redis URL is used, so ``memory://`` works without
any third-party package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .backend import Backend
from .clock import Clock
from .errors import InvalidArgument
from .memory import MemoryBackend

__all__ = ["BACKEND_SCHEMES", "backend_from_url", "is_in_process"]

BackendFactory = Callable[[str, "Clock | None", str, dict[str, Any]], Backend]
"""(url, clock, prefix, options) -> a backend; raises `InvalidArgument` for a bad URL."""


def _memory_backend(url: str, clock: Clock | None, prefix: str, options: dict[str, Any]) -> Backend:
    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidArgument("a memory:// URL takes no host, path or query: use exactly 'memory://'")
    if options:
        raise InvalidArgument(f"memory:// takes no options, got {sorted(options)}")
    return MemoryBackend(clock=clock, prefix=prefix)


def _redis_backend(url: str, clock: Clock | None, prefix: str, options: dict[str, Any]) -> Backend:
    try:
        from .redis import RedisBackend
    except ImportError as exc:
        raise InvalidArgument(f"{url.partition(':')[0]}:// URLs need the 'redis' package ({exc})") from exc
    return RedisBackend.from_url(url, clock=clock, prefix=prefix, **options)


BACKEND_SCHEMES: dict[str, BackendFactory] = {
    "memory": _memory_backend,
    "redis": _redis_backend,
    "rediss": _redis_backend,
    "unix": _redis_backend,
    "redis+cluster": _redis_backend,
    "rediss+cluster": _redis_backend,
    "redis+sentinel": _redis_backend,
}
"""Scheme (lower case, without ``://``) -> factory."""


def is_in_process(url: str) -> bool:
    """True when `url` names a backend whose state lives in this process (``memory://``).

    Such a backend is the state itself and is bound to no event loop, so one
    instance must serve every caller; any other backend is a client of a server.
    """
    return BACKEND_SCHEMES.get(url.partition("://")[0].lower()) is _memory_backend


def backend_from_url(url: str, *, clock: Clock | None = None, prefix: str = "rl:", **options: Any) -> Backend:
    """Build the backend a URL names.

    ``memory://`` -> `MemoryBackend`; ``redis://host:port/db``, ``rediss://...`` (TLS),
    ``unix:///path?db=N``, ``redis+cluster://host:port,host:port`` and
    ``rediss+cluster://...`` (TLS) -> `RedisBackend`,
    ``redis+sentinel://host:port,host:port/service_name[/db]`` -> `RedisBackend`,
    whose client gets the defaults of `ratelimit_core.redis.connect` (overridable by
    `options`, and for a single server by the URL's query string). Raises
    `InvalidArgument` for an unknown scheme or a malformed URL.
    """
    valid = ", ".join(f"{scheme}://" for scheme in BACKEND_SCHEMES)
    if not isinstance(url, str):
        raise InvalidArgument(f"url must be a str, got {type(url).__name__}; valid schemes: {valid}")
    scheme, separator, _ = url.partition("://")
    factory = BACKEND_SCHEMES.get(scheme.lower()) if separator else None
    if not separator:
        raise InvalidArgument(f"a backend URL looks like scheme://..., got no scheme; valid schemes: {valid}")
    if factory is None:
        # Only the scheme is echoed: the rest of a URL may hold a password.
        raise InvalidArgument(f"unsupported backend URL scheme {scheme!r:.40}; valid schemes: {valid}")
    return factory(url, clock, prefix, options)
