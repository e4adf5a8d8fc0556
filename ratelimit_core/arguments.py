"""The domains of the primitives' arguments, checked before any storage is touched.

Each check raises `InvalidArgument` (a `ValueError`) naming the argument and the
value that was wrong, so that a bad call never reaches Redis or memory. The
primitives declare which domain each argument has in `primitives`; the domain
objects (`Text`, `Count`) and the functions here also serve the other public entry
points (policies, driver options, an adapter's settings, checked under their own names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from .errors import InvalidArgument

__all__ = [
    "COUNT",
    "MAX_COUNT",
    "TEXT",
    "Count",
    "Domain",
    "Text",
    "check_count",
    "check_flag",
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
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an int or None, got {value!r}")
    return check_count(name, value, minimum=minimum)


def check_flag(name: str, value: object) -> bool:
    """Return `value` if it is True or False (not merely truthy), else raise."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, got {value!r:.80}")
    return value


def check_text(name: str, value: object) -> str:
    """Keys and set members are arbitrary `str`s; anything else is refused."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, got {type(value).__name__} {value!r:.80}")
    return value


class Domain(Protocol):
    """What values an argument may take."""

    def check(self, name: str, value: object) -> object:
        """`value` if it is in the domain; else raise `InvalidArgument` naming `name` and the value."""
        ...

    def accepts(self, variable: str) -> str:
        """A Python expression over `variable`, true for the usual valid values without a call.

        It must never be true for a value `check` refuses. The checks `primitives`
        generates evaluate it first and call `check` only when it is false.
        """
        ...


@dataclass(frozen=True, slots=True)
class Text:
    """Any `str` (keys and set members)."""

    def check(self, name: str, value: object) -> str:
        return check_text(name, value)

    def accepts(self, variable: str) -> str:
        return f"{variable}.__class__ is str"


@dataclass(frozen=True, slots=True)
class Count:
    """An int in [minimum, MAX_COUNT]; with `optional`, None too ("no limit", "no expiry")."""

    minimum: int = 1
    optional: bool = False

    def check(self, name: str, value: object) -> int | None:
        if self.optional:
            return check_optional_count(name, value, minimum=self.minimum)
        return check_count(name, value, minimum=self.minimum)

    def accepts(self, variable: str) -> str:
        # `.__class__ is int` leaves out bool (and int subclasses, which `check` then judges).
        in_range = f"{variable}.__class__ is int and {self.minimum} <= {variable} <= {MAX_COUNT}"
        return f"{variable} is None or ({in_range})" if self.optional else in_range


TEXT: Final = Text()
COUNT: Final = Count()
