"""One pipelined round trip of commands on a redis-py client: the driver's only use of redis-py's private API.

Two ways, chosen once per client by `round_trip_for`:

- direct, on a `redis.asyncio.Redis` over a connection pool, with redis-py in
  `SUPPORTED_REDIS_PY` (the range the tests run at both ends of): what redis-py's
  `Pipeline` does, without its per-command bookkeeping, which on the coalescer's
  hot path cost more than the round trip. The commands are packed by hiredis when
  it is installed (the ``redis`` extra installs it), written at once on one pooled
  connection, and the replies read back in order, error replies included, so the
  connection stays in step. It uses the pool's ``get_connection``/``release`` and
  the connection's ``read_response``, ``check_health``, ``disconnect`` and its
  stream writer, none of which redis-py promises to keep.
- public, anywhere else (a `RedisCluster`, whose pipeline splits the commands by
  node; a single-connection client; a redis-py newer than the range): redis-py's own
  ``pipeline(transaction=False)``. There the client's ``retry`` decides whether a
  round trip is sent again after a lost reply; `connect` builds clients that never
  do so on this path.

Neither way sends the commands again itself: if the connection breaks before every
reply is read, the server may have run them, and only the caller knows which may
run twice (see `Coalescer`).

On the direct way, the write and the first reply share one deadline, ``socket_timeout``,
under our own `asyncio.timeout`, and each reply read moves it ``socket_timeout`` on: a
server that stops answering fails the round trip within ``socket_timeout`` of its last
reply, as redis-py's own reads do, and a long round trip that keeps answering (a
heartbeat of thousands of writes, one reply per bundle) is not cut short. redis-py's ``send_packed_command`` bounds the
write with `asyncio.wait_for`, which on Python 3.11 returns normally when the task
is cancelled just as the write completes: the cancellation (a caller's, or this
deadline's) would be lost, and the reads after it would have no deadline. The
direct way also skips redis-py's OpenTelemetry metrics for these round trips (its
other commands, e.g. PING and SCRIPT LOAD, are still recorded); `Coalescer` counts
round trips and calls itself.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, TypeGuard, cast

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

__all__ = [
    "SUPPORTED_REDIS_PY",
    "UNDECODED",
    "Command",
    "Progress",
    "RoundTrip",
    "direct_fits",
    "direct_supported",
    "round_trip_for",
]

Command = tuple[bytes | str | int, ...]
"""A command and its arguments, e.g. ``("EVALSHA", sha, 1, key, ...)``."""

RoundTrip = Callable[[Sequence[Command]], Awaitable[list[Any]]]
"""Sends commands in one round trip; returns each reply (undecoded) or each error reply, in order."""

SUPPORTED_REDIS_PY: Final = ((6, 0), (9, 0))
"""The redis-py releases (major, minor) this module is tested with, at both ends: from the first
up to but excluding the second. An older one is refused at import (`ImportError`); a newer one
gets redis-py's public pipeline instead of the direct way."""


def _release(version: str) -> tuple[int, int]:
    major, minor = [*re.findall(r"\d+", version), "0", "0"][:2]
    return int(major), int(minor)


def _installed_release() -> tuple[int, int]:
    # Older releases' cluster client sends a command again after a lost reply whatever its
    # ``retry`` says, and their Retry has no get_retries (seen with 5.0 and 5.3).
    installed, oldest = _release(redis.__version__), SUPPORTED_REDIS_PY[0]
    if installed < oldest:
        needed = ".".join(map(str, oldest))
        raise ImportError(
            f"ratelimit_core.redis needs redis-py >= {needed}, found {redis.__version__}:"
            f" pip install 'redis[hiredis]>={needed}'"
        )
    return installed


_INSTALLED: Final = _installed_release()

UNDECODED: Final = {NEVER_DECODE: True}
"""Options for redis-py's ``execute_command``: the reply stays bytes (members may hold lone
surrogates, which the driver decodes itself)."""

_pack_command: Callable[[Command], bytes] | None
try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra installs hiredis
    _pack_command = None
else:
    # hiredis's stub types the argument as a 1-tuple; it takes any tuple of arguments.
    _pack_command = cast(Callable[[Command], bytes], hiredis.pack_command)

_NO_READ_TIMEOUT: Final = math.inf
"""``read_response(timeout=...)`` for "no deadline of its own" (redis-py 6 arms a timer that never
fires; 8.1 arms none). The round trip's own deadline bounds the reads."""


def direct_supported(version: tuple[int, int] = _INSTALLED) -> bool:
    """True when the direct way may be used with redis-py `version` (default: the installed one)."""
    oldest, first_unsupported = SUPPORTED_REDIS_PY
    return oldest <= version < first_unsupported


def direct_fits(client: object) -> TypeGuard[redis.asyncio.Redis]:
    """True when `round_trip_for(client)` takes the direct way (see the module docstring)."""
    return direct_supported() and isinstance(client, redis.asyncio.Redis) and not client.single_connection_client


class Progress:
    """Replies read so far by the round trips of one client: a long round trip shows that it moves.

    The direct way counts each reply as it is read; redis-py's pipeline, all of a
    round trip's replies when it ends.
    """

    __slots__ = ("replies",)

    def __init__(self) -> None:
        self.replies = 0


def round_trip_for(client: redis.asyncio.Redis | RedisCluster, progress: Progress | None = None) -> RoundTrip:
    """The way to send round trips on `client`: direct where it fits, else redis-py's public pipeline.

    A connection failure or a timeout raises, for the whole round trip; nothing is
    sent again by the direct way. Replies read are counted in `progress`.
    """
    progress = Progress() if progress is None else progress
    if direct_fits(client):
        return partial(_direct_round_trip, client, progress)
    return partial(_public_round_trip, client, progress)


async def _public_round_trip(
    client: redis.asyncio.Redis | RedisCluster, progress: Progress, commands: Sequence[Command]
) -> list[Any]:
    if len(commands) == 1:
        replies = [await client.execute_command(*commands[0], **UNDECODED)]
    else:
        pipeline = client.pipeline(transaction=False)
        for command in commands:
            pipeline.execute_command(*command, **UNDECODED)
        replies = list(await pipeline.execute(raise_on_error=False))
    progress.replies += len(replies)
    return replies


async def _direct_round_trip(client: redis.asyncio.Redis, progress: Progress, commands: Sequence[Command]) -> list[Any]:
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await _send_and_read(connection, commands, progress)
    finally:
        await pool.release(connection)


async def _send_and_read(connection: Any, commands: Sequence[Command], progress: Progress) -> list[Any]:
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
    timeout_s = connection.socket_timeout
    last = len(commands) - 1
    try:
        # One deadline, moved on as replies come, instead of a timer per reply (which cost a
        # third of a round trip): a round trip of one command arms one timer.
        async with asyncio.timeout(timeout_s) as deadline:
            writer.writelines((packed,))  # what redis-py calls (and all a test double provides)
            await writer.drain()
            for n in range(len(commands)):
                try:
                    replies.append(await connection.read_response(disable_decoding=True, timeout=_NO_READ_TIMEOUT))
                except ResponseError as exc:
                    replies.append(exc)
                progress.replies += 1
                if timeout_s is not None and n < last:
                    deadline.reschedule(asyncio.get_running_loop().time() + timeout_s)
    except BaseException:
        # Cut short (a broken connection, the deadline, a cancellation): replies may be
        # left unread, so the connection is out of step and must not be reused.
        await connection.disconnect(nowait=True)
        raise
    return replies
