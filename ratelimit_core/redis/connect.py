"""Building a `redis.asyncio` client from a URL, with defaults that never hang.

Defaults (each overridable by a keyword, and by the URL's query string, which
wins, e.g. ``redis://host/0?socket_timeout=2``):

- ``socket_connect_timeout`` and ``socket_timeout``: 0.5 s each, so an outage
  costs a caller at most about half a second before `BackendUnavailable`.
- ``retry``: one retry after 10 ms, and only on a connection error (a stale pooled
  connection after a server restart). Timeouts are not retried: the server may have
  run the script already, and retrying would double the wait.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from ..errors import InvalidArgument

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_TIMEOUT_S",
    "client_from_url",
    "default_retry",
]

DEFAULT_CONNECT_TIMEOUT_S = 0.5
DEFAULT_SOCKET_TIMEOUT_S = 0.5
DEFAULT_RETRIES = 1


def default_retry() -> Retry:
    """The retry policy of URL-built clients: `DEFAULT_RETRIES` retries, connection errors only."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), DEFAULT_RETRIES, supported_errors=(RedisConnectionError,))


def client_from_url(url: str, **options: Any) -> redis.asyncio.Redis:
    """A lazily connecting client for a ``redis://``, ``rediss://`` or ``unix://`` URL.

    Raises `InvalidArgument` when redis-py cannot parse the URL or the options.
    """
    settings: dict[str, Any] = {
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "retry": default_retry(),
    }
    settings.update(options)
    try:
        return redis.asyncio.from_url(url, **settings)
    except (ValueError, TypeError) as exc:
        # redis-py's messages name the bad part but never echo a password.
        raise InvalidArgument(f"invalid Redis URL or option: {exc}") from None
