"""What a policy decides when its backend cannot: the ``on_error`` choice, applied to verdicts.

The contract (fail open, fail closed, per-process fallback, what a client sees, and
why a dropped message is not a strike) is written once, in the documentation's
"Outages and recovery" page (docs/concepts/outages.md). This module builds the
`ErrorCode.BACKEND_UNAVAILABLE` denials and logs the failures a policy absorbs.
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


def report_failure(
    during: str, exc: BackendError, on_error: OnError, *, repeated: bool = False, shadow: bool = False
) -> None:
    """Log a failure a policy absorbed: an outage at WARNING (DEBUG when `repeated`), anything else at ERROR.

    In shadow mode a ``"deny"`` is logged as what it is: allowed, and reported as a would-be refusal.

    An outage is expected and says enough in one line; any other `BackendError`
    (a script error, a key of the wrong type) is a bug or a misconfiguration, so
    it is logged with its traceback.
    """
    outcome = "refused" if on_error == "deny" else "allowed"
    if shadow and on_error == "deny":
        outcome = "allowed (shadow mode: would have refused)"
    if isinstance(exc, BackendUnavailable):
        level = logging.DEBUG if repeated else logging.WARNING
        logger.log(level, "backend unavailable during %s: %s (on_error=%r): %s", during, outcome, on_error, exc)
    else:
        logger.error("backend failed during %s: %s (on_error=%r)", during, outcome, on_error, exc_info=exc)
