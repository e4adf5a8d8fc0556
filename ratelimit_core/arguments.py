"""The domains of the primitives' arguments, checked before any storage is touched.

Each check raises `InvalidArgument` (a `ValueError`) naming the argument and the
value that was wrong, so that a bad call never reaches Redis or memory. The
primitives declare which domain each argument has in `primitives`; the functions
here serve the other public entry points (policies, driver options).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from .errors import InvalidArgument

__all__ = [
    "COUNT",
    "MAX_COUNT",
    "TEXT",
    "Check",
    "Count",
    "Domain",
    "Text",
    "check_count",
    "check_optional_count",
    "check_text",
]

MAX_COUNT: Final = 10**15
"""Upper bound for amounts, limits, capacities and durations: far above any real
limit and far below 2**53, so Lua's doubles stay exact."""


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """Return `value` if it is an int in [minimum, MAX_COUNT], else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an int, got {value!r}")
    if not minimum <= value <= MAX_COUNT:
        raise InvalidArgument(f"{name} must be between {minimum} and {MAX_COUNT}, got {value!r}")
    return value


def check_optional_count(name: str, value: object, *, minimum: int = 1) -> int | None:
    """Like `check_count`, but None (meaning "no limit" or "no expiry") is accepted."""
    if value is None:
        return None
    return check_count(name, value, minimum=minimum)


def check_text(name: str, value: object) -> str:
    """Keys and set members are arbitrary `str`s; anything else is refused."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, got {type(value).__name__} {value!r:.80}")
    return value


Check = Callable[[object], object]
"""A check of one named argument: it raises `InvalidArgument` for a value outside the domain."""


class Domain(Protocol):
    """What values an argument may take."""

    def check(self, name: str, value: object) -> object:
        """`value` if it is in the domain; else raise `InvalidArgument` naming `name` and the value."""
        ...

    def checker(self, name: str) -> Check:
        """`check` for argument `name`, with a fast path for the common valid value (for hot paths)."""
        ...


@dataclass(frozen=True, slots=True)
class Text:
    """Any `str` (keys and set members)."""

    def check(self, name: str, value: object) -> str:
        return check_text(name, value)

    def checker(self, name: str) -> Check:
        def check(value: object) -> object:
            return value if value.__class__ is str else check_text(name, value)

        return check


@dataclass(frozen=True, slots=True)
class Count:
    """An int in [minimum, MAX_COUNT]; with `optional`, None too ("no limit", "no expiry")."""

    minimum: int = 1
    optional: bool = False

    def check(self, name: str, value: object) -> int | None:
        if value is None and self.optional:
            return None
        return check_count(name, value, minimum=self.minimum)

    def checker(self, name: str) -> Check:
        minimum, optional = self.minimum, self.optional

        def check(value: object) -> object:
            if value.__class__ is int and minimum <= value <= MAX_COUNT:
                return value
            if value is None and optional:
                return None
            return check_count(name, value, minimum=minimum)

        return check


TEXT: Final = Text()
COUNT: Final = Count()
