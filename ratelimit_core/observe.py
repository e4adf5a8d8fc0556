"""Decision hooks: see every allow/deny the policies make, at no cost when nobody listens.

A `DecisionHooks` object is explicit state: the policies (and so an adapter) are
given one, and call `emit` only when it holds a hook, so an unobserved decision
builds no `Decision` at all. A hook is a plain callable run inline on the event
loop; it must be quick and must not raise (an exception it raises is logged and
swallowed, so that observing can never change a decision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:
    # For the annotation only: the policies report to this module, so it cannot import them at run time.
    from .policies.codes import ErrorCode

__all__ = ["LIMITS", "Decision", "DecisionHook", "DecisionHooks", "Limit"]

logger = logging.getLogger("ratelimit_core.observe")

Limit = Literal["connect", "user", "ip", "room", "payload", "rate", "type", "quota"]
"""The limits a `Decision` may name: connection attempt rate, connection slots
per user, per IP, room capacity, frame size, message rate, a message type's rate
and the message quota."""

LIMITS: Final[tuple[Limit, ...]] = get_args(Limit)
"""Every `Limit`, e.g. to pre-create metric labels."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One allow/deny decision."""

    limit: Limit
    """Which limit decided."""
    allowed: bool
    """True when the limit let the connection or message through."""
    code: ErrorCode | None
    """The wire code of a denial (e.g. ``room_full``); None when allowed."""
    identity: str
    """Whom it was counted against: ``user:<pk>`` or ``ip:<address>``."""
    degraded: bool = False
    """True when the backend answered without its primary storage (see `FallbackBackend`)."""
    shadow: bool = False
    """True when the policy runs in shadow mode: `allowed` is what the limit would have decided,
    and nothing was refused or closed for it."""


DecisionHook = Callable[[Decision], None]
"""A callable given each `Decision`; run inline, so it must be quick and should not raise."""


class DecisionHooks:
    """The hooks decisions are reported to."""

    __slots__ = ("_hooks",)

    def __init__(self, *hooks: DecisionHook) -> None:
        self._hooks: tuple[DecisionHook, ...] = hooks

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def __repr__(self) -> str:
        return f"DecisionHooks({len(self._hooks)} hooks)"

    def add(self, hook: DecisionHook) -> None:
        """Report every later decision to `hook` as well."""
        self._hooks = (*self._hooks, hook)

    def remove(self, hook: DecisionHook) -> None:
        """Remove `hook`; a hook that is not there is ignored."""
        self._hooks = tuple(h for h in self._hooks if h != hook)  # == : bound methods are new objects

    def emit(self, decision: Decision) -> None:
        """Report `decision` to every hook; callers check ``if hooks:`` first to skip building it."""
        for hook in self._hooks:
            try:
                hook(decision)
            except Exception:
                logger.exception("decision hook %r failed", hook)
