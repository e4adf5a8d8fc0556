"""The wire contract: error codes, close codes and close reasons.

Clients rely on these values; they change only with a new major version. Every
denial sends one JSON text frame ``{"type": "error", "code": ..., "message": ...,
"retry_after_ms": ...}`` (plus ``"limit"``, the message type, when a type's bucket
refused) and, for the codes that end the connection, closes with
the matching close code and the error code as the close reason. The enums are
`str` and `int` subclasses, so a frame holding one serialises to the plain value.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

__all__ = ["ERROR_FRAME_TYPE", "MAX_CLOSE_REASON_BYTES", "CloseCode", "ErrorCode", "close_reason"]


class ErrorCode(StrEnum):
    """The ``code`` of an error frame."""

    CONNECTION_LIMIT_EXCEEDED = "connection_limit_exceeded"
    """The user (or the anonymous client's IP) or the IP already holds its limit of sockets."""
    ROOM_FULL = "room_full"
    """The room already has its maximum number of members."""
    CONNECTION_RATE_EXCEEDED = "connection_rate_exceeded"
    """The user (or the anonymous client's IP) attempted connections faster than its token bucket allows."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """A frame (text counted as UTF-8 bytes) was larger than the limit."""
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    """A message came faster than a token bucket allows (the identity's, or its type's: then the frame's
    ``limit`` names the type)."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """The identity sent its quota of messages for the current window; the message was dropped."""
    BACKEND_UNAVAILABLE = "backend_unavailable"
    """The limits could not be checked (storage down) and ``on_error="deny"`` refuses what cannot be checked."""


class CloseCode(IntEnum):
    """The WebSocket close code after a denial that ends the connection."""

    CONNECTION_REFUSED = 4008
    """After `CONNECTION_LIMIT_EXCEEDED`, `CONNECTION_RATE_EXCEEDED` or `ROOM_FULL` at connect time."""
    PAYLOAD_TOO_LARGE = 4009
    """After `PAYLOAD_TOO_LARGE`."""
    RATE_LIMITED = 4010
    """After the last allowed rate violation in a row (`RATE_LIMIT_EXCEEDED`)."""
    TRY_AGAIN_LATER = 1013
    """After `BACKEND_UNAVAILABLE` at connect time: the registered "Try Again Later"
    (RFC 6455 registry), so generic clients treat it as temporary and reconnect later."""


ERROR_FRAME_TYPE: Final = "error"
"""The ``type`` of every denial frame."""

MAX_CLOSE_REASON_BYTES: Final = 123
"""RFC 6455 leaves 123 bytes for the reason in a close frame; some servers drop the
whole frame (the client then sees 1006) when the reason is longer."""


def close_reason(text: str, limit: int = MAX_CLOSE_REASON_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never in the middle of a character."""
    # 'replace' turns lone surrogates into '?', so the result is always valid UTF-8.
    encoded = text.encode("utf-8", "replace")[:limit]
    # A cut in the middle of a multi-byte character leaves a partial tail: 'ignore' drops it.
    return encoded.decode("utf-8", "ignore")
