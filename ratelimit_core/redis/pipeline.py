"""One pipelined round trip on one pooled connection of a `redis.asyncio.Redis` client.

This is what redis-py's `Pipeline` does, without its per-command bookkeeping: the
commands are packed by hiredis's C packer when hiredis is installed (the ``redis``
extra installs it; else by the connection's own packer), written at once, and the
replies read back in order, error replies included, so the connection stays in
step. On the coalescer's hot path that bookkeeping cost more than the round trip.

The connection comes from the client's pool, which connects it (retrying as the
connection's `Retry` says) and replaces one the server closed. Once the commands
are written they are never written again: if the connection breaks before every
reply is read, the server may have run them, and only the caller knows which may
run twice (see `Coalescer`).

The write and the reads share one deadline, ``socket_timeout``, under our own
`asyncio.timeout`. redis-py's ``send_packed_command`` bounds the write with
`asyncio.wait_for`, which on Python 3.11 returns normally when the task is
cancelled just as the write completes: the cancellation (a caller's, or this
deadline's) would be lost, and the reads after it would have no deadline.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard, cast

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
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
    of that command's reply. A connection failure or a timeout raises, for all of
    them, and the commands are not sent again.
    """
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await _send_and_read(connection, commands)
    finally:
        await pool.release(connection)


async def _send_and_read(connection: Any, commands: Sequence[Command]) -> list[Any]:
    if _pack_command is not None:
        packed = b"".join([_pack_command(command) for command in commands])
    else:
        packed = b"".join(connection.pack_commands(commands))
    if connection.health_check_interval:
        await connection.check_health()  # a PING, retried as the connection says: nothing sent yet
    writer = connection._writer
    if writer is None:  # closed after the pool handed it over (a failed health check)
        raise RedisConnectionError("the connection closed before the write")
    replies: list[Any] = []
    try:
        # One deadline for the write and all the replies instead of one per reply
        # (``timeout=math.inf`` turns the per-read one off): a timer per reply cost a
        # third of the round trip.
        async with asyncio.timeout(connection.socket_timeout):
            writer.writelines((packed,))  # what redis-py calls (and all a test double provides)
            await writer.drain()
            for _ in commands:
                try:
                    replies.append(await connection.read_response(disable_decoding=True, timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
    except BaseException:
        # Cut short (a broken connection, the deadline, a cancellation): replies may be
        # left unread, so the connection is out of step and must not be reused.
        await connection.disconnect(nowait=True)
        raise
    return replies
