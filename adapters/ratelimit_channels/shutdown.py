"""`SigtermRelease`: on SIGTERM, give back every slot of the process before the server starts closing sockets.

A server stopped with SIGTERM closes its WebSockets (uvicorn with 1012) and exits;
each connection's release then races the clients, which reconnect at once to
another process and could be refused for the slots not yet removed. Installed
(``WS_RATE_RELEASE_ON_SIGTERM``, on by default) by the middleware at its first
connection, the handler runs in front of the server's own: it releases every lease
the backend cache's keepers hold, all at once (one round trip on Redis), waits for
that up to `timeout_ms` (``WS_RATE_RELEASE_TIMEOUT_MS``, default 2000; logging what
did not finish), and only then calls the server's handler, which begins the shutdown.
The middleware sets `timeout_ms` from the settings of each connection that starts with
the release on, so the wait is the one the latest such connection's settings give.

From the release on, the connections still open are no longer counted: a client
reconnecting elsewhere is admitted while its old socket lives on here until the
server closes it. A connection admitted during the wait is released when it ends,
as usual. A second SIGTERM during the wait goes to the server's handler at once.

The server's handler must have been installed with `signal.signal` (uvicorn and
daphne/Twisted do so): it is called with the same arguments afterwards. With
``SIG_DFL`` the default action follows the release (the process ends). With
``SIG_IGN``, a handler set outside Python, or one installed with
``loop.add_signal_handler`` (which cannot be chained through the public API),
nothing is installed and that is logged once. Only the main thread can install.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from ratelimit_core.arguments import check_count

if TYPE_CHECKING:
    from .backends import BackendCache

__all__ = ["DEFAULT_RELEASE_TIMEOUT_MS", "SigtermRelease"]

logger = logging.getLogger("ratelimit_channels")

DEFAULT_RELEASE_TIMEOUT_MS: Final = 2000
"""How long the server's own handler waits for the release (``WS_RATE_RELEASE_TIMEOUT_MS``'s default)."""

_Handler = Callable[[int, FrameType | None], Any]


class SigtermRelease:
    """The SIGTERM handler that releases `cache`'s leases, then passes the signal on; see the module docstring."""

    __slots__ = ("_cache", "_installed", "_loop", "_previous", "_releasing", "_timeout_ms", "attempted", "released")

    def __init__(self, cache: BackendCache, *, timeout_ms: int = DEFAULT_RELEASE_TIMEOUT_MS) -> None:
        self._cache = cache
        self._timeout_ms = check_count("timeout_ms", timeout_ms)
        self._installed = False
        self.attempted = False
        """`install` was called (it acts once: a refusal is logged once, not at every connection)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: _Handler | int | None = None
        self._releasing: asyncio.Task[None] | None = None
        self.released = asyncio.Event()
        """Set once a SIGTERM's release ended (for tests)."""

    def __repr__(self) -> str:
        return f"SigtermRelease(installed={self._installed}, timeout={self._timeout_ms} ms)"

    @property
    def installed(self) -> bool:
        return self._installed

    @property
    def timeout_ms(self) -> int:
        """How long the server's handler waits for the release, in ms; read when a SIGTERM arrives.

        Setting it to anything but an int of at least 1 raises `InvalidArgument`.
        """
        return self._timeout_ms

    @timeout_ms.setter
    def timeout_ms(self, value: int) -> None:
        self._timeout_ms = check_count("timeout_ms", value)

    def install(self) -> bool:
        """Put the handler in front of the current SIGTERM handler; call from the loop that serves. Acts once.

        Returns whether it is installed. Refuses (and logs why) where chaining
        cannot keep the server's behaviour (see the module docstring).
        """
        if self.attempted:
            return self._installed
        self.attempted = True
        if threading.current_thread() is not threading.main_thread():
            logger.info("WS_RATE_RELEASE_ON_SIGTERM: not installed (the server's event loop is not in the main thread)")
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is None or _is_asyncio_handler(previous):
            how = "ignored" if previous is signal.SIG_IGN else "handled outside signal.signal"
            logger.info("WS_RATE_RELEASE_ON_SIGTERM: not installed (SIGTERM is %s in this process)", how)
            return False
        self._loop = asyncio.get_running_loop()
        self._previous = previous
        signal.signal(signal.SIGTERM, self._on_signal)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Put the previous handler back, if this one is still the current one (for tests)."""
        if self._installed and signal.getsignal(signal.SIGTERM) == self._on_signal:
            signal.signal(signal.SIGTERM, self._previous)
        self._installed = self.attempted = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if self._releasing is not None or loop is None or loop.is_closed() or not loop.is_running():
            self._pass_on(signum, frame)
            return
        # A signal handler runs between two bytecodes of the main thread: start the release from the loop.
        loop.call_soon_threadsafe(self._start, signum, frame)

    def _start(self, signum: int, frame: FrameType | None) -> None:
        if self._releasing is not None:
            self._pass_on(signum, frame)
            return
        self._releasing = asyncio.get_running_loop().create_task(
            self._release_then_pass_on(signum, frame), name="ratelimit release on SIGTERM"
        )

    async def _release_then_pass_on(self, signum: int, frame: FrameType | None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout_ms = self._timeout_ms
        try:
            pending = await self._cache.release_all(timeout_ms / 1000)
        except Exception:
            logger.exception("SIGTERM: releasing the slots of this process failed (they expire with their leases)")
        else:
            took_ms = (loop.time() - started) * 1000
            if pending:
                logger.warning(
                    "SIGTERM: %d connection(s) not released within WS_RATE_RELEASE_TIMEOUT_MS (%d ms); the removals "
                    "go on until the process ends",
                    pending,
                    timeout_ms,
                )
            else:
                logger.info("SIGTERM: released every slot of this process in %.0f ms", took_ms)
        finally:
            self.released.set()
            self._pass_on(signum, frame)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


def _is_asyncio_handler(handler: object) -> bool:
    """The placeholder asyncio installs for `loop.add_signal_handler` (the real callback lives in the loop)."""
    return getattr(handler, "__name__", "") == "_sighandler_noop" and "asyncio" in getattr(handler, "__module__", "")
