"""What the shadow route's limits would have refused, for the page to show.

`RateLimitMiddleware(..., shadow=True, hooks=SHADOW_REPORTS.hooks)` reports each
decision here; the consumer of a frame then takes its identity's would-be refusals
and shows them to the player. (A site in shadow mode would rather count them, for
example with `ratelimit_core.prometheus.PrometheusMetrics`, and read its logs.)
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ratelimit_core.observe import Decision, DecisionHooks

__all__ = ["SHADOW_REPORTS", "ShadowReports"]

_MESSAGE_LIMITS: Final = frozenset({"payload", "rate", "type", "quota"})
_KEPT: Final = 100
"""Would-be refusals kept per identity until its consumer takes them (a bound: older ones are dropped)."""


class ShadowReports:
    """Would-be message refusals per identity, from the decision hooks, until a consumer takes them."""

    __slots__ = ("_pending", "hooks")

    def __init__(self) -> None:
        self._pending: dict[str, deque[Decision]] = {}
        self.hooks = DecisionHooks(self.record)
        """Give these to the shadow route's middleware."""

    def record(self, decision: Decision) -> None:
        """A `DecisionHook`: keep a message decision that would have refused (connections show on the welcome)."""
        if decision.shadow and not decision.allowed and decision.limit in _MESSAGE_LIMITS:
            self._pending.setdefault(decision.identity, deque(maxlen=_KEPT)).append(decision)

    def take(self, identity: str) -> list[Decision]:
        """The would-be refusals of `identity` since the last call (the hooks ran before the frame was delivered)."""
        pending = self._pending.pop(identity, None)
        return [] if pending is None else list(pending)


SHADOW_REPORTS: Final = ShadowReports()
"""The one record of the example's shadow route (one process; each process of a site has its own)."""
