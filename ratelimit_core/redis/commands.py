"""`ScriptCommands`: each primitive as one `ScriptCall`, and each reply as its result type.

Arguments are checked here, before anything is queued or sent, so a bad call
raises `InvalidArgument` at once. The time arguments every script takes first
(see ``scripts/prelude.lua``) are read from the clock when the call is made.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..arguments import check_count, check_optional_count, check_text
from ..backend import BucketResult, CounterResult, SetResult
from ..bucket import BucketSpecCache
from ..clock import Clock
from ..errors import BackendError, InvalidArgument
from ..keys import BUCKET, COUNTER, SET, Kind, storage_key
from .coalesce import ScriptCall

__all__ = ["CLOCK_TTL_GRACE_MS", "MAX_NOW", "ScriptCommands", "encode"]

CLOCK_TTL_GRACE_MS = 60_000
"""Added to every TTL under a caller's clock (see the `RedisBackend` docstring)."""

MAX_NOW = 2**52 - 1
"""A caller's clock must stay below this, so that now + any duration (a window or a
lease <= 10**15, a bucket's refill time <= 2**52) is exact in Lua's doubles."""

_SERVER_TIME = ("", 0)
"""The time arguments that make a script read the server's ``TIME``."""


def encode(text: str) -> bytes:
    """A key or member as sent: UTF-8 with ``surrogatepass``, so every str is distinct."""
    return text.encode("utf-8", "surrogatepass")


def _optional(value: int | None) -> int | str:
    return "" if value is None else value


def _counter_result(reply: Any) -> CounterResult:
    allowed, value, reset = reply
    reset = int(reset)
    return CounterResult(bool(allowed), int(value), None if reset < 0 else reset)


def _set_result(reply: Any) -> SetResult:
    added, size = reply
    return SetResult(bool(added), int(size))


def _bucket_result(reply: Any) -> BucketResult:
    allowed, remaining, retry, reset = reply
    return BucketResult(bool(allowed), int(remaining), int(retry), int(reset))


def _nothing(reply: Any) -> None:
    return None


def _members(key: str, reply: list[bytes]) -> frozenset[str]:
    try:
        return frozenset(member.decode("utf-8", "surrogatepass") for member in reply)
    except UnicodeDecodeError as exc:
        # Only a writer other than this driver can store bytes that are not UTF-8.
        raise BackendError(f"set {key!r:.80} holds a member that is not UTF-8: {exc}") from exc


class ScriptCommands:
    """The script calls of the primitives for one prefix and clock (None: the server's clock)."""

    __slots__ = ("_bucket_specs", "clock", "prefix")

    def __init__(self, prefix: str, clock: Clock | None) -> None:
        self.prefix = prefix
        self.clock = clock
        self._bucket_specs = BucketSpecCache()

    def _key(self, kind: Kind, key: str) -> bytes:
        return encode(storage_key(self.prefix, kind, key))

    def _time(self) -> tuple[str | int, int]:
        if self.clock is None:
            return _SERVER_TIME
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= MAX_NOW:
            raise InvalidArgument(f"clock must return an int between 0 and {MAX_NOW} ms, got {now!r}")
        return now, CLOCK_TTL_GRACE_MS

    # -- counters -------------------------------------------------------------

    def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> ScriptCall[CounterResult]:
        check_text("key", key)
        check_count("amount", amount)
        check_optional_count("limit", limit, minimum=0)
        check_optional_count("window_ms", window_ms)
        args = (*self._time(), amount, _optional(limit), _optional(window_ms))
        return ScriptCall("counter_incr", self._key(COUNTER, key), args, _counter_result)

    def counter_decr(self, key: str, amount: int = 1) -> ScriptCall[int]:
        check_text("key", key)
        check_count("amount", amount)
        return ScriptCall("counter_decr", self._key(COUNTER, key), (*self._time(), amount), int)

    def counter_get(self, key: str) -> ScriptCall[int]:
        check_text("key", key)
        return ScriptCall("counter_get", self._key(COUNTER, key), self._time(), int)

    # -- bounded sets with leases ----------------------------------------------

    def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> ScriptCall[SetResult]:
        check_text("key", key)
        check_text("member", member)
        check_optional_count("capacity", capacity, minimum=0)
        check_optional_count("lease_ms", lease_ms)
        args = (*self._time(), encode(member), _optional(capacity), _optional(lease_ms))
        return ScriptCall("set_add", self._key(SET, key), args, _set_result)

    def set_remove(self, key: str, member: str) -> ScriptCall[int]:
        check_text("key", key)
        check_text("member", member)
        return ScriptCall("set_remove", self._key(SET, key), (*self._time(), encode(member)), int)

    def set_size(self, key: str) -> ScriptCall[int]:
        check_text("key", key)
        return ScriptCall("set_size", self._key(SET, key), self._time(), int)

    def set_members(self, key: str) -> ScriptCall[frozenset[str]]:
        check_text("key", key)
        return ScriptCall("set_members", self._key(SET, key), self._time(), partial(_members, key))

    # -- token buckets ------------------------------------------------------------

    def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> ScriptCall[BucketResult]:
        check_text("key", key)
        spec = self._bucket_specs.get(rate, burst, cost)
        args = (*self._time(), spec.per_ms, spec.unit, spec.full, spec.cost)
        return ScriptCall("bucket_consume", self._key(BUCKET, key), args, _bucket_result)

    def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> ScriptCall[BucketResult]:
        check_text("key", key)
        spec = self._bucket_specs.get(rate, burst, cost)
        args = (*self._time(), spec.per_ms, spec.unit, spec.full, spec.cost)
        return ScriptCall("bucket_peek", self._key(BUCKET, key), args, _bucket_result)

    def bucket_reset(self, key: str) -> ScriptCall[None]:
        check_text("key", key)
        return ScriptCall("bucket_reset", self._key(BUCKET, key), self._time(), _nothing)
