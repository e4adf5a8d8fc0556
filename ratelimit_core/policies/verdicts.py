"""The decisions policies return: values, never exceptions.

A connection attempt ends in `Admitted` or a `Denial`; a message in `Allowed` or
a `Denial`. In shadow mode a policy never returns a `Denial`: the one that would
have applied rides on the `Admitted` or `Allowed` as `shadowed`. A `Denial`
carries everything an adapter puts on the wire: the JSON error frame, and the
close code when the socket must be closed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

from .codes import ERROR_FRAME_TYPE, CloseCode, ErrorCode, close_reason
from .leases import Leases

__all__ = ["Admitted", "Allowed", "ConnectionVerdict", "Denial", "MessageVerdict"]


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal: send `frame_text()`, then close with `close_code` unless it is None."""

    code: ErrorCode
    """The error frame's ``code``."""
    message: str
    """A human-readable explanation for the frame."""
    retry_after_ms: int | None
    """When trying again may succeed; None when waiting does not help (payload too large)."""
    close_code: CloseCode | None
    """The WebSocket close code, or None when the socket stays open (the message is dropped)."""
    degraded: bool = False
    """True when the backend answered without its primary storage (see `FallbackBackend`)."""
    limit: str | None = None
    """The message type whose bucket refused; None for every other denial (the frame then has no ``limit``)."""

    def frame(self) -> dict[str, object]:
        """The error frame as a dict: ``type``, ``code``, ``message``, ``retry_after_ms``, and ``limit`` when set."""
        frame: dict[str, object] = {
            "type": ERROR_FRAME_TYPE,
            "code": self.code,
            "message": self.message,
            "retry_after_ms": self.retry_after_ms,
        }
        if self.limit is not None:
            frame["limit"] = self.limit
        return frame

    def frame_text(self) -> str:
        """The error frame as the JSON text sent to the client."""
        return json.dumps(self.frame(), separators=(",", ":"))

    @property
    def http_status(self) -> HTTPStatus:
        """The status when a connect denial is answered over HTTP: 503 when the storage failed, else 429."""
        if self.code == ErrorCode.BACKEND_UNAVAILABLE:
            return HTTPStatus.SERVICE_UNAVAILABLE
        return HTTPStatus.TOO_MANY_REQUESTS

    @property
    def close_reason(self) -> str:
        """The close frame's reason: the wire code, within the 123-byte limit."""
        return close_reason(self.code)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A connection that may proceed; it holds `leases` until it ends.

    The caller must `Leases.release` them however the connection ends; release is
    idempotent and a cancelled caller does not cut it short, so every exit path
    may simply call it.
    """

    leases: Leases
    """The slots the connection holds: refresh them while it lives, release them when it ends."""
    degraded: bool = False
    """True when the backend answered without its primary storage (see `FallbackBackend`)."""
    shadowed: Denial | None = None
    """In shadow mode, the denial that would have refused this connection; None otherwise."""


@dataclass(frozen=True, slots=True)
class Allowed:
    """A message that may be delivered."""

    remaining: int | None
    """Whole tokens left in the sender's bucket; None when messages are not rate-limited."""
    degraded: bool = False
    """True when the backend answered without its primary storage (see `FallbackBackend`)."""
    shadowed: Denial | None = None
    """In shadow mode, the denial that would have dropped this message or closed the socket; None otherwise."""


ConnectionVerdict = Admitted | Denial
"""What `ConnectionPolicy.admit` returns."""
MessageVerdict = Allowed | Denial
"""What `MessageGate.admit` returns."""
