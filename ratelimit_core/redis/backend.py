"""`RedisBackend`: the primitives in Redis (or Valkey), shared by every process.

Each primitive is one EVALSHA of one script from ``scripts/`` (reloaded after a
NOSCRIPT). A script touches exactly one key, named in ``KEYS``, so it is atomic
and runs unchanged on Redis Cluster. The results equal `MemoryBackend`'s, to the
integer, for any sequence of calls under the same clock.

Round trips: a call made while none of this backend's round trips is in flight is
sent at once; calls made meanwhile by other tasks of the event loop go together
in the next one, as a pipeline (see `coalesce`). `batch` sends many calls at once.

Storage layout, under ``keys.storage_key(prefix, kind, key)`` sent as UTF-8 bytes
(``surrogatepass``, so every Python str is a distinct key):

- counter ``{prefix}c:{key}``: a hash, ``v`` = value, ``x`` = logical expiry (ms;
  absent when the counter has no window). A counter at 0 is deleted. The value is
  changed only by HINCRBY and read back as a string, so it is exact up to 2**63.
- set ``{prefix}s:{key}``: a sorted set of members scored by lease end (ms;
  ``+inf`` for a permanent member). A lease ends when now >= its score.
- bucket ``{prefix}b:{key}``: a hash, ``l`` = level in units, ``u`` = last update
  (ms), ``f`` = when the bucket is full again (ms).

Time source: with ``clock=None`` every script reads the server's ``TIME``, so all
application servers share one clock. With a clock, Python sends its ``now`` and all
expiry follows that clock.

TTLs are garbage collection only; the logical expiry stored in the value decides.
Under the server clock a key's TTL ends exactly at its logical expiry (counters
with a window, buckets, sets without a permanent member). Under a caller's clock
the TTL is the logical remainder plus `CLOCK_TTL_GRACE_MS`, so a clock that runs
slower than real time loses nothing early. A counter without a window, and a set
holding a permanent member, have no TTL and stay until removed.

Errors (see `errors`): a server that cannot serve now (refused, reset, timed out,
LOADING, READONLY, BUSY, a cluster that is down, ...) raises `BackendUnavailable`; one
that refuses this client (credentials, ACL permissions, a TLS certificate that does
not verify) raises `BackendMisconfigured`; any other Redis error (e.g. WRONGTYPE)
raises `BackendError`; the original is chained.

A lost reply never makes a script run twice (see `coalesce`). That holds for every
client built from a URL, and for a pooled `redis.asyncio.Redis` passed in, on the
redis-py releases of `pipeline.SUPPORTED_REDIS_PY`. Any other client passed in (a
`RedisCluster`, a single-connection client, or any client on a newer redis-py) goes
through redis-py's own pipeline, which sends a round trip again as the client's
``retry`` says: build it with ``retry=Retry(NoBackoff(), 0)`` (as `connect` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from ..backend import ADD_MANY_YIELD_EVERY, Backend, ClosesOnExit, SetResult
from ..clock import Clock
from ..errors import BackendError, InvalidArgument
from ..keys import check_prefix
from ..primitives import PRIMITIVES
from .batch import RedisBatch
from .coalesce import Coalescer, ScriptCall
from .commands import CLOCK_TTL_GRACE_MS, ScriptArguments, encode, script_step
from .connect import Client, client_from_url, server_name
from .errors import REDIS_FAILURES, translated, translated_errors
from .lua import SCRIPT_NAMES, script_source
from .pipeline import UNDECODED
from .tls_probe import refusal_behind

__all__ = ["CLOCK_TTL_GRACE_MS", "RedisBackend"]

T = TypeVar("T")
P = ParamSpec("P")

_SCAN_BATCH = 500
_GLOB_SPECIAL = frozenset(b"*?[]\\")


def _glob_escape(raw: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in raw)


def _runs_script(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisBackend, P], Coroutine[Any, Any, T]]:
    """`Backend`'s `method` with its signature, as one script call of its primitive (see `Primitive.define`)."""
    primitive = PRIMITIVES[method.__name__]
    function = primitive.define(script_step(primitive), is_async=True)
    function.__qualname__ = f"RedisBackend.{method.__name__}"
    function.__doc__ = method.__doc__
    function.__annotations__ = dict(method.__annotations__)
    return cast("Callable[Concatenate[RedisBackend, P], Coroutine[Any, Any, T]]", function)


def _checked_client(client: object) -> Client:
    if isinstance(client, redis.asyncio.Redis | RedisCluster):
        return client
    if isinstance(client, str):  # not echoed: a URL may hold a password
        raise InvalidArgument(
            "client must be a redis.asyncio client, got a str: for a URL use RedisBackend.from_url(url)"
        )
    raise InvalidArgument(f"client must be a redis.asyncio.Redis or RedisCluster client, got {client!r:.80}")


class RedisBackend(ClosesOnExit):
    """A `Backend` over a `redis.asyncio` client (`Redis` or `RedisCluster`); `from_url` builds one from a URL.

    A client built by `from_url` gets short timeouts and a retry policy that never
    sends a script again (see `connect`), and is closed by `aclose`; a client passed
    in stays the caller's to close unless ``close_client=True``. Either
    ``decode_responses`` setting works. Like its client, a backend belongs to the
    event loop it is first used on.
    """

    def __init__(
        self, client: Client, *, clock: Clock | None = None, prefix: str = "rl:", close_client: bool = False
    ) -> None:
        self.prefix = check_prefix(prefix)
        if clock is not None and not callable(clock):
            raise InvalidArgument(f"clock must be a callable returning milliseconds or None, got {clock!r}")
        self.clock: Clock | None = clock
        self._client = _checked_client(client)
        self._close_client = close_client
        # redis-py's RedisCluster breaks when its first commands run concurrently
        # (seen with redis-py 8.1): initialise it once, under a lock, before the first.
        self._cluster_ready = not isinstance(self._client, RedisCluster)
        self._cluster_lock = asyncio.Lock()
        self._arguments = ScriptArguments(self.prefix, clock)
        self._coalescer = Coalescer(self._client, {name: script_source(name) for name in SCRIPT_NAMES})

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, prefix: str = "rl:", **options: Any) -> Self:
        """A backend over a new client for `url`, built by `connect.client_from_url` with `options`.

        The backend owns that client: `aclose` closes it. Raises `InvalidArgument` for a
        URL or options that cannot be used.
        """
        return cls(client_from_url(url, **options), clock=clock, prefix=prefix, close_client=True)

    def __repr__(self) -> str:
        clock = "server" if self.clock is None else repr(self.clock)
        return f"RedisBackend(prefix={self.prefix!r}, clock={clock})"

    @property
    def client(self) -> Client:
        """The underlying client (for diagnostics and tests)."""
        return self._client

    @property
    def coalescer(self) -> Coalescer:
        """What sends this backend's script calls (its counters show the mean batch size)."""
        return self._coalescer

    @property
    def replies_read(self) -> int:
        """Replies read so far, counted as each arrives (see `ShowsProgress`)."""
        return self._coalescer.progress.replies

    def batch(self) -> RedisBatch:
        """Calls collected in ``async with backend.batch() as batch:`` and sent in one round trip.

        See `batch.RedisBatch`: each call's `result()` is available after the block.
        """
        return RedisBatch(self._arguments, self._run_all)

    async def _initialize_cluster(self) -> None:
        async with self._cluster_lock:
            if not self._cluster_ready:
                assert isinstance(self._client, RedisCluster)
                try:
                    await self._client.initialize()
                except REDIS_FAILURES as exc:
                    cause = await refusal_behind(exc, self._client)  # a refused TLS client certificate, or `exc`
                    raise translated(cause, "cluster initialize", server_name(self._client)) from exc
                self._cluster_ready = True

    def _submit(self, call: ScriptCall[T]) -> Awaitable[T]:
        # A plain method, not a coroutine: one object fewer alive per call while Redis answers.
        if not self._cluster_ready:
            return self._submit_first(call)
        return self._coalescer.run(call)

    async def _submit_first(self, call: ScriptCall[T]) -> T:
        await self._initialize_cluster()
        return await self._coalescer.run(call)

    async def _run_all(self, calls: Sequence[ScriptCall[Any]]) -> None:
        if not self._cluster_ready:
            await self._initialize_cluster()
        await self._coalescer.run_all(calls)

    # -- the primitives: each runs its script (see `commands` for arguments and replies) --

    counter_incr = _runs_script(Backend.counter_incr)
    counter_decr = _runs_script(Backend.counter_decr)
    counter_get = _runs_script(Backend.counter_get)
    set_add = _runs_script(Backend.set_add)
    set_remove = _runs_script(Backend.set_remove)
    set_size = _runs_script(Backend.set_size)
    set_members = _runs_script(Backend.set_members)
    bucket_consume = _runs_script(Backend.bucket_consume)
    bucket_peek = _runs_script(Backend.bucket_peek)
    bucket_reset = _runs_script(Backend.bucket_reset)

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        """`set_add` of each ``(key, member)`` with `lease_ms` and no capacity, in one round trip (see `AddsMany`).

        The calls go bundled (see `bundle`), with no task per call: a heartbeat of
        thousands of slots costs this process one batch, not thousands of coroutines.
        """
        batch = self.batch()
        calls = []
        step = ADD_MANY_YIELD_EVERY
        for start in range(0, len(members), step):
            if start:
                await asyncio.sleep(0)  # let other tasks (frames) run between parts of a large heartbeat
            calls += [batch.set_add(key, member, lease_ms=lease_ms) for key, member in members[start : start + step]]
        await batch.send()
        return [_outcome(call) for call in calls]

    # -- housekeeping ---------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except REDIS_FAILURES as exc:
            cause = await refusal_behind(exc, self._client)  # a refused TLS client certificate, or `exc`
            raise translated(cause, "PING", server_name(self._client)) from exc

    async def clear(self) -> None:
        """Delete every key under the prefix (SCAN + UNLINK in batches; not atomic)."""
        pattern = _glob_escape(encode(self.prefix)) + b"*"
        with translated_errors("clear", server_name(self._client)):
            if isinstance(self._client, RedisCluster):
                for node in self._client.get_primaries():
                    await self._clear_node(pattern, target_nodes=node)
            else:
                await self._clear_node(pattern)

    async def _clear_node(self, pattern: bytes, **target: Any) -> None:
        cursor = 0
        while True:
            # Undecoded: a key may hold a lone surrogate, which strict decoding refuses.
            reply = await self._client.execute_command(
                "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_BATCH, **target, **UNDECODED
            )
            cursor, keys = reply
            if isinstance(cursor, dict):  # a cluster answers ({node name: cursor}, keys)
                (cursor,) = cursor.values()
            for key in keys:
                # One key per command: on a cluster the keys of one node span many slots.
                await self._client.unlink(key)
            if int(cursor) == 0:
                break

    async def aclose(self) -> None:
        """Close the client if this backend owns it (built by `from_url`, or passed with ``close_client=True``)."""
        if self._close_client:
            await self._client.aclose()


def _outcome(call: ScriptCall[SetResult]) -> SetResult | BackendError:
    """A sent call's result, or its storage failure; anything else is a bug and is raised."""
    error = call.error
    if error is None:
        return call.result()
    if isinstance(error, BackendError):
        return error
    raise error
