"""`RedisBackend`: the primitives in Redis (or Valkey), shared by every process.

Each primitive is one round trip: an EVALSHA of one script from ``scripts/``
(redis-py's `register_script` reloads it after a NOSCRIPT). A script touches
exactly one key, named in ``KEYS``, so it is atomic and runs unchanged on Redis
Cluster. The results equal `MemoryBackend`'s, to the integer, for any sequence of
calls under the same clock.

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

Errors: connection refused or reset and timeouts raise `BackendUnavailable`; any
other Redis error (e.g. WRONGTYPE) raises `BackendError`; the original is chained.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self, cast

import redis.asyncio
from redis.asyncio.client import NEVER_DECODE  # type: ignore[attr-defined]
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from ..arguments import check_count, check_optional_count, check_text
from ..backend import BucketResult, CounterResult, SetResult
from ..bucket import bucket_spec
from ..clock import Clock
from ..errors import BackendError, InvalidArgument
from ..keys import BUCKET, COUNTER, SET, Kind, check_prefix, storage_key
from .connect import Client, client_from_url
from .errors import translated_errors
from .lua import SCRIPT_NAMES, script_source

__all__ = ["CLOCK_TTL_GRACE_MS", "RedisBackend"]

CLOCK_TTL_GRACE_MS = 60_000
"""Added to every TTL under a caller's clock (see the module docstring)."""

_MAX_NOW = 2**52 - 1
"""A caller's clock must stay below this, so that now + any duration (a window or a
lease <= 10**15, a bucket's refill time <= 2**52) is exact in Lua's doubles."""

_SCAN_BATCH = 500
_GLOB_SPECIAL = frozenset(b"*?[]\\")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _glob_escape(raw: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in raw)


def _reset_or_none(value: int) -> int | None:
    return None if value < 0 else value


class _UndecodedReplies:
    """What a Script needs of a client, with replies kept as bytes.

    Members may hold lone surrogates, which a client with ``decode_responses=True``
    could not decode; the driver decodes them itself with ``surrogatepass``.
    """

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: bytes | str) -> Any:
        return await self._client.execute_command("EVALSHA", sha, numkeys, *keys_and_args, **{NEVER_DECODE: True})

    async def script_load(self, script: str) -> Any:
        return await self._client.script_load(script)


class RedisBackend:
    """A `Backend` over a `redis.asyncio` client, or a URL to build one from.

    A client built from a URL (see `from_url`) gets short timeouts and a small retry
    policy (see `connect`) and is closed by `aclose`; a client passed in stays the
    caller's to close. Either ``decode_responses`` setting works.
    """

    def __init__(self, client_or_url: Client | str, *, clock: Clock | None = None, prefix: str = "rl:") -> None:
        self.prefix = check_prefix(prefix)
        if clock is not None and not callable(clock):
            raise InvalidArgument(f"clock must be a callable returning milliseconds or None, got {clock!r}")
        self.clock: Clock | None = clock
        if isinstance(client_or_url, str):
            self._client = client_from_url(client_or_url)
            self._owns_client = True
        elif isinstance(client_or_url, redis.asyncio.Redis | RedisCluster):
            self._client = client_or_url
            self._owns_client = False
        else:
            raise InvalidArgument(
                "client_or_url must be a redis.asyncio.Redis or RedisCluster client or a redis:// URL,"
                f" got {client_or_url!r:.80}"
            )
        # redis-py's RedisCluster breaks when its first commands run concurrently
        # (seen with redis-py 8.1): initialise it once, under a lock, before the first.
        self._cluster_ready = not isinstance(self._client, RedisCluster)
        self._cluster_lock = asyncio.Lock()
        self._replies = cast(redis.asyncio.Redis, _UndecodedReplies(self._client))
        self._scripts: dict[str, AsyncScript] = {
            name: self._client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, prefix: str = "rl:", **options: Any) -> Self:
        """A backend over a new client for `url`, built by `connect.client_from_url` with `options`.

        The backend owns that client: `aclose` closes it.
        """
        backend = cls(client_from_url(url, **options), clock=clock, prefix=prefix)
        backend._owns_client = True
        return backend

    def __repr__(self) -> str:
        clock = "server" if self.clock is None else repr(self.clock)
        return f"RedisBackend(prefix={self.prefix!r}, clock={clock})"

    @property
    def client(self) -> Client:
        """The underlying client (for diagnostics and tests)."""
        return self._client

    def _key(self, kind: Kind, key: str) -> bytes:
        return _encode(storage_key(self.prefix, kind, key))

    def _time_args(self) -> tuple[str, str]:
        if self.clock is None:
            return "", "0"
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= _MAX_NOW:
            raise InvalidArgument(f"clock must return an int between 0 and {_MAX_NOW} ms, got {now!r}")
        return str(now), str(CLOCK_TTL_GRACE_MS)

    async def _initialize_cluster(self) -> None:
        async with self._cluster_lock:
            if not self._cluster_ready:
                assert isinstance(self._client, RedisCluster)
                with translated_errors("cluster initialize"):
                    await self._client.initialize()
                self._cluster_ready = True

    async def _run(self, name: str, key: bytes, *args: bytes | str) -> Any:
        time_args = self._time_args()
        if not self._cluster_ready:
            await self._initialize_cluster()
        with translated_errors(name):
            return await self._scripts[name](keys=[key], args=[*time_args, *args], client=self._replies)

    # -- counters -------------------------------------------------------------

    async def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        check_text("key", key)
        check_count("amount", amount)
        check_optional_count("limit", limit, minimum=0)
        check_optional_count("window_ms", window_ms)
        allowed, value, reset = await self._run(
            "counter_incr",
            self._key(COUNTER, key),
            str(amount),
            "" if limit is None else str(limit),
            "" if window_ms is None else str(window_ms),
        )
        return CounterResult(bool(allowed), int(value), _reset_or_none(int(reset)))

    async def counter_decr(self, key: str, amount: int = 1) -> int:
        check_text("key", key)
        check_count("amount", amount)
        return int(await self._run("counter_decr", self._key(COUNTER, key), str(amount)))

    async def counter_get(self, key: str) -> int:
        check_text("key", key)
        return int(await self._run("counter_get", self._key(COUNTER, key)))

    # -- bounded sets with leases ----------------------------------------------

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        check_text("key", key)
        check_text("member", member)
        check_optional_count("capacity", capacity, minimum=0)
        check_optional_count("lease_ms", lease_ms)
        added, size = await self._run(
            "set_add",
            self._key(SET, key),
            _encode(member),
            "" if capacity is None else str(capacity),
            "" if lease_ms is None else str(lease_ms),
        )
        return SetResult(bool(added), int(size))

    async def set_remove(self, key: str, member: str) -> int:
        check_text("key", key)
        check_text("member", member)
        return int(await self._run("set_remove", self._key(SET, key), _encode(member)))

    async def set_size(self, key: str) -> int:
        check_text("key", key)
        return int(await self._run("set_size", self._key(SET, key)))

    async def set_members(self, key: str) -> frozenset[str]:
        check_text("key", key)
        raw: list[bytes] = await self._run("set_members", self._key(SET, key))
        try:
            return frozenset(member.decode("utf-8", "surrogatepass") for member in raw)
        except UnicodeDecodeError as exc:
            # Only a writer other than this driver can store bytes that are not UTF-8.
            raise BackendError(f"set {key!r:.80} holds a member that is not UTF-8: {exc}") from exc

    # -- token buckets ------------------------------------------------------------

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        check_text("key", key)
        spec = bucket_spec(rate, burst, cost)
        allowed, remaining, retry, reset = await self._run(
            "bucket_consume",
            self._key(BUCKET, key),
            str(spec.per_ms),
            str(spec.unit),
            str(spec.full),
            str(spec.cost),
        )
        return BucketResult(bool(allowed), int(remaining), int(retry), int(reset))

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        check_text("key", key)
        spec = bucket_spec(rate, burst, cost)
        allowed, remaining, retry, reset = await self._run(
            "bucket_peek",
            self._key(BUCKET, key),
            str(spec.per_ms),
            str(spec.unit),
            str(spec.full),
            str(spec.cost),
        )
        return BucketResult(bool(allowed), int(remaining), int(retry), int(reset))

    async def bucket_reset(self, key: str) -> None:
        check_text("key", key)
        await self._run("bucket_reset", self._key(BUCKET, key))

    # -- housekeeping ---------------------------------------------------------------

    async def ping(self) -> None:
        with translated_errors("PING"):
            await self._client.ping()

    async def clear(self) -> None:
        """Delete every key under the prefix (SCAN + UNLINK in batches; not atomic)."""
        pattern = _glob_escape(_encode(self.prefix)) + b"*"
        with translated_errors("clear"):
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
                "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_BATCH, **target, **{NEVER_DECODE: True}
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
        """Close the client if this backend built it from a URL."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
