"""Message quotas: at most `count` messages per identity in a fixed window of `window_ms`.

The window starts with the first counted message and ends `window_ms` later, when
the count starts again from zero (a fixed window, not a sliding one: it is one
counter, one key, one atomic step). A frame over the quota is dropped with
`ErrorCode.QUOTA_EXCEEDED` and the time until the window ends; the socket stays
open and it is not a strike (waiting is the only cure).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arguments import check_count
from .identity import ClientIdentity

__all__ = ["MessageQuota", "quota_key"]


def quota_key(identity: ClientIdentity) -> str:
    """The counter of the messages one identity sent in the current window."""
    return f"quota:{identity.key}"


@dataclass(frozen=True, slots=True)
class MessageQuota:
    """`count` messages per identity per fixed window of `window_ms` milliseconds."""

    count: int
    """Messages an identity may send in one window (at least 1)."""
    window_ms: int
    """Length of the window in milliseconds, counted from the first message of the window."""

    def __post_init__(self) -> None:
        check_count("quota count", self.count)
        check_count("quota window_ms", self.window_ms)
