"""``WS_RATE_LIMITS_RESOLVER``: limits per connection (tiers), read once at connect.

The resolver, ``resolver(scope) -> dict | None``, is called once per connection,
before its admission; the dict overrides any of `settings.TIER_FIELDS` for that
connection only (``{"msg_rps": None}`` lifts the message rate, ``{"conn_per_user":
10}`` raises the socket cap). None, or an empty dict, keeps the site's limits.

Each distinct dict is validated once and the result cached by value, so the hot
path neither re-validates nor re-logs. A resolver that raises, returns something
that is not a dict, or returns a bad key or value is an error of the site's code:
it is logged at ERROR (naming the resolver and the key; once per distinct bad
dict) and the connection gets the site's default limits. Failing over to the
defaults, rather than refusing, keeps a typo in one tier from locking every user
of that tier out; the defaults are the limits the site runs with anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from django.core.exceptions import ImproperlyConfigured

from .asgi import Scope
from .settings import SETTINGS, RateLimitSettings, SettingsReader

__all__ = ["TierLimits"]

logger = logging.getLogger("ratelimit_channels")

_MAX_CACHED: Final = 1_024
"""Distinct override dicts kept validated; tiers are few, so a full cache means dicts built per user: start again."""


class _Unhashable(Exception):
    pass


class TierLimits:
    """The settings each connection gets from ``WS_RATE_LIMITS_RESOLVER``, cached per distinct override."""

    __slots__ = ("_base", "_cache", "_reader")

    def __init__(self, reader: SettingsReader) -> None:
        self._reader = reader
        self._base: RateLimitSettings | None = None
        self._cache: dict[object, RateLimitSettings] = {}

    def clear(self) -> None:
        """Forget every validated override (the next connection of each tier validates again)."""
        self._cache.clear()

    def for_connection(self, settings: RateLimitSettings, scope: Scope) -> RateLimitSettings:
        """`settings` with this connection's overrides applied; `settings` itself without a resolver or overrides."""
        resolver = settings.limits_resolver
        if resolver is None:
            return settings
        if settings is not self._base:  # the site's settings changed: every tier is validated again
            self._base = settings
            self._cache.clear()
        source = f"{SETTINGS['limits_resolver'][0]} {_name(resolver)}(scope)"
        try:
            overrides: object = resolver(scope)
        except Exception:
            logger.exception("%s raised; this connection gets the default limits", source)
            return settings
        if not overrides:
            return settings
        if not isinstance(overrides, Mapping):
            logger.error("%s must return a dict or None, got %.200r; using the default limits", source, overrides)
            return settings
        return self._validated(settings, overrides, source)

    def _validated(
        self, settings: RateLimitSettings, overrides: Mapping[str, object], source: str
    ) -> RateLimitSettings:
        """The settings with `overrides`, validated once per distinct dict (a bad one: `settings`, logged once)."""
        try:
            key: object = _frozen(overrides)
        except _Unhashable:
            key = None
        cached = self._cache.get(key) if key is not None else None
        if cached is not None:
            return cached
        try:
            tiered = self._reader.overridden(overrides, source)
        except ImproperlyConfigured as exc:
            logger.error("%s; this connection gets the default limits", exc)
            tiered = settings
        if key is not None:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = tiered
        return tiered


def _name(resolver: object) -> str:
    module = getattr(resolver, "__module__", None)
    name = getattr(resolver, "__qualname__", None) or type(resolver).__qualname__
    return f"{module}.{name}" if module else name


def _frozen(value: object) -> object:
    """A hashable value equal only for equal values of the same types (1, 1.0 and True stay apart)."""
    if isinstance(value, Mapping):
        items = sorted(((_frozen(k), _frozen(v)) for k, v in value.items()), key=repr)
        return (Mapping, tuple(items))
    if isinstance(value, list | tuple):
        return (type(value), tuple(_frozen(item) for item in value))
    try:
        hash(value)
    except TypeError:
        raise _Unhashable from None
    return (type(value), value)
