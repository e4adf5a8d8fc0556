"""How redis-py's exceptions become ratelimit_core's, in one place.

Three outcomes, decided by what waiting would do:

- `BackendMisconfigured`: the server refuses this client (wrong user or password,
  an ACL user without the rights the driver needs, a server's TLS certificate that
  does not verify, a client certificate the server requires but did not get or does
  not trust, a client certificate or key file that cannot be used, the sentinels of a
  Sentinel service refusing this client: `SentinelsRefusedClient`). Waiting will not
  help; the configuration must change.
- `BackendUnavailable`: the server cannot serve anyone right now (unreachable,
  reset, timed out, loading its data, a read-only replica during a failover, busy
  running a script, a cluster that is down or resharding, no sentinel naming a
  master: `NoMasterFound`). Waiting may help.
- `BackendError`: any other error reply (WRONGTYPE, a script error, ...).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from redis import exceptions as redis_errors

from ..errors import BackendError, BackendMisconfigured, BackendUnavailable

__all__ = [
    "REDIS_FAILURES",
    "NoMasterFound",
    "SentinelsRefusedClient",
    "is_lost_connection",
    "refuses_client_certificate",
    "sentinel_refusal",
    "translated",
    "translated_errors",
]


class NoMasterFound(redis_errors.RedisError):
    """No sentinel of a Sentinel service named its master (raised by `sentinel`'s discovery): an outage.

    Not a redis-py ``ConnectionError`` (as its ``MasterNotFoundError`` is), so that no
    connection retry asks the sentinels again: each one was asked once.
    """


class SentinelsRefusedClient(redis_errors.RedisError):
    """No sentinel named the master: one or more refused this client, the others did not answer. A misconfiguration.

    `fix` says what to change (see `sentinel_refusal`). Not a ``ConnectionError``, like `NoMasterFound`.
    """

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


# asyncio.TimeoutError is the builtin TimeoutError (an OSError) from 3.11 on; it is
# listed so the intent survives reading. redis-py raises its own ConnectionError and
# TimeoutError, but a socket failure can also surface raw from the transport.
# BusyLoadingError (LOADING) is a ConnectionError; ReadOnlyError (READONLY: a replica,
# e.g. during a failover) is an error reply. redis-py's RedisClusterException (not a
# RedisError) is what its cluster client raises when no seed node answers.
_UNREACHABLE: Final = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    asyncio.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.RedisClusterException,
    NoMasterFound,
)

_OUTAGE_CODES: Final = frozenset(
    {
        "BUSY",  # a script runs past busy-reply-threshold (lua-time-limit): nothing else runs
        "CLUSTERDOWN",
        "LOADING",
        "MASTERDOWN",  # a replica that lost its master, with replica-serve-stale-data no
        "MISCONF",  # writes refused because the server cannot persist (its disk, not our config)
        "NOREPLICAS",  # min-replicas-to-write not met
        "READONLY",  # also as an error propagated from inside a script
        "TRYAGAIN",
    }
)
"""Error-reply codes that mean the server cannot serve anyone now. redis-py gives most of
them their own class, but not all (BUSY, NOREPLICAS, MISCONF arrive as a plain ResponseError)."""

_REFUSED_CREDENTIALS: Final = (redis_errors.AuthenticationError, redis_errors.AuthenticationWrongNumberOfArgsError)
_REFUSED_COMMAND: Final = (redis_errors.NoPermissionError, redis_errors.AuthorizationError)

_CLIENT_CERTIFICATE_REFUSED: Final = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",  # TLS 1.3: the client sent no certificate
        "SSLV3_ALERT_HANDSHAKE_FAILURE",  # TLS 1.2: the same (or no cipher in common)
        "TLSV1_ALERT_UNKNOWN_CA",  # a certificate signed by a CA the server does not trust
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)
"""`ssl.SSLError` reasons for a TLS alert by which the server refuses the client's certificate (or its lack)."""
_UNUSABLE_CLIENT_FILES: Final = frozenset({"PEM", "X509"})
"""`ssl.SSLError` libraries whose errors mean this client's own certificate or key file cannot be used."""

_CAUSE_DEPTH = 8
"""How far `_misconfiguration` follows ``__cause__``/``__context__`` (chains are short; this bounds a cycle)."""

REDIS_FAILURES: Final = (*_UNREACHABLE, redis_errors.RedisError)
"""Everything `translated` turns into a `BackendError`; anything else is a bug and propagates."""


def _error_code(exc: BaseException) -> str:
    # redis-py strips the codes it knows into ``status_code`` (redis-py >= 7); an unknown
    # code stays the first word of the message.
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code != "ERR":
        return code
    return str(exc).partition(" ")[0]


def _misconfiguration(exc: BaseException) -> str | None:
    """What to fix when `exc` (or what caused it) says the server refuses this client, else None."""
    seen: BaseException | None = exc
    for _ in range(_CAUSE_DEPTH):
        if seen is None:
            return None
        if isinstance(seen, SentinelsRefusedClient):
            return seen.fix
        if isinstance(seen, _REFUSED_CREDENTIALS) or _error_code(seen) in ("WRONGPASS", "NOAUTH"):
            return "it refused the credentials: fix the user name and password (the backend URL, or the options)"
        if isinstance(seen, _REFUSED_COMMAND) or _error_code(seen) == "NOPERM":
            return (
                "its ACL user may not run what the driver needs: give it the rule of"
                " ratelimit_core.redis.acl_rule(prefix) (EVALSHA, SCRIPT LOAD, PING, the commands the scripts"
                " call, the keys under the prefix; SCAN and UNLINK for clear(); CLUSTER SLOTS and COMMAND on"
                " a cluster)"
            )
        tls_fix = _tls_misconfiguration(seen)
        if tls_fix is not None:
            return tls_fix
        # redis-py raises its ConnectionError inside the handler of the socket's error
        # (``__context__``); the cluster client chains with ``from`` (``__cause__``).
        seen = seen.__cause__ or seen.__context__
    return None


def sentinel_refusal(exc: BaseException) -> str | None:
    """What to fix when `exc`, a sentinel's answer, says it refuses this client, else None.

    The sentinels' credentials are options of their own: the URL's user and password
    are the master's.
    """
    if isinstance(exc, _REFUSED_CREDENTIALS) or _error_code(exc) in ("WRONGPASS", "NOAUTH"):
        return (
            "the sentinels refused the credentials: fix the sentinel_username and sentinel_password options"
            " (in the URL's query string, or as keywords; the user and password before the @ are the master's)"
        )
    if isinstance(exc, _REFUSED_COMMAND) or _error_code(exc) == "NOPERM":
        return (
            "the sentinels' ACL user may not ask for the master's address: allow it SENTINEL MASTERS"
            " (+sentinel|masters), or fix the sentinel_username option"
        )
    return None


def _tls_misconfiguration(exc: BaseException) -> str | None:
    """What to fix when `exc` is a TLS handshake that cannot succeed with this configuration, else None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            "its TLS certificate did not verify: give the client the CA that signed it (ssl_ca_certs),"
            " or fix the server's certificate or host name"
        )
    if not isinstance(exc, ssl.SSLError):
        return None
    if refuses_client_certificate(exc):
        return (
            "it refused this client's TLS certificate, or its lack of one (the server has tls-auth-clients on):"
            " give ssl_certfile and ssl_keyfile, a certificate signed by a CA in the server's tls-ca-cert-file"
        )
    if exc.library in _UNUSABLE_CLIENT_FILES or exc.reason == "KEY_VALUES_MISMATCH":
        return "this client's TLS certificate or key cannot be used: check ssl_certfile, ssl_keyfile and ssl_password"
    return None


def refuses_client_certificate(exc: ssl.SSLError) -> bool:
    """True when `exc` is the alert of a server that refuses this client's certificate, or its lack of one."""
    return exc.reason in _CLIENT_CERTIFICATE_REFUSED


def is_lost_connection(exc: BaseException) -> bool:
    """True when `exc` says the connection broke (so a command sent on it may or may not have run).

    False for a timeout (sending again would double the wait) and for a server that
    refuses this client (sending again cannot help).
    """
    return (
        isinstance(exc, redis_errors.ConnectionError | ConnectionError)
        and not isinstance(exc, redis_errors.BusyLoadingError)
        and _misconfiguration(exc) is None
    )


def translated(exc: BaseException, operation: str, server: str) -> BackendError:
    """The `BackendMisconfigured`, `BackendUnavailable` or `BackendError` for a Redis failure.

    `server` names the server (host:port, never a password) for the message; `exc` is
    chained as the cause. Each call makes a new exception, so one failure shared by
    many callers gives each its own.
    """
    error: BackendError
    # A cluster node's error carries the node; name it rather than the seed nodes.
    node = getattr(getattr(exc, "connection", None), "name", None)
    if isinstance(node, str):
        server = node
    fix = _misconfiguration(exc)
    if fix is not None:
        error = BackendMisconfigured(f"Redis at {server} refused {operation}: {fix} ({type(exc).__name__}: {exc})")
    elif isinstance(exc, _UNREACHABLE) or _error_code(exc) in _OUTAGE_CODES:
        error = BackendUnavailable(f"Redis did not answer {operation} at {server}: {type(exc).__name__}: {exc}")
    else:
        error = BackendError(f"Redis failed {operation} at {server}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def translated_errors(operation: str, server: str) -> Iterator[None]:
    """Re-raise a Redis failure inside the block as `translated` says (the original is chained)."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise translated(exc, operation, server) from exc
