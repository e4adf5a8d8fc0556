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

TLS (``rediss://``, ``rediss+cluster://``): the server's certificate is verified
against ``ssl_ca_certs`` (or the system's CAs); a client certificate is given by
``ssl_certfile`` and ``ssl_keyfile`` (``ssl_password`` for an encrypted key), as
options or in the query string (a cluster URL's query takes only the
`TLS_QUERY_OPTIONS`). Those files are read when the client is built, so a missing or
unusable file is an `InvalidArgument` naming the option then, not an outage later.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

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
    "TLS_CLUSTER_SCHEME",
    "TLS_QUERY_OPTIONS",
    "Client",
    "client_from_url",
    "default_retry",
    "server_name",
]

DEFAULT_CONNECT_TIMEOUT_S = 0.5
"""The connect timeout of a client built from a URL, in seconds (override it by keyword or in the URL)."""
DEFAULT_SOCKET_TIMEOUT_S = 0.5
"""The socket timeout of a client built from a URL, in seconds."""
DEFAULT_RETRIES = 1
"""How often setting a connection up (connect, AUTH) is retried; a lost script reply is never retried blindly."""
CLUSTER_SCHEME = "redis+cluster"
TLS_CLUSTER_SCHEME = "rediss+cluster"
TLS_QUERY_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
"""What a cluster URL's query string may set (TLS only; redis-py's cluster client takes no key pass phrase);
the other options are keywords."""
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

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
    ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``
    over TLS, with an optional query of `TLS_QUERY_OPTIONS`); the client finds the
    rest of the cluster from them. Raises `InvalidArgument` when the URL or the
    options cannot be used (``single_connection_client`` is refused: such a client
    would send a script again after a lost reply, and serialises every round trip).
    """
    if options.get("single_connection_client"):
        raise InvalidArgument(
            "single_connection_client=True is not supported: the driver pipelines on a connection pool"
            " (use max_connections to bound it)"
        )
    scheme = url.partition("://")[0].lower()
    if scheme in (CLUSTER_SCHEME, TLS_CLUSTER_SCHEME):
        return _cluster_client(url, options)
    settings: dict[str, Any] = {
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "retry": default_retry() if direct_supported() else _no_resend(),
    }
    if scheme == SENTINEL_SCHEME:
        return sentinel_client(url, settings, options)
    settings.update(options)
    query = parse_qs(urlsplit(url).query)  # the query wins over the options (redis-py's rule)
    _check_tls_files({**settings, **{name: query[name][-1] for name in _TLS_FILES if name in query}})
    try:
        return redis.asyncio.from_url(url, **settings)
    except (ValueError, TypeError) as exc:
        # redis-py's messages name the bad part but never echo a password.
        raise InvalidArgument(f"invalid Redis URL or option: {exc}") from None


_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_password")


def _check_tls_files(options: dict[str, Any]) -> None:
    """Raise `InvalidArgument` unless the TLS files `options` name can be used."""
    ca_file, certfile, keyfile, password = (options.get(name) for name in _TLS_FILES)
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"ssl_ca_certs={ca_file!r:.200} cannot be used as CA certificates: {exc}") from None
    if keyfile is not None and certfile is None:
        raise InvalidArgument(f"ssl_keyfile={keyfile!r:.200} needs ssl_certfile, the certificate that goes with it")
    if certfile is not None:
        try:
            context.load_cert_chain(certfile, keyfile, password)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; the password is not echoed
            raise InvalidArgument(
                f"ssl_certfile={certfile!r:.200} with ssl_keyfile={keyfile!r:.200} cannot be used as this"
                f" client's certificate: {exc}"
            ) from None


def _cluster_query(scheme: str, query: str) -> dict[str, Any]:
    """The options a cluster URL's query string sets (only `TLS_QUERY_OPTIONS`, and only over TLS)."""
    settings: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in TLS_QUERY_OPTIONS or scheme != TLS_CLUSTER_SCHEME:
            raise InvalidArgument(
                f"a {scheme}:// URL's query may only hold {', '.join(TLS_QUERY_OPTIONS)} (and only with"
                f" {TLS_CLUSTER_SCHEME}://), got {name!r:.40}: pass other options as keywords"
            )
        if name == "ssl_check_hostname":
            if value.lower() not in (*_TRUE, *_FALSE):
                raise InvalidArgument(f"ssl_check_hostname in a {scheme}:// URL is true or false, got {value!r:.20}")
            settings[name] = value.lower() in _TRUE
        else:
            settings[name] = value
    return settings


def _cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    rest, _, query = rest.partition("?")
    if "/" in rest or "#" in rest or "#" in query:
        raise InvalidArgument(f"a {scheme}:// URL is host:port[,host:port...] with no path or fragment")
    credentials, _, hosts = rest.rpartition("@")
    settings: dict[str, Any] = {
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "retry": _no_resend(),
        "ssl": scheme == TLS_CLUSTER_SCHEME,
    }
    if credentials:
        username, _, password = credentials.partition(":")
        settings.update(username=unquote(username) or None, password=unquote(password) or None)
    nodes = []
    for address in hosts.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise InvalidArgument(f"a {scheme}:// URL lists host:port pairs, got {address!r:.80}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    settings.update(options)
    settings.update(_cluster_query(scheme, query))
    _check_tls_files(settings)
    try:
        return RedisCluster(startup_nodes=nodes, **settings)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid Redis Cluster URL or option: {exc}") from None
