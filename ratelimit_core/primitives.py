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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, NoneType
from typing import Any, Final

from .arguments import COUNT, TEXT, Count, Domain
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

    def accepts(self, variable: str) -> str:
        return "True"


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

    `check` and the methods `define` makes are generated from the declaration once, at
    import (as `dataclasses` generates ``__init__``): a call runs each domain's test
    inline and binds its arguments as Python does, with no generic work per call.
    """

    name: str
    kind: Kind
    parameters: tuple[Parameter, ...]
    result: type
    resendable: bool
    is_bucket: bool = field(init=False)
    """True when its parameters after the key are `BUCKET_ARGUMENTS`."""
    check: Callable[..., None] = field(init=False, repr=False, compare=False)
    """``check(key, ...)``, every argument positional in declared order: raises `InvalidArgument`
    naming the first one outside its domain (a bucket's three together, by `bucket_spec`)."""

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.parameters)
        assert names[0] == "key", f"{self.name}: the key comes first"
        assert all(name.isidentifier() and name[0] != "_" and name != "self" for name in names), names
        object.__setattr__(self, "is_bucket", names[1:4] == BUCKET_ARGUMENTS)
        checks = self._checks()
        if self.is_bucket:
            checks.append("    _bucket_spec(rate, burst, cost)")
        source = f"def check({', '.join(names)}):\n" + "\n".join(checks or ["    pass"])
        object.__setattr__(self, "check", self._compile(source, "check", _bucket_spec=bucket_spec))

    def define(self, step: Callable[..., Any], *, is_async: bool) -> Callable[..., Any]:
        """A method with this primitive's name and signature: it checks its arguments, then returns
        ``step(self, key, ...)`` (awaited when `is_async`), every argument positional in declared order.

        A bucket's `BUCKET_ARGUMENTS` are passed unchecked: `step` checks them together
        (through a `bucket.BucketSpecCache`, which does it once per combination).
        """
        names = ", ".join(p.name for p in self.parameters)
        prefix, wait = ("async ", "await ") if is_async else ("", "")
        body = [*self._checks(), f"    return {wait}_step(self, {names})"]
        source = f"{prefix}def {self.name}(self, {self._signature()}):\n" + "\n".join(body)
        return self._compile(source, self.name, _step=step)

    def _signature(self) -> str:
        """The parameters as a ``def`` declares them; a default is a name bound by `_compile`."""
        declared: list[str] = []
        for parameter in self.parameters:
            if parameter.keyword_only and "*" not in declared:
                declared.append("*")
            default = "" if parameter.default is REQUIRED else f"=_default_{parameter.name}"
            declared.append(parameter.name + default)
        return ", ".join(declared)

    def _checks(self) -> list[str]:
        """One statement per parameter: its domain's inline test, and its full check when that fails."""
        lines = []
        for parameter in self.parameters:
            name = parameter.name
            accepts = parameter.domain.accepts(name)
            if accepts != "True":
                lines += [f"    if not ({accepts}):", f"        _domain_{name}.check({name!r}, {name})"]
        return lines

    def _compile(self, source: str, name: str, **bound: object) -> Callable[..., Any]:
        namespace: dict[str, Any] = {f"_domain_{p.name}": p.domain for p in self.parameters}
        namespace.update({f"_default_{p.name}": p.default for p in self.parameters})
        namespace.update(bound)
        exec(
            compile(source, f"<primitive {self.name}>", "exec"), namespace
        )  # the source is built from our own declaration
        function: Callable[..., Any] = namespace[name]
        return function


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
