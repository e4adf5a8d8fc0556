"""A testing kit for apps behind `RateLimitMiddleware`: limiter state isolated per test, and assertions.

Loaded as a pytest plugin (the ``pytest11`` entry point ``ratelimit_channels``, or
``-p ratelimit_channels.testing``) it adds the autouse fixture `ratelimit_isolation`,
which calls `reset_limits` before and after every test (ini option
``ratelimit_isolation = false`` turns it off). The helpers work without pytest:
pytest is imported only by the fixture's definition, and only when it is installed.

A refused socket is *accepted* first, then gets the error frame and the close, so
``WebsocketCommunicator.connect()`` returns ``(True, None)`` for a refusal too: use
`assert_refused` and `assert_admitted` to tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Final

from ratelimit_core import Backend, BackendUnavailable
from ratelimit_core.policies.codes import ERROR_FRAME_TYPE, CloseCode, ErrorCode
from ratelimit_core.urls import BACKEND_SCHEMES, backend_from_url, is_in_process

from .backends import BackendCache, default_backend_cache

if TYPE_CHECKING:
    from channels.testing import WebsocketCommunicator  # type: ignore[import-untyped]

__all__ = [
    "DEFAULT_CLOSE_CODES",
    "SignedInUser",
    "assert_admitted",
    "assert_message_refused",
    "assert_refused",
    "clear_limits",
    "limited_communicator",
    "reset_limits",
]

DEFAULT_CLOSE_CODES: Final[dict[str, int | None]] = {
    ErrorCode.CONNECTION_LIMIT_EXCEEDED: CloseCode.CONNECTION_REFUSED,
    ErrorCode.ROOM_FULL: CloseCode.CONNECTION_REFUSED,
    ErrorCode.CONNECTION_RATE_EXCEEDED: CloseCode.CONNECTION_REFUSED,
    ErrorCode.PAYLOAD_TOO_LARGE: CloseCode.PAYLOAD_TOO_LARGE,
    ErrorCode.RATE_LIMIT_EXCEEDED: None,
    ErrorCode.QUOTA_EXCEEDED: None,
    ErrorCode.BACKEND_UNAVAILABLE: CloseCode.TRY_AGAIN_LATER,
}
"""Error code -> the close code that follows its frame (None: the socket stays open), as `assert_refused` expects."""

_CONNECT_CODES: Final = frozenset(
    {
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        ErrorCode.ROOM_FULL,
        ErrorCode.CONNECTION_RATE_EXCEEDED,
        ErrorCode.BACKEND_UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """A stand-in for a signed-in Django user (identity reads only ``pk`` and ``is_authenticated``): no database."""

    pk: int | str
    """The user's primary key: per-user limits count ``user:<pk>``."""
    is_authenticated: bool = True
    """False makes the socket anonymous (counted by its IP)."""


def limited_communicator(
    app: Any,
    path: str = "/",
    *,
    user: object | None = None,
    ip: str | None = "127.0.0.1",
    port: int = 50_000,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
) -> WebsocketCommunicator:
    """A `WebsocketCommunicator` on `app` and `path` whose socket counts as `user` from `ip`.

    `user` is put in ``scope["user"]`` (a Django user, a `SignedInUser`, or None:
    anonymous); `ip` becomes ``scope["client"]`` (None leaves it out, as the bare
    communicator does: every such socket then shares the identity ``ip:unknown``).
    Give it the application inside ``AuthMiddlewareStack``: AuthMiddleware replaces
    the user with the session's.
    """
    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(app, path, headers=headers, subprotocols=subprotocols)
    if user is not None:
        communicator.scope["user"] = user
    if ip is not None:
        communicator.scope["client"] = (ip, port)
    return communicator


async def assert_refused(
    communicator: WebsocketCommunicator,
    code: str,
    *,
    close_code: int | None = None,
    wait_s: float = 1.0,
) -> dict[str, Any]:
    """Connect, and fail unless the middleware refuses with error `code` then closes with `close_code`.

    `close_code` defaults to the one `code` always gets (`DEFAULT_CLOSE_CODES`).
    Returns the error frame (``type``, ``code``, ``message``, ``retry_after_ms``).
    Raises `AssertionError` saying what came instead.
    """
    expected_close = DEFAULT_CLOSE_CODES.get(code) if close_code is None else close_code
    connected, reject_code = await communicator.connect(wait_s)
    if not connected:
        raise AssertionError(
            f"expected the middleware to refuse with {code!r}, but the socket was rejected before accept"
            f" (close code {reject_code}): the middleware accepts before it refuses, so something else rejected it"
        )
    frame = await _next_error_frame(communicator, code, wait_s, waiting_for="after accept")
    if expected_close is not None:
        await _expect_close(communicator, expected_close, wait_s)
    return frame


async def assert_message_refused(
    communicator: WebsocketCommunicator,
    code: str,
    *,
    close_code: int | None = None,
    wait_s: float = 1.0,
) -> dict[str, Any]:
    """Fail unless the next output of an open socket is the error frame `code`, then (if given) the close `close_code`.

    For denials of a message (``rate_limit_exceeded``, ``quota_exceeded``, ``payload_too_large``): send
    the frame first. Returns the error frame; raises `AssertionError` otherwise.
    """
    frame = await _next_error_frame(communicator, code, wait_s, waiting_for="for the next output")
    if close_code is not None:
        await _expect_close(communicator, close_code, wait_s)
    return frame


async def assert_admitted(communicator: WebsocketCommunicator, *, wait_s: float = 1.0, settle: float = 0.05) -> None:
    """Connect, and fail unless the socket is accepted and no connect-time error frame follows within `settle` seconds.

    Whatever the consumer sent is left in the communicator for the test to read.
    Raises `AssertionError` naming the refusal (or the rejection) otherwise.
    """
    connected, reject_code = await communicator.connect(wait_s)
    if not connected:
        raise AssertionError(f"expected the socket to be admitted, but it was rejected with close code {reject_code}")
    await communicator.receive_nothing(settle)  # returns early once anything arrives, and consumes nothing
    pending = _peek_output(communicator)
    if pending is None:
        return
    frame = _error_frame(pending)
    if frame is not None and frame.get("code") in _CONNECT_CODES:
        raise AssertionError(
            f"expected the socket to be admitted, but the middleware refused it with {frame.get('code')!r}"
            f" (connect() returns (True, None) even then: a refusal accepts first, then sends this frame): {frame}"
        )


def _peek_output(communicator: WebsocketCommunicator) -> dict[str, Any] | None:
    # asyncio.Queue has no peek: take everything and put it back in order, with no await in between.
    queue = communicator.output_queue
    pending = [queue.get_nowait() for _ in range(queue.qsize())]
    for message in pending:
        queue.put_nowait(message)
    return pending[0] if pending else None


def _error_frame(message: dict[str, Any]) -> dict[str, Any] | None:
    """The decoded error frame `message` carries, or None when it is something else."""
    if message.get("type") != "websocket.send" or message.get("text") is None:
        return None
    try:
        frame = json.loads(message["text"])
    except ValueError:
        return None
    if isinstance(frame, dict) and frame.get("type") == ERROR_FRAME_TYPE:
        return frame
    return None


async def _next_output(communicator: WebsocketCommunicator, wait_s: float, waiting_for: str) -> dict[str, Any]:
    try:
        message: dict[str, Any] = await communicator.receive_output(wait_s)
    except TimeoutError:
        raise AssertionError(f"nothing arrived within {wait_s} s {waiting_for}") from None
    return message


async def _next_error_frame(
    communicator: WebsocketCommunicator, code: str, wait_s: float, waiting_for: str
) -> dict[str, Any]:
    message = await _next_output(communicator, wait_s, waiting_for)
    frame = _error_frame(message)
    if frame is None:
        raise AssertionError(f"expected the error frame {code!r}, but the socket was admitted: got {message}")
    if frame.get("code") != code:
        raise AssertionError(f"expected the error frame {code!r}, got {frame.get('code')!r}: {frame}")
    return frame


async def _expect_close(communicator: WebsocketCommunicator, close_code: int, wait_s: float) -> None:
    message = await _next_output(communicator, wait_s, "after the error frame")
    if message.get("type") != "websocket.close" or message.get("code") != close_code:
        raise AssertionError(f"expected the close {close_code} after the error frame, got {message}")
    await communicator.wait(wait_s)


async def clear_limits(*backends: str | Backend, cache: BackendCache = default_backend_cache) -> None:
    """Delete the limiter state of `backends` (URLs or instances), then forget every backend of `cache`.

    With no `backends`, the one ``WS_RATE_BACKEND`` names (when Django settings are
    configured) is cleared, unless its server is unreachable (an outage test). A
    ``memory://`` state goes with the cache; a Redis URL has every key under the
    middleware's prefix (``rl:``) deleted, so point your test settings at a test
    server or database. Other backend instances are cleared with their ``clear()``.
    """
    try:
        for backend in backends:
            await _clear(backend, cache)
        if not backends:
            for backend in _configured_backends():
                with contextlib.suppress(BackendUnavailable):
                    await _clear(backend, cache)
    finally:
        cache.clear()


async def _clear(backend: str | Backend, cache: BackendCache) -> None:
    if not isinstance(backend, str):
        await backend.clear()
    elif is_in_process(backend):
        await cache.get(backend).clear()
    else:
        # A client of its own: the cache's clients are bound to the loops of earlier tests.
        client = backend_from_url(backend)
        try:
            await client.clear()
        finally:
            await client.aclose()


def reset_limits(*backends: str | Backend, cache: BackendCache = default_backend_cache) -> None:
    """`clear_limits` from synchronous code (a fixture, ``setUp``); in a coroutine, await `clear_limits`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("reset_limits() runs its own event loop: in a coroutine, use 'await clear_limits()'")
    if backends or _configured_backends():
        asyncio.run(clear_limits(*backends, cache=cache))
    else:
        cache.clear()  # only the cache's memory:// backend: forgetting it drops its state, no event loop needed


def _configured_backends() -> tuple[str | Backend, ...]:
    """``WS_RATE_BACKEND`` unless it is ``memory://`` (whose state the cache holds) or Django is not configured."""
    from django.conf import settings

    if not settings.configured:
        return ()
    backend: str | Backend = getattr(settings, "WS_RATE_BACKEND", "memory://")
    if isinstance(backend, str):
        scheme = backend.partition("://")[0].lower()
        # memory://: the cache holds its state; an unknown scheme: the system checks report it, nothing to clear.
        return () if is_in_process(backend) or scheme not in BACKEND_SCHEMES else (backend,)
    return (backend,)


if find_spec("pytest") is not None:
    import pytest

    def pytest_addoption(parser: pytest.Parser) -> None:
        """The ini option ``ratelimit_isolation`` (default true)."""
        parser.addini(
            "ratelimit_isolation",
            "clear the rate limiter's state before and after every test (ratelimit_channels.testing)",
            type="bool",
            default=True,
        )

    @pytest.fixture(autouse=True)
    def ratelimit_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
        """Every test starts and ends with no limiter state: `reset_limits` before and after it."""
        enabled = bool(request.config.getini("ratelimit_isolation"))
        if enabled:
            reset_limits()
        yield
        if enabled:
            reset_limits()
