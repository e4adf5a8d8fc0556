"""The optional Django app: add ``"ratelimit_channels"`` to INSTALLED_APPS for its system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

__all__ = ["RateLimitChannelsConfig"]


class RateLimitChannelsConfig(AppConfig):
    """Registers the ``WS_RATE_*`` settings checks (`ratelimit_channels.checks`); the middleware needs no app."""

    name = "ratelimit_channels"
    verbose_name = "WebSocket rate limits"

    def ready(self) -> None:
        from .checks import check_settings

        # Registering the same function again (settings overrides repopulate the apps) is a no-op.
        checks.register(check_settings)
