"""A client for the master of a Redis Sentinel service, from a ``redis+sentinel://`` URL.

``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service_name[/db][?option=value...]``

- the hosts are the sentinels (port 26379 when left out); the client asks them for
  the address of `service_name`'s master before each new connection, so after a
  failover new connections go to the new master;
- the URL's user and password are the master's (the data server's); the sentinels'
  own, when they require one, are the options ``sentinel_username`` and
  ``sentinel_password`` (in the query string or as keywords);
- the query string takes redis-py's connection options (``socket_timeout=2``, ...)
  as for ``redis://``; the socket timeouts apply to the sentinels too.

A sentinel is asked once, never again by a retry: the next sentinel in the list is
the retry, and a discovery that found no master is not retried (see
`_Sentinels.discover_master`: sentinels that refuse this client are a
misconfiguration, `SentinelsRefusedClient`; none naming a master is an outage,
`NoMasterFound`). A connection to the master that fails is retried as the master's
``retry`` says, and each attempt asks for the address again, first of the sentinel
that named it. A connection to a master that was demoted meanwhile (its READONLY
reply) is closed by redis-py and surfaces as a connection error, like a master that
vanished: an outage, not a wrong answer.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import InvalidArgument
from .errors import NoMasterFound, SentinelsRefusedClient, sentinel_refusal

__all__ = ["DEFAULT_SENTINEL_PORT", "SENTINEL_OPTIONS", "SENTINEL_SCHEME", "SentinelMasterClient", "sentinel_client"]

SENTINEL_SCHEME: Final = "redis+sentinel"
DEFAULT_SENTINEL_PORT: Final = 26379
SENTINEL_OPTIONS: Final = ("sentinel_username", "sentinel_password")
"""Options that go to the sentinels instead of the master."""
_FORM: Final = f"{SENTINEL_SCHEME}://[user:password@]host:port[,host:port...]/service_name[/db]"


class SentinelMasterClient(redis.asyncio.Redis):
    """The client of a Sentinel service's master; `aclose` also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        try:
            await super().aclose(close_connection_pool)
        finally:
            if isinstance(pool, SentinelConnectionPool) and close_connection_pool is not False:
                # Each one is closed even when another fails (closing a socket rarely does).
                outcomes = await asyncio.gather(
                    *(sentinel.aclose() for sentinel in pool.sentinel_manager.sentinels), return_exceptions=True
                )
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome


class _SentinelConnection(redis.asyncio.Redis):
    """The client of one sentinel: shown as ``sentinel host:port`` in the discovery's "No master found" message."""

    def __repr__(self) -> str:
        settings = self.connection_pool.connection_kwargs
        return f"sentinel {settings.get('host')}:{settings.get('port')}"


class _Sentinels(Sentinel):
    """redis-py's `Sentinel` with a master discovery that tells sentinels refusing this client from an outage."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """The address of `service_name`'s master: each sentinel is asked once, in order, until one names it.

        The one that names it is asked first next time. When none does, raises
        `SentinelsRefusedClient` (a misconfiguration) if at least one refused this
        client (its credentials, or its ACL user's rights) and every other one was
        unreachable or timed out; else `NoMasterFound` (an outage). Refused + down is a
        misconfiguration because the client sends the same credentials to every
        sentinel, and the sentinels of a service are configured alike: the ones down
        now would refuse them too once back, so waiting cannot help, and calling it an
        outage would let a `FallbackBackend` hide the mistake behind per-process limits
        for as long as it lasts. A sentinel that answered took the credentials: if it
        named no healthy master, the master is what is missing (an outage), whatever
        the others said. Neither error is a ``ConnectionError``, so no retry of the
        connection asks the sentinels again. Each answer is in the message.
        """
        answers: list[str] = []
        fixes: dict[str, None] = {}  # what to fix, once each, in the order the sentinels said it
        accepted = False
        for sentinel in list(self.sentinels):  # a copy: a concurrent discovery may reorder the list
            try:
                # redis-py parses the reply into {name: state} (its own discovery relies on it).
                masters = cast("dict[str, dict[str, Any]]", await sentinel.sentinel_masters())
            except RedisError as exc:
                fix = sentinel_refusal(exc)
                if fix is None and not isinstance(exc, RedisConnectionError | RedisTimeoutError):
                    raise  # an error reply that is not a refusal: not redis-py's to skip, nor ours
                if fix is not None:
                    fixes[fix] = None
                answers.append(f"{sentinel!r} - {type(exc).__name__}: {exc}")
                continue
            accepted = True
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):
                self._ask_first(sentinel)
                return state["ip"], state["port"]
            answers.append(f"{sentinel!r} - " + ("reports it down or not a master" if state else "does not watch it"))
        message = f"No master found for {service_name!r}: " + "; ".join(answers)
        if fixes and not accepted:
            raise SentinelsRefusedClient(message, "; ".join(fixes))
        raise NoMasterFound(message)

    def _ask_first(self, sentinel: redis.asyncio.Redis) -> None:
        if self.sentinels[0] is not sentinel:
            self.sentinels.remove(sentinel)
            self.sentinels.insert(0, sentinel)


def sentinel_name(client: redis.asyncio.Redis) -> str | None:
    """``sentinel service 'NAME' (master host:port, sentinels host:port,...)`` for a Sentinel client, else None.

    The master is named once it is known. Never holds a password.
    """
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    sentinels = ",".join(
        f"{settings.get('host')}:{settings.get('port')}"
        for settings in (sentinel.connection_pool.connection_kwargs for sentinel in pool.sentinel_manager.sentinels)
    )
    master = f"master {pool.master_address[0]}:{pool.master_address[1]}, " if pool.master_address else ""
    return f"sentinel service {pool.service_name!r} ({master}sentinels {sentinels})"


def _sentinel_addresses(hosts: str) -> list[tuple[str, int]]:
    addresses = []
    for listed in hosts.split(","):
        address = listed.strip()
        host, colon, port = address.rpartition(":")
        if not colon or host.endswith(":") or address.endswith("]"):  # no port (an IPv6 address ends with "]")
            host, port = address, str(DEFAULT_SENTINEL_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"a {SENTINEL_SCHEME}:// URL lists the sentinels as host:port, got {address!r:.80}")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _service_and_db(path: str) -> tuple[str, int]:
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise InvalidArgument(f"a {SENTINEL_SCHEME}:// URL names the master's service: {_FORM}; got no service name")
    if db and not db.isdigit():
        raise InvalidArgument(
            f"the database in a {SENTINEL_SCHEME}:// URL is a number after the service name ({_FORM}),"
            f" got {unquote(db)!r:.40}"
        )
    return unquote(service), int(db or 0)


def _query_options(query: str) -> dict[str, Any]:
    """The query string's options, typed as redis-py types them for a ``redis://`` URL."""
    try:
        parsed = dict(parse_url(f"redis://?{query}")) if query else {}
    except ValueError as exc:  # redis-py names the option, never its value
        raise InvalidArgument(f"invalid {SENTINEL_SCHEME}:// URL option: {exc}") from None
    return parsed


def sentinel_client(url: str, defaults: dict[str, Any], options: dict[str, Any]) -> SentinelMasterClient:
    """A lazily connecting client for the master a ``redis+sentinel://`` URL names (see the module docstring).

    `defaults` are the master connection's settings, overridden by `options`, then by
    the URL's query string. Raises `InvalidArgument` for a URL or options that cannot
    be used; the message never holds a password.
    """
    parts = urlsplit(url)
    if parts.fragment:
        raise InvalidArgument(f"a {SENTINEL_SCHEME}:// URL has no #fragment: {_FORM}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    service, db = _service_and_db(parts.path)
    sentinels = _sentinel_addresses(hosts)
    settings: dict[str, Any] = {**defaults, "db": db}
    if credentials:
        username, _, password = credentials.partition(":")
        settings.update(username=unquote(username) or None, password=unquote(password) or None)
    settings.update(options)
    settings.update(_query_options(parts.query))
    sentinel_settings: dict[str, Any] = {
        # A sentinel is asked once: the next sentinel is the retry.
        "retry": Retry(NoBackoff(), 0),
        **{name: value for name, value in settings.items() if name.startswith("socket_")},
        "username": settings.pop("sentinel_username", None),
        "password": settings.pop("sentinel_password", None),
    }
    try:
        # Built now, not at the first command, so a wrong option is an error here.
        SentinelManagedConnection(connection_pool=None, **settings)  # type: ignore[no-untyped-call]
        manager = _Sentinels([], sentinel_kwargs=sentinel_settings, **settings)  # type: ignore[no-untyped-call]
        manager.sentinels = [_SentinelConnection(host=h, port=p, **sentinel_settings) for h, p in sentinels]
        client: SentinelMasterClient = manager.master_for(service, redis_class=SentinelMasterClient)
    except (ValueError, TypeError) as exc:
        # redis-py's messages name the bad option but never echo a password.
        raise InvalidArgument(f"invalid {SENTINEL_SCHEME}:// URL or option: {exc}") from None
    return client
