"""`RateLimitMiddleware`: the ASGI middleware that enforces the limits on WebSocket connections."""

from __future__ import annotations

from ratelimit_core import Backend
from ratelimit_core.observe import DecisionHooks

from .asgi import ASGIApp, Receive, Scope, Send
from .backends import BackendCache, default_backend_cache
from .config_warnings import ConfigWarnings
from .connection import LimitedConnection
from .settings import SettingsReader
from .tiers import TierLimits

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware:
    """Wrap a Channels app (usually the `URLRouter`) to limit its WebSocket connections.

    Settings come from Django settings, read when each connection starts, and
    the keyword arguments, which win (``conn_per_user=2``, ``backend=...``; see
    `settings.SETTINGS`). One instance serves every connection; each connection's
    state lives in its own ``LimitedConnection``. Non-WebSocket scopes pass through.
    A misconfiguration seen from a connection (no user in the scope, no room on a
    route) is logged once per instance (`config_warnings`). ``WS_RATE_LIMITS_RESOLVER``
    gives each connection its own limits (`tiers`), read when the connection starts.
    Raises `ImproperlyConfigured` naming the setting for a bad value, and
    `TypeError` for an unknown keyword.
    """

    def __init__(
        self,
        inner: ASGIApp,
        *,
        backend_cache: BackendCache | None = None,
        hooks: DecisionHooks | None = None,
        **overrides: object,
    ) -> None:
        self.inner = inner
        self.backend_cache = default_backend_cache if backend_cache is None else backend_cache
        self.hooks = hooks
        """Where every decision is reported (`ratelimit_core.observe`); None: nowhere, at no cost."""
        self._settings = SettingsReader(overrides)
        self._settings.current()  # fail at start-up, not at the first connection
        self.tiers = TierLimits(self._settings)
        """The limits per connection from ``WS_RATE_LIMITS_RESOLVER``, validated once per distinct override."""
        self._config_warnings = ConfigWarnings()

    def __repr__(self) -> str:
        return f"RateLimitMiddleware({self.inner!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "websocket":
            settings = self._settings.current()
            if settings.enabled:
                if settings.release_on_sigterm:
                    sigterm = self.backend_cache.sigterm
                    sigterm.timeout_ms = settings.release_timeout_ms  # the latest connection's settings win
                    if not sigterm.attempted:
                        sigterm.install()  # once per cache (see `shutdown`)
                scope = dict(scope)
                settings = self.tiers.for_connection(settings, scope)
                backend: Backend
                if isinstance(settings.backend, str):
                    backend = self.backend_cache.get(settings.backend, settings.backend_options)
                else:
                    backend = settings.backend
                await LimitedConnection(
                    self.inner,
                    scope,
                    receive,
                    send,
                    settings=settings,
                    backend=backend,
                    keeper=self.backend_cache.keeper(backend, settings.heartbeat_ms),
                    hooks=self.hooks,
                    config_warnings=self._config_warnings,
                ).run()
                return
        await self.inner(scope, receive, send)
