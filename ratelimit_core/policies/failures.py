"""What a policy decides when its backend cannot: the ``on_error`` choice, applied to verdicts.

``on_error`` is the choice `FallbackBackend` offers, seen from the policies:

- ``"allow"`` (fail open): a connection is admitted holding no slots (it is not
  counted anywhere), a message passes.
- ``"deny"`` (fail closed): a connection is refused with `ErrorCode.BACKEND_UNAVAILABLE`
  and close `CloseCode.TRY_AGAIN_LATER` (1013); a message is dropped with the same code and
  the socket stays open. A dropped message is not a strike: the client did nothing
  wrong, and its messages pass again as soon as the storage is back.
- ``"fallback"``: a `FallbackBackend` answers from its per-process store and
  nothing fails. A failure that still reaches the policy (no wrapper, or a
  `BackendError` that is not an outage, such as WRONGTYPE or a
  `BackendMisconfigured` wrong password) has no store left to ask, so it fails
  open like ``"allow"``, and is logged at ERROR.

With ``on_error=None`` a policy raises the `BackendError` instead (the caller decides).

A `FallbackBackend` in ``"deny"`` mode does not raise: it answers every call with a
refusal marked ``unavailable``, which every policy reports as `ErrorCode.BACKEND_UNAVAILABLE`
(not as a limit the client reached), whatever its own ``on_error``.
"""

from __future__ import annotations

import logging
from typing import Final

from ..errors import BackendError, BackendUnavailable
from ..failure_modes import OnError
from .codes import CloseCode, ErrorCode
from .verdicts import Denial

__all__ = ["DEFAULT_UNAVAILABLE_RETRY_MS", "connection_unavailable", "message_unavailable", "report_failure"]

logger = logging.getLogger(__name__)

DEFAULT_UNAVAILABLE_RETRY_MS: Final = 1_000
"""The ``retry_after_ms`` of a message dropped because the storage failed, when nothing better is known."""


def connection_unavailable(retry_after_ms: int) -> Denial:
    """The refusal of a connection whose limits could not be checked (``on_error="deny"``)."""
    message = "rate limits are unavailable, try again later"
    return Denial(ErrorCode.BACKEND_UNAVAILABLE, message, retry_after_ms, CloseCode.TRY_AGAIN_LATER, degraded=True)


def message_unavailable(retry_after_ms: int) -> Denial:
    """The drop of a message whose rate could not be checked (``on_error="deny"``); the socket stays open."""
    message = f"rate limits are unavailable: this message was dropped, retry in {retry_after_ms} ms"
    return Denial(ErrorCode.BACKEND_UNAVAILABLE, message, retry_after_ms, None, degraded=True)


def report_failure(during: str, exc: BackendError, on_error: OnError, *, repeated: bool = False) -> None:
    """Log a failure a policy absorbed: an outage at WARNING (DEBUG when `repeated`), anything else at ERROR.

    An outage is expected and says enough in one line; any other `BackendError`
    (a script error, a key of the wrong type) is a bug or a misconfiguration, so
    it is logged with its traceback.
    """
    outcome = "refused" if on_error == "deny" else "allowed"
    if isinstance(exc, BackendUnavailable):
        level = logging.DEBUG if repeated else logging.WARNING
        logger.log(level, "backend unavailable during %s: %s (on_error=%r): %s", during, outcome, on_error, exc)
    else:
        logger.error("backend failed during %s: %s (on_error=%r)", during, outcome, on_error, exc_info=exc)
