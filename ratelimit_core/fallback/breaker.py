"""`Breaker`: whether the primary is in use, and when to try it again while it is not.

Closed while the primary answers. Opened by an outage; then the primary is left
alone until a probe is due, first `cooldown_ms` later, then backing off (doubling)
up to `max_cooldown_ms`. Each transition is logged once on the
``ratelimit_core.fallback`` logger (WARNING when the primary goes away, INFO when
it is back) and reported to `on_transition`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..clock import Clock

__all__ = ["Breaker", "logger"]

logger = logging.getLogger("ratelimit_core.fallback")


class Breaker:
    """The circuit breaker of one `FallbackBackend`; `clock` gives milliseconds."""

    __slots__ = ("_backoff_ms", "_clock", "_next_probe_ms", "_on_transition", "_open", "cooldown_ms", "max_cooldown_ms")

    def __init__(
        self,
        *,
        cooldown_ms: int,
        max_cooldown_ms: int,
        clock: Clock,
        on_transition: Callable[[bool], None] | None = None,
    ) -> None:
        self.cooldown_ms = cooldown_ms
        self.max_cooldown_ms = max_cooldown_ms
        self._clock = clock
        self._on_transition = on_transition
        self._open = False
        self._backoff_ms = cooldown_ms
        self._next_probe_ms = 0

    def __repr__(self) -> str:
        return f"Breaker({'open' if self._open else 'closed'}, backoff={self._backoff_ms} ms)"

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def retry_after_ms(self) -> int:
        """Milliseconds until the next probe (at least 1): when a refused caller may try again."""
        return max(self._next_probe_ms - self._clock(), 1)

    def probe_due(self) -> bool:
        return self._clock() >= self._next_probe_ms

    def open(self, what: object, reason: str, on_error: str) -> None:
        """The primary (`what`, for the log) failed a call: stop using it until a probe succeeds."""
        self._next_probe_ms = self._clock() + self._backoff_ms
        if self._open:
            return
        self._open = True
        logger.warning(
            "primary backend %r unavailable (%s); on_error=%r until it answers again", what, reason, on_error
        )
        if self._on_transition is not None:
            self._on_transition(False)

    def probe_failed(self, what: object, reason: str) -> None:
        self._backoff_ms = min(self._backoff_ms * 2, self.max_cooldown_ms)
        self._next_probe_ms = self._clock() + self._backoff_ms
        logger.debug("primary backend %r still unavailable (%s)", what, reason)

    def close(self, what: object, summary: str) -> None:
        """The primary answered a probe and holds what this process changed: use it again."""
        self._open = False
        self._backoff_ms = self.cooldown_ms
        logger.info("primary backend %r is back; %s", what, summary)
        if self._on_transition is not None:
            self._on_transition(True)
