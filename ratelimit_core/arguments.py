"""Checks shared by every driver, run before any storage is touched.

Each check raises `InvalidArgument` (a `ValueError`) naming the argument and the
value that was wrong, so that a bad call never reaches Redis or memory.
"""

from __future__ import annotations

from .errors import InvalidArgument

__all__ = ["check_count", "check_optional_count", "check_text"]

MAX_COUNT = 10**15
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
