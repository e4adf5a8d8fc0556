"""One pipelined round trip on one pooled connection of a `redis.asyncio.Redis` client.

This is what redis-py's `Pipeline` does, without its per-command bookkeeping: the
commands are packed by hiredis's C packer when hiredis is installed (the ``redis``
extra installs it; else by the connection's own packer), written at once, and the
replies read back in order, error replies included, so the connection stays in
step. On the coalescer's hot path that bookkeeping cost more than the round trip.

The connection comes from the client's pool and goes back to it; a connection
error is retried as the connection's own `Retry` policy says, like any
redis-py command (the whole round trip is sent again, as redis-py's pipeline does).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard, cast

import redis.asyncio
from redis.exceptions import ResponseError

__all__ = ["Command", "round_trip", "supports"]

Command = tuple[bytes | str | int, ...]
"""A command and its arguments, e.g. ``("EVALSHA", sha, 1, key, ...)``."""

_pack_command: Callable[[Command], bytes] | None
try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra installs hiredis
    _pack_command = None
else:
    # hiredis's stub types the argument as a 1-tuple; it takes any tuple of arguments.
    _pack_command = cast(Callable[[Command], bytes], hiredis.pack_command)


def supports(client: object) -> TypeGuard[redis.asyncio.Redis]:
    """True for the clients `round_trip` works on: a `redis.asyncio.Redis` on a connection pool."""
    return isinstance(client, redis.asyncio.Redis) and not client.single_connection_client


async def round_trip(client: redis.asyncio.Redis, commands: Sequence[Command]) -> list[Any]:
    """Send `commands` in one write and return their replies (undecoded), in order.

    An error reply (a `ResponseError`, e.g. NOSCRIPT or WRONGTYPE) takes the place
    of that command's reply. A connection failure or a timeout raises, for all of them.
    """
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        replies: list[Any] = await connection.retry.call_with_retry(
            lambda: _send_and_read(connection, commands),
            lambda error: connection.disconnect(),
        )
        return replies
    finally:
        await pool.release(connection)


async def _send_and_read(connection: Any, commands: Sequence[Command]) -> list[Any]:
    if _pack_command is not None:
        packed: bytes | list[bytes] = b"".join([_pack_command(command) for command in commands])
    else:
        packed = connection.pack_commands(commands)
    await connection.send_packed_command(packed)
    replies: list[Any] = []
    # One deadline for all the replies instead of one per reply (``timeout=math.inf``
    # turns the per-read one off): a timer per reply cost a third of the round trip.
    # A read cut short disconnects the connection, as redis-py's own timeout does.
    async with asyncio.timeout(connection.socket_timeout):
        for _ in commands:
            try:
                replies.append(await connection.read_response(disable_decoding=True, timeout=math.inf))
            except ResponseError as exc:
                replies.append(exc)
    return replies
