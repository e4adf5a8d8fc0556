"""`refusal_behind`: tell a server that refuses this TLS client's certificate (or its lack) from an outage.

With TLS 1.3 the server checks the client's certificate after the handshake has
ended for the client, which has already sent its first command. The server's alert
(``certificate required``, ``unknown ca``) then races the reset that unread command
causes when the server closes: the client may see only ``connection reset`` (about
half the time without a certificate), which looks like an outage. So when a TLS
connection is lost, the driver connects once more with the same certificate,
completes the handshake, sends nothing and waits for the server's verdict: with
nothing unread there is no reset, and a refusal arrives as its alert. This runs
only on that failure path, bounded by the client's connect timeout (a server that
accepts the handshake says nothing, so that case waits it out), and closes its
connection however it ends. The probe verifies nothing (it sends nothing).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import RedisClusterException

from .connect import DEFAULT_CONNECT_TIMEOUT_S, Client
from .errors import is_lost_connection, refuses_client_certificate

__all__ = ["refusal_behind"]


async def refusal_behind(exc: BaseException, client: Client) -> BaseException:
    """The server's TLS alert when `exc`, a lost connection of `client`, hides a refused client certificate;
    else `exc` itself.

    Probes a TLS client's server (see the module docstring; on a cluster, its first
    seed node) with the client's certificate, if it has one; the alert returned has
    `exc` as its ``__context__``.
    """
    # A cluster client that reached no seed node wraps the lost connection, with ``from``.
    lost = exc.__cause__ if isinstance(exc, RedisClusterException) else exc
    if lost is None or not is_lost_connection(lost):
        return exc
    connection_class, settings = _endpoint(client)
    if not issubclass(connection_class, SSLConnection):
        return exc
    alert = await _verdict(settings)
    if alert is None:
        return exc
    alert.__context__ = exc
    return alert


def _endpoint(client: Client) -> tuple[type[Any], dict[str, Any]]:
    """The connection class and settings of `client`'s server (a cluster's first seed node)."""
    if isinstance(client, RedisCluster):
        settings = dict(client.nodes_manager.connection_kwargs)
        settings.pop("response_callbacks", None)
        seed = next(iter(client.nodes_manager.startup_nodes.values()))
        settings.update(host=seed.host, port=seed.port)
        return settings.pop("connection_class", object), settings
    pool = client.connection_pool
    return pool.connection_class, dict(pool.connection_kwargs)


def _probe_context(settings: dict[str, Any]) -> ssl.SSLContext:
    """TLS with the client's certificate, if it has one, that verifies nothing: the probe sends nothing, it only
    learns whether the server refuses this client's certificate (or its lack of one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if settings.get("ssl_certfile"):
        context.load_cert_chain(settings["ssl_certfile"], settings.get("ssl_keyfile"), settings.get("ssl_password"))
    return context


async def _verdict(settings: dict[str, Any]) -> ssl.SSLError | None:
    """The alert by which the server refuses a handshake that sends nothing after it, or None."""
    host, port = settings.get("host", "localhost"), settings.get("port", 6379)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(settings.get("socket_connect_timeout") or DEFAULT_CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port, ssl=_probe_context(settings))
            await reader.read(1)  # a refusal's alert, or nothing until the deadline: the server accepted us
    except ssl.SSLError as alert:
        return alert if refuses_client_certificate(alert) else None
    except (OSError, ValueError):  # unreachable, reset, the deadline (TimeoutError), unusable files: no verdict
        return None
    finally:
        if writer is not None:
            writer.transport.abort()
    return None
