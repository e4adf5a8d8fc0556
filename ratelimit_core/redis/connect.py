"""Building a `redis.asyncio` client from a URL, with defaults that never hang.

Defaults (each overridable by a keyword, and by the URL's query string, which
wins, e.g. ``redis://host/0?socket_timeout=2``):

- ``socket_connect_timeout`` and ``socket_timeout``: 0.5 s each, so an outage
  costs a caller at most about half a second before `BackendUnavailable`.
- ``retry``: one retry after 10 ms, and only on a connection error, of setting a
  connection up (connect, AUTH, SELECT). A script is never sent again by this
  policy: its reply may have been lost after the server ran it (the `Coalescer`
  sends again only the scripts that may run twice). Timeouts are not retried: that
  would double the wait.
- no retry of its own (``retry`` with 0 retries) for a client whose round trips go
  through redis-py's pipeline (see `pipeline`): a cluster client, and any client on
  a redis-py newer than `pipeline.SUPPORTED_REDIS_PY`. redis-py would send a whole command
  or pipeline again after a lost reply. MOVED, ASK and TRYAGAIN replies (the
  command did not run) are still followed.
- a ``redis+sentinel://`` URL (see `sentinel`): the master's connections get the
  defaults above; the sentinels get the same timeouts and no retry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from ..errors import InvalidArgument
from .pipeline import direct_supported
from .sentinel import SENTINEL_SCHEME, sentinel_client, sentinel_name

__all__ = [
    "CLUSTER_SCHEME",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_TIMEOUT_S",
    "SENTINEL_SCHEME",
    "Client",
    "client_from_url",
    "default_retry",
    "server_name",
]

DEFAULT_CONNECT_TIMEOUT_S = 0.5
DEFAULT_SOCKET_TIMEOUT_S = 0.5
DEFAULT_RETRIES = 1
CLUSTER_SCHEME = "redis+cluster"

Client = redis.asyncio.Redis | RedisCluster
"""The clients the driver runs on: one server (or Valkey, or a Sentinel service's master), or a Redis Cluster."""


def default_retry() -> Retry:
    """The retry policy of URL-built clients: `DEFAULT_RETRIES` retries of connection set-up, on connection errors."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), DEFAULT_RETRIES, supported_errors=(RedisConnectionError,))


def _no_resend() -> Retry:
    """The policy of a client on redis-py's pipeline: never send a command again (see the module docstring)."""
    return Retry(NoBackoff(), 0)


def server_name(client: Client) -> str:
    """The server(s) `client` talks to, for messages: ``host:port``, ``unix:path``, the seed nodes or the sentinels.

    Never holds a password.
    """
    if isinstance(client, RedisCluster):
        return "cluster " + ",".join(client.nodes_manager.startup_nodes)
    sentinels = sentinel_name(client)
    if sentinels is not None:
        return sentinels
    settings = client.connection_pool.connection_kwargs
    if "path" in settings:
        return f"unix:{settings['path']}"
    return f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"


def client_from_url(url: str, **options: Any) -> Client:
    """A lazily connecting client for a ``redis://``, ``rediss://``, ``unix://``, cluster or sentinel URL.

    A cluster URL names one or more seed nodes:
    ``redis+cluster://[user:password@]host:port[,host:port...]``; the client finds
    the rest of the cluster from them. Raises `InvalidArgument` when the URL or the
    options cannot be used (``single_connection_client`` is refused: such a client
    would send a script again after a lost reply, and serialises every round trip).
    """
    if options.get("single_connection_client"):
        raise InvalidArgument(
            "single_connection_client=True is not supported: the driver pipelines on a connection pool"
            " (use max_connections to bound it)"
        )
    scheme = url.partition("://")[0].lower()
    if scheme == CLUSTER_SCHEME:
        return _cluster_client(url, options)
    settings: dict[str, Any] = {
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "retry": default_retry() if direct_supported() else _no_resend(),
    }
    if scheme == SENTINEL_SCHEME:
        return sentinel_client(url, settings, options)
    settings.update(options)
    try:
        return redis.asyncio.from_url(url, **settings)
    except (ValueError, TypeError) as exc:
        # redis-py's messages name the bad part but never echo a password.
        raise InvalidArgument(f"invalid Redis URL or option: {exc}") from None


def _cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    rest = url.partition("://")[2]
    if any(mark in rest for mark in "/?#"):
        raise InvalidArgument(f"a {CLUSTER_SCHEME}:// URL is host:port[,host:port...] with no path or query")
    credentials, _, hosts = rest.rpartition("@")
    settings: dict[str, Any] = {
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "retry": _no_resend(),
    }
    if credentials:
        username, _, password = credentials.partition(":")
        settings.update(username=unquote(username) or None, password=unquote(password) or None)
    nodes = []
    for address in hosts.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise InvalidArgument(f"a {CLUSTER_SCHEME}:// URL lists host:port pairs, got {address!r:.80}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    settings.update(options)
    try:
        return RedisCluster(startup_nodes=nodes, **settings)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid Redis Cluster URL or option: {exc}") from None
