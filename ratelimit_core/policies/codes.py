"""The wire contract's constants: error codes, close codes and close reasons.

Clients rely on these values; they change only with a new major version. Every
denial sends one JSON text frame ``{"type": "error", "code": ..., "message": ...,
"retry_after_ms": ...}`` and, for the codes that end the connection, closes with
the matching close code and the error code as the close reason.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BACKEND_UNAVAILABLE",
    "CLOSE_CONNECTION_REFUSED",
    "CLOSE_PAYLOAD_TOO_LARGE",
    "CLOSE_RATE_LIMITED",
    "CLOSE_TRY_AGAIN_LATER",
    "CONNECTION_LIMIT_EXCEEDED",
    "ERROR_FRAME_TYPE",
    "HTTP_SERVICE_UNAVAILABLE",
    "HTTP_TOO_MANY_REQUESTS",
    "MAX_CLOSE_REASON_BYTES",
    "PAYLOAD_TOO_LARGE",
    "RATE_LIMIT_EXCEEDED",
    "ROOM_FULL",
    "close_reason",
]

CONNECTION_LIMIT_EXCEEDED: Final = "connection_limit_exceeded"
"""The user (or the anonymous client's IP) or the IP already holds its limit of sockets."""
ROOM_FULL: Final = "room_full"
"""The room already has its maximum number of members."""
PAYLOAD_TOO_LARGE: Final = "payload_too_large"
"""A frame (text counted as UTF-8 bytes) was larger than the limit."""
RATE_LIMIT_EXCEEDED: Final = "rate_limit_exceeded"
"""A message came faster than the token bucket allows."""
BACKEND_UNAVAILABLE: Final = "backend_unavailable"
"""The limits could not be checked (storage down) and ``on_error="deny"`` refuses what cannot be checked."""

ERROR_FRAME_TYPE: Final = "error"
"""The ``type`` of every denial frame."""

CLOSE_CONNECTION_REFUSED: Final = 4008
"""Close code after `CONNECTION_LIMIT_EXCEEDED` or `ROOM_FULL` at connect time."""
CLOSE_PAYLOAD_TOO_LARGE: Final = 4009
"""Close code after `PAYLOAD_TOO_LARGE`."""
CLOSE_RATE_LIMITED: Final = 4010
"""Close code after the last allowed rate violation in a row (`RATE_LIMIT_EXCEEDED`)."""
CLOSE_TRY_AGAIN_LATER: Final = 1013
"""Close code after `BACKEND_UNAVAILABLE` at connect time: the registered "Try Again Later"
(RFC 6455 registry), so generic clients treat it as temporary and reconnect later."""

HTTP_TOO_MANY_REQUESTS: Final = 429
"""Status of a connect denial answered over HTTP (where the server allows it) instead of a frame."""
HTTP_SERVICE_UNAVAILABLE: Final = 503
"""Status of a `BACKEND_UNAVAILABLE` connect denial answered over HTTP."""

MAX_CLOSE_REASON_BYTES: Final = 123
"""RFC 6455 leaves 123 bytes for the reason in a close frame; some servers drop the
whole frame (the client then sees 1006) when the reason is longer."""


def close_reason(text: str, limit: int = MAX_CLOSE_REASON_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never in the middle of a character."""
    # 'replace' turns lone surrogates into '?', so the result is always valid UTF-8.
    encoded = text.encode("utf-8", "replace")[:limit]
    # A cut in the middle of a multi-byte character leaves a partial tail: 'ignore' drops it.
    return encoded.decode("utf-8", "ignore")
