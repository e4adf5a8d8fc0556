"""What to decide when the storage cannot: the ``on_error`` vocabulary.

Shared by `FallbackBackend` (which answers while its primary is down) and the
policies (which decide when a call fails outright); it sits below both.

- ``"fallback"``: decide from a per-process store; limits hold per process.
- ``"allow"``: fail open; every decision is allowed.
- ``"deny"``: fail closed; every decision is refused.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from .errors import InvalidArgument

__all__ = ["ON_ERROR_CHOICES", "OnError", "check_on_error"]

OnError = Literal["fallback", "allow", "deny"]
"""What to decide when the storage cannot (see the module docstring)."""

ON_ERROR_CHOICES: Final[tuple[OnError, ...]] = get_args(OnError)
"""``("fallback", "allow", "deny")``."""


def check_on_error(value: object) -> OnError:
    """`value` when it is one of `ON_ERROR_CHOICES`, else `InvalidArgument` naming it."""
    if isinstance(value, str) and value in ON_ERROR_CHOICES:
        return value
    raise InvalidArgument(f"on_error must be one of {ON_ERROR_CHOICES}, got {value!r:.80}")
