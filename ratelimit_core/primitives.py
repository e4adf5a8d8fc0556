"""Each primitive of `Backend`, declared once: its parameters, their domains, what it stores and returns.

The drivers check arguments through these declarations (`Primitive.check`), the
Redis driver builds its script calls and its methods from them, and a call may be
sent again after a lost reply only when its declaration says `resendable`. Adding
a primitive means declaring it here, then writing its memory step, its Lua script
and its reference-model step.

A bucket's ``rate``, ``burst`` and ``cost`` are one domain: `bucket.bucket_spec`
checks them together (a cost above the burst, a burst beyond the rate's precision)
and turns them into integer units; a hot path takes them from a `BucketSpecCache`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, NoneType
from typing import Any, Final

from .arguments import COUNT, TEXT, Check, Count, Domain
from .backend import BucketResult, CounterResult, SetResult
from .bucket import bucket_spec
from .keys import BUCKET, COUNTER, SET, Kind

__all__ = ["BUCKET_ARGUMENTS", "PRIMITIVES", "REQUIRED", "RESENDABLE", "Parameter", "Primitive"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""The default of a parameter that has none."""

BUCKET_ARGUMENTS: Final = ("rate", "burst", "cost")
"""The parameters checked together by `bucket.bucket_spec`, in this order, right after the key."""


class _BucketArgument:
    """The domain of `BUCKET_ARGUMENTS`: checked with the others by `bucket_spec`, not alone."""

    def check(self, name: str, value: object) -> object:
        return value

    def checker(self, name: str) -> Check:
        return _unchecked


def _unchecked(value: object) -> object:
    return value


_BUCKET_ARGUMENT: Final = _BucketArgument()


@dataclass(frozen=True, slots=True)
class Parameter:
    """One argument of a primitive, as `Backend` declares it."""

    name: str
    domain: Domain
    default: object = REQUIRED
    keyword_only: bool = False


@dataclass(frozen=True, slots=True)
class Primitive:
    """One primitive: the storage kind of its key, its parameters in order (the key first), its result.

    `resendable`: running it twice for one call changes nothing (a read, or a write
    that sets a state rather than changing it by an amount), so after a lost reply it
    may be sent again.
    """

    name: str
    kind: Kind
    parameters: tuple[Parameter, ...]
    result: type
    resendable: bool
    is_bucket: bool = field(init=False)
    """True when its parameters after the key are `BUCKET_ARGUMENTS`."""
    _checks: tuple[Check, ...] = field(init=False, repr=False)
    _positional: int = field(init=False, repr=False)
    _defaults: tuple[tuple[str, object], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.parameters)
        assert names[0] == "key", f"{self.name}: the key comes first"
        set_ = object.__setattr__
        set_(self, "is_bucket", names[1:4] == BUCKET_ARGUMENTS)
        set_(self, "_checks", tuple(p.domain.checker(p.name) for p in self.parameters))
        set_(self, "_positional", sum(not p.keyword_only for p in self.parameters))
        set_(self, "_defaults", tuple((p.name, p.default) for p in self.parameters))

    def check(self, *values: object) -> None:
        """Raise `InvalidArgument` naming the first of `values` (in declared order) outside its domain."""
        for check, value in zip(self._checks, values, strict=True):
            check(value)
        if self.is_bucket:
            bucket_spec(values[1], values[2], values[3])

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The values of a call ``primitive(*args, **kwargs)`` in declared order, defaults filled in.

        Raises `TypeError` as a Python function with this signature would (unchecked domains).
        """
        given = len(args)
        if given > self._positional:
            raise TypeError(f"{self.name}() takes {self._positional} positional arguments but {given} were given")
        if not kwargs and given == len(self._defaults):
            return args
        values = list(args)
        for name, default in self._defaults[given:]:
            value = kwargs.pop(name, default)
            if value is REQUIRED:
                raise TypeError(f"{self.name}() missing required argument {name!r}")
            values.append(value)
        if kwargs:
            raise TypeError(f"{self.name}() got unexpected keyword arguments {sorted(kwargs)}")
        return tuple(values)


_KEY = Parameter("key", TEXT)
_MEMBER = Parameter("member", TEXT)
_AMOUNT = Parameter("amount", COUNT, 1)
_BUCKET = (
    Parameter("rate", _BUCKET_ARGUMENT, keyword_only=True),
    Parameter("burst", _BUCKET_ARGUMENT, keyword_only=True),
    Parameter("cost", _BUCKET_ARGUMENT, 1, keyword_only=True),
)


def _optional(name: str, *, minimum: int) -> Parameter:
    """A keyword argument whose None means "no limit" or "no expiry"."""
    return Parameter(name, Count(minimum, optional=True), None, keyword_only=True)


PRIMITIVES: Final[Mapping[str, Primitive]] = MappingProxyType(
    {
        primitive.name: primitive
        for primitive in (
            Primitive(
                "counter_incr",
                COUNTER,
                (_KEY, _AMOUNT, _optional("limit", minimum=0), _optional("window_ms", minimum=1)),
                CounterResult,
                resendable=False,
            ),
            Primitive("counter_decr", COUNTER, (_KEY, _AMOUNT), int, resendable=False),
            Primitive("counter_get", COUNTER, (_KEY,), int, resendable=True),
            Primitive(
                "set_add",
                SET,
                (_KEY, _MEMBER, _optional("capacity", minimum=0), _optional("lease_ms", minimum=1)),
                SetResult,
                resendable=True,
            ),
            Primitive("set_remove", SET, (_KEY, _MEMBER), int, resendable=True),
            Primitive("set_size", SET, (_KEY,), int, resendable=True),
            Primitive("set_members", SET, (_KEY,), frozenset, resendable=True),
            Primitive("bucket_consume", BUCKET, (_KEY, *_BUCKET), BucketResult, resendable=False),
            Primitive("bucket_peek", BUCKET, (_KEY, *_BUCKET), BucketResult, resendable=True),
            Primitive("bucket_reset", BUCKET, (_KEY,), NoneType, resendable=True),
        )
    }
)
"""Every primitive of `Backend`, by name, in the protocol's order."""

RESENDABLE: Final = frozenset(name for name, primitive in PRIMITIVES.items() if primitive.resendable)
"""The primitives that may run twice for one call: after a lost reply these, and only these, are sent again."""
