"""`ScriptArguments`: a primitive's call as one `ScriptCall`, and its reply as its result type.

Arguments are checked here, through the primitive's declaration in `primitives`,
before anything is queued or sent, so a bad call raises `InvalidArgument` at once.
A script gets the time arguments first (see ``scripts/prelude.lua``, read from the
clock when the call is made), then the primitive's arguments after the key in
declared order: a str as UTF-8, None as '', an int as it is; a bucket's
``rate, burst, cost`` as its four integer units (see `bucket.bucket_spec`).
"""

from __future__ import annotations

from functools import partial
from types import NoneType
from typing import Any, Final

from ..arguments import check_text
from ..backend import BucketResult, CounterResult, SetResult
from ..bucket import BucketSpecCache
from ..clock import Clock
from ..errors import BackendError, InvalidArgument
from ..keys import storage_key
from ..primitives import Primitive
from .coalesce import ScriptCall

__all__ = ["CLOCK_TTL_GRACE_MS", "MAX_NOW", "ScriptArguments", "encode"]

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


def _argument(value: str | int | None) -> bytes | str | int:
    """A checked argument as sent (see the module docstring)."""
    if isinstance(value, str):
        return encode(value)
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


_DECODERS: Final[dict[type, Any]] = {
    CounterResult: _counter_result,
    SetResult: _set_result,
    BucketResult: _bucket_result,
    int: int,
    NoneType: _nothing,
}
"""How a reply becomes each result type (a set's members are decoded by `_members`)."""


class ScriptArguments:
    """The script calls of the primitives for one prefix and clock (None: the server's clock)."""

    __slots__ = ("_bucket_specs", "clock", "prefix")

    def __init__(self, prefix: str, clock: Clock | None) -> None:
        self.prefix = prefix
        self.clock = clock
        self._bucket_specs = BucketSpecCache()

    def _time(self) -> tuple[str | int, int]:
        if self.clock is None:
            return _SERVER_TIME
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= MAX_NOW:
            raise InvalidArgument(f"clock must return an int between 0 and {MAX_NOW} ms, got {now!r}")
        return now, CLOCK_TTL_GRACE_MS

    def call(self, primitive: Primitive, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ScriptCall[Any]:
        """``primitive(*args, **kwargs)`` as one script call; raises `InvalidArgument` before anything is sent."""
        values = primitive.bind(args, kwargs)
        key = values[0]
        if primitive.is_bucket:
            # The hot path: the key checked inline, the bucket's arguments once per combination.
            if key.__class__ is not str:
                check_text("key", key)
            spec = self._bucket_specs.get(values[1], values[2], values[3])
            argv: tuple[bytes | str | int, ...] = (*self._time(), spec.per_ms, spec.unit, spec.full, spec.cost)
        else:
            primitive.check(*values)
            argv = (*self._time(), *[_argument(value) for value in values[1:]])
        decode = partial(_members, key) if primitive.result is frozenset else _DECODERS[primitive.result]
        return ScriptCall(primitive.name, encode(storage_key(self.prefix, primitive.kind, key)), argv, decode)
