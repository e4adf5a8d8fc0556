"""`ScriptArguments`: a primitive's call as one `ScriptCall`, and its reply as its result type.

The arguments come checked by the methods `Primitive.define` generates (a bucket's
``rate, burst, cost`` are checked here, through a `BucketSpecCache`), before
anything is queued or sent, so a bad call raises `InvalidArgument` at once. A
script gets the time arguments first (see ``scripts/prelude.lua``, read from the
clock when the call is made), then the primitive's arguments after the key in
declared order: a str as UTF-8, None as '', an int as it is; a bucket's
``rate, burst, cost`` as its four integer units (see `bucket.bucket_spec`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import NoneType
from typing import Any, Final, Protocol

from ..arguments import Count, Domain
from ..backend import BucketResult, CounterResult, SetResult
from ..bucket import BucketSpecCache
from ..clock import Clock
from ..errors import BackendError, InvalidArgument
from ..keys import Kind, storage_key
from ..primitives import Primitive
from .coalesce import ScriptCall

__all__ = ["CLOCK_TTL_GRACE_MS", "MAX_NOW", "ScriptArguments", "Sender", "Step", "encode", "script_step"]

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


_DECODERS: Final[dict[type, Callable[[Any], Any]]] = {
    CounterResult: _counter_result,
    SetResult: _set_result,
    BucketResult: _bucket_result,
    int: int,
    NoneType: _nothing,
}
"""How a reply becomes each result type (a set's members are decoded by `_members`, with their key)."""


class ScriptArguments:
    """What the script calls of one backend share: its prefix, its clock (None: the server's) and bucket specs."""

    __slots__ = ("bucket_specs", "clock", "prefix")

    def __init__(self, prefix: str, clock: Clock | None) -> None:
        self.prefix = prefix
        self.clock = clock
        self.bucket_specs = BucketSpecCache()

    def time(self) -> tuple[str | int, int]:
        """A script's time arguments, read now; raises `InvalidArgument` for a clock outside its domain."""
        if self.clock is None:
            return _SERVER_TIME
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= MAX_NOW:
            raise InvalidArgument(f"clock must return an int between 0 and {MAX_NOW} ms, got {now!r}")
        return now, CLOCK_TTL_GRACE_MS

    def key(self, kind: Kind, key: str) -> bytes:
        """The storage key of `key` as sent."""
        return encode(storage_key(self.prefix, kind, key))


class Sender(Protocol):
    """What runs script calls (a `RedisBackend`) or queues them (a `RedisBatch`), made from its `ScriptArguments`."""

    @property
    def _arguments(self) -> ScriptArguments: ...

    def _submit(self, call: ScriptCall[Any], /) -> Any: ...


Step = Callable[..., Any]
"""``step(sender, key, *values)``: the values of one call in declared order; returns ``sender._submit(call)``."""


def script_step(primitive: Primitive) -> Step:
    """The step of `primitive`'s method on a `Sender` (see `Primitive.define`): it makes the script call
    from the sender's `ScriptArguments` and returns ``sender._submit(call)``.

    Made once per primitive, so a call does only its own work. The values come
    checked, except a bucket's ``rate, burst, cost``, checked here through the
    `BucketSpecCache` (raising `InvalidArgument`).
    """
    name, kind = primitive.name, primitive.kind
    if primitive.result is frozenset:  # a set's members: an undecodable one is reported with its key

        def members(sender: Sender, key: str) -> Any:
            arguments = sender._arguments
            return sender._submit(ScriptCall(name, arguments.key(kind, key), arguments.time(), partial(_members, key)))

        return members
    decode = _DECODERS[primitive.result]
    if primitive.is_bucket:

        def bucket(sender: Sender, key: str, rate: float, burst: int, cost: int) -> Any:
            arguments = sender._arguments
            spec = arguments.bucket_specs.get(rate, burst, cost)
            argv = (*arguments.time(), spec.per_ms, spec.unit, spec.full, spec.cost)
            return sender._submit(ScriptCall(name, arguments.key(kind, key), argv, decode))

        return bucket
    if len(primitive.parameters) == 1:

        def key_only(sender: Sender, key: str) -> Any:
            arguments = sender._arguments
            return sender._submit(ScriptCall(name, arguments.key(kind, key), arguments.time(), decode))

        return key_only
    if all(_sent_as_is(parameter.domain) for parameter in primitive.parameters[1:]):

        def as_is(sender: Sender, key: str, *values: int) -> Any:
            arguments = sender._arguments
            return sender._submit(ScriptCall(name, arguments.key(kind, key), (*arguments.time(), *values), decode))

        return as_is

    def encoded(sender: Sender, key: str, *values: str | int | None) -> Any:
        arguments = sender._arguments
        argv = (*arguments.time(), *map(_argument, values))
        return sender._submit(ScriptCall(name, arguments.key(kind, key), argv, decode))

    return encoded


def _sent_as_is(domain: Domain) -> bool:
    """An argument whose every value is an int, sent as it is (no str to encode, no None)."""
    return isinstance(domain, Count) and not domain.optional
