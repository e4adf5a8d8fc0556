"""Which records of an app server's log a test must not accept: errors that are not the storage outage itself.

The rule, applied by `unexpected_errors`:

1. The log is cut into *records*. A record starts at a line that begins with a level
   name (``ERROR ratelimit_core... message`` from the example's LOGGING, ``ERROR:    ...``
   from uvicorn); every following line that does not start a record (a traceback, a
   wrapped message) belongs to it. Lines before the first record form a record without
   a level (Python's last-resort handler prints bare messages, such as asyncio's
   "Task exception was never retrieved").
2. A record *reports an error* when its level is ERROR or CRITICAL, or whatever its
   level it carries a traceback (``Traceback (most recent call last):``), or it is one
   of asyncio's unhandled-exception reports.
3. Such a record is accepted only when it *reports an outage*: it names at least one
   exception type, and every exception type it names is a connection-level failure of
   the storage (`OUTAGE_EXCEPTIONS`: the server refused, reset, closed or did not answer
   the connection, or was still loading; a ``CancelledError`` only beside the
   ``TimeoutError`` that asyncio chains from it). Exception types are the names ending
   in ``Error``, ``Exception`` or ``Unavailable`` (dotted module paths dropped).
4. Whatever it names, a record is never accepted when the outage reached a connection
   or a task instead of being absorbed: uvicorn's "Exception in ASGI application" and
   asyncio's unhandled-exception reports.

So a script error, NOSCRIPT or WRONGTYPE (``ResponseError``, ``BackendError``), an
exception in the ASGI application, a cancelled task, a traceback logged at WARNING,
or an ERROR line that names no exception at all, is reported; the engine logs the
outage itself at WARNING (``ratelimit_core.fallback``), which this rule never looks at.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["OUTAGE_EXCEPTIONS", "headline", "unexpected_errors"]

OUTAGE_EXCEPTIONS: Final = frozenset(
    {
        "BackendUnavailable",  # ratelimit_core's own name for "the storage did not answer"
        "ConnectionError",  # redis-py's, and the builtin's
        "TimeoutError",
        "BusyLoadingError",  # a Redis that restarted and is still loading
        "ConnectionRefusedError",
        "ConnectionResetError",
        "ConnectionAbortedError",
        "BrokenPipeError",
    }
)
"""Exception types that mean the storage was down, frozen or restarting: what the chaos itself causes."""

_RECORD_START: Final = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_ERROR_LEVELS: Final = frozenset({"ERROR", "CRITICAL"})
_TRACEBACK: Final = "Traceback (most recent call last):"
_UNABSORBED: Final = (
    "Exception in ASGI application",  # uvicorn: the exception escaped the app and ended the connection
    "Task exception was never retrieved",  # asyncio's last-resort reports
    "Future exception was never retrieved",
    "Exception in callback",
)
_EXCEPTION_NAME: Final = re.compile(r"\b(?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Unavailable))\b")


def _records(log: str) -> list[tuple[str | None, str]]:
    """(level or None, text) of every record in `log`."""
    records: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in log.splitlines():
        start = _RECORD_START.match(line)
        if start:
            records.append((start.group(1), [line]))
        else:
            records[-1][1].append(line)
    return [(level, "\n".join(lines)) for level, lines in records if any(line.strip() for line in lines)]


def _reports_error(level: str | None, text: str) -> bool:
    return level in _ERROR_LEVELS or _TRACEBACK in text or any(marker in text for marker in _UNABSORBED)


def _reports_outage(text: str) -> bool:
    if any(marker in text for marker in _UNABSORBED):
        return False
    named = set(_EXCEPTION_NAME.findall(text))
    if "TimeoutError" in named:
        named.discard("CancelledError")  # asyncio.timeout raises TimeoutError from the CancelledError it caused
    return bool(named) and named <= OUTAGE_EXCEPTIONS


def unexpected_errors(log: str) -> list[str]:
    """The records of `log` that report an error other than an outage (see the module's rule), in order."""
    return [text for level, text in _records(log) if _reports_error(level, text) and not _reports_outage(text)]


def headline(record: str) -> str:
    """One line for a record: its first line and, for a traceback, the exception it ended with."""
    lines = [line for line in record.splitlines() if line.strip()]
    if len(lines) <= 1 or _TRACEBACK not in record:
        return lines[0] if lines else ""
    return f"{lines[0].strip()} ... {lines[-1].strip()}"
