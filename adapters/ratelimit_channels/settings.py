"""The adapter's settings: Django settings read when a connection starts, keyword overrides winning.

Every setting has a keyword override named after it (``WS_RATE_CONN_PER_USER`` ->
``conn_per_user``, ``WS_MAX_PAYLOAD_BYTES`` -> ``max_payload_bytes``). Without
configured Django settings the defaults and the overrides are all there is, so the
middleware also runs in a plain ASGI app. A bad value raises `ImproperlyConfigured`
naming the setting (or the override) and the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from django.core.exceptions import ImproperlyConfigured

from ratelimit_core import Backend, InvalidArgument
from ratelimit_core.arguments import MAX_COUNT
from ratelimit_core.failure_modes import ON_ERROR_CHOICES
from ratelimit_core.fallback import DEFAULT_COOLDOWN_MS, DEFAULT_TIMEOUT_MS
from ratelimit_core.policies import ConnectionLimits, MessageLimits, OnError, TrustedProxies
from ratelimit_core.policies.connections import DEFAULT_CONN_RETRY_MS
from ratelimit_core.policies.leases import DEFAULT_LEASE_MS
from ratelimit_core.policies.messages import DEFAULT_STRIKES
from ratelimit_core.urls import BACKEND_SCHEMES

from .asgi import Scope
from .backends import BackendOptions

__all__ = ["SETTINGS", "RateLimitSettings", "RoomResolver", "SettingsReader", "check_overrides"]

RoomResolver = Callable[[Scope], "str | None"]
"""``room_resolver(scope)``: the room a connection joins, or None for no room check."""

SETTINGS: Final[Mapping[str, tuple[str, object]]] = MappingProxyType(
    {
        "enabled": ("WS_RATE_ENABLED", True),
        "backend": ("WS_RATE_BACKEND", "memory://"),
        "conn_per_user": ("WS_RATE_CONN_PER_USER", None),
        "conn_per_ip": ("WS_RATE_CONN_PER_IP", None),
        "room_max_members": ("WS_RATE_ROOM_MAX_MEMBERS", None),
        "msg_rps": ("WS_RATE_MSG_RPS", None),
        "msg_burst": ("WS_RATE_MSG_BURST", None),
        "max_payload_bytes": ("WS_MAX_PAYLOAD_BYTES", None),
        "msg_strikes": ("WS_RATE_MSG_STRIKES", DEFAULT_STRIKES),
        "trusted_proxies": ("WS_RATE_TRUSTED_PROXIES", ()),
        "room_kwarg": ("WS_RATE_ROOM_KWARG", "room_id"),
        "room_resolver": ("WS_RATE_ROOM_RESOLVER", None),
        "conn_retry_ms": ("WS_RATE_CONN_RETRY_MS", DEFAULT_CONN_RETRY_MS),
        "lease_ms": ("WS_RATE_LEASE_MS", DEFAULT_LEASE_MS),
        "heartbeat_ms": ("WS_RATE_HEARTBEAT_MS", None),
        "http_denial": ("WS_RATE_HTTP_DENIAL", False),
        "on_backend_error": ("WS_RATE_ON_BACKEND_ERROR", "fallback"),
        "fallback": ("WS_RATE_FALLBACK", True),
        "backend_timeout_ms": ("WS_RATE_BACKEND_TIMEOUT_MS", DEFAULT_TIMEOUT_MS),
        "fallback_processes": ("WS_RATE_FALLBACK_PROCESSES", 1),
        "fallback_cooldown_ms": ("WS_RATE_FALLBACK_COOLDOWN_MS", DEFAULT_COOLDOWN_MS),
    }
)
"""Keyword override -> (Django setting, default)."""


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Validated settings for one connection."""

    enabled: bool
    backend: str | Backend
    """A backend URL (built once through the backend cache) or a ready backend."""
    connections: ConnectionLimits
    messages: MessageLimits
    trusted_proxies: TrustedProxies
    room_kwarg: str
    room_resolver: RoomResolver | None
    heartbeat_ms: int
    """How often a live connection refreshes its leases (a third of the lease by default)."""
    http_denial: bool
    """Answer connect denials with HTTP 429 where the server offers ``websocket.http.response``."""
    on_backend_error: OnError
    """What the limits decide when the backend fails (see `ratelimit_core.policies.failures`)."""
    backend_options: BackendOptions
    """How a backend URL is built: timeouts, and the `FallbackBackend` around it."""


def check_overrides(overrides: Mapping[str, object]) -> dict[str, object]:
    """The overrides as a dict; an unknown name is a `TypeError`, as for any bad keyword."""
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise TypeError(f"RateLimitMiddleware() got unexpected keyword arguments {unknown}; valid: {sorted(SETTINGS)}")
    return dict(overrides)


class SettingsReader:
    """Reads the settings for each new connection, validating only when a raw value changed."""

    __slots__ = ("_last", "_overrides")

    def __init__(self, overrides: Mapping[str, object]) -> None:
        self._overrides = check_overrides(overrides)
        self._last: tuple[tuple[object, ...], RateLimitSettings] | None = None

    def current(self) -> RateLimitSettings:
        raw = _snapshot(self._overrides)
        if self._last is None or self._last[0] != raw:
            self._last = (raw, _validate(dict(zip(SETTINGS, raw, strict=True)), self._overrides))
        return self._last[1]


def _django_settings() -> object | None:
    from django.conf import settings

    if settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE"):
        return settings
    return None


def _snapshot(overrides: Mapping[str, object]) -> tuple[object, ...]:
    source = _django_settings()
    values: list[object] = []
    for field, (setting, default) in SETTINGS.items():
        value = overrides[field] if field in overrides else getattr(source, setting, default)
        # A list is copied, so that changing it in place is seen as a change.
        values.append(tuple(value) if isinstance(value, list | set | frozenset) else value)
    return tuple(values)


def _validate(raw: dict[str, object], overrides: Mapping[str, object]) -> RateLimitSettings:
    def label(field: str) -> str:
        setting = SETTINGS[field][0]
        return f"{field} (overriding {setting})" if field in overrides else setting

    def fail(field: str, expected: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{label(field)} must be {expected}, got {raw[field]!r:.200}")

    def count(field: str, *, minimum: int, optional: bool) -> int | None:
        value = raw[field]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_COUNT:
            kind = "a non-negative int" if minimum == 0 else "a positive int"
            raise fail(field, kind + (" or None (unlimited)" if optional else ""))
        return value

    def required(field: str, *, minimum: int) -> int:
        value = count(field, minimum=minimum, optional=False)
        assert value is not None
        return value

    def flag(field: str) -> bool:
        value = raw[field]
        if not isinstance(value, bool):
            raise fail(field, "True or False")
        return value

    rate = raw["msg_rps"]
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0
    ):
        raise fail("msg_rps", "a positive number of messages per second or None (unlimited)")
    burst = count("msg_burst", minimum=1, optional=True)
    if burst is not None and rate is None:
        raise fail("msg_burst", f"None while {label('msg_rps')} is None (a burst needs a rate)")
    lease_ms = required("lease_ms", minimum=1)
    heartbeat_ms = count("heartbeat_ms", minimum=1, optional=True)
    if heartbeat_ms is None:
        heartbeat_ms = max(1, lease_ms // 3)
    elif heartbeat_ms >= lease_ms:
        raise fail("heartbeat_ms", f"shorter than {label('lease_ms')} ({lease_ms} ms) or None")
    try:
        connections = ConnectionLimits(
            per_user=count("conn_per_user", minimum=0, optional=True),
            per_ip=count("conn_per_ip", minimum=0, optional=True),
            room_max_members=count("room_max_members", minimum=0, optional=True),
            lease_ms=lease_ms,
            retry_after_ms=required("conn_retry_ms", minimum=0),
        )
        messages = MessageLimits(
            max_payload_bytes=count("max_payload_bytes", minimum=0, optional=True),
            rate=rate,
            burst=burst,
            strikes=required("msg_strikes", minimum=1),
        )
    except InvalidArgument as exc:  # a rate and burst beyond the bucket's precision
        raise ImproperlyConfigured(f"{label('msg_rps')} and {label('msg_burst')}: {exc}") from None
    on_backend_error = raw["on_backend_error"]
    if not isinstance(on_backend_error, str) or on_backend_error not in ON_ERROR_CHOICES:
        raise fail("on_backend_error", " or ".join(repr(choice) for choice in ON_ERROR_CHOICES))
    backend_options = BackendOptions(
        fallback=flag("fallback"),
        on_error=on_backend_error,
        timeout_ms=required("backend_timeout_ms", minimum=1),
        processes=required("fallback_processes", minimum=1),
        cooldown_ms=required("fallback_cooldown_ms", minimum=1),
    )
    return RateLimitSettings(
        enabled=flag("enabled"),
        backend=_backend(raw["backend"], fail),
        connections=connections,
        messages=messages,
        trusted_proxies=_trusted_proxies(raw["trusted_proxies"], fail, label),
        room_kwarg=_room_kwarg(raw["room_kwarg"], fail),
        room_resolver=_room_resolver(raw["room_resolver"], fail, label),
        heartbeat_ms=heartbeat_ms,
        http_denial=flag("http_denial"),
        on_backend_error=on_backend_error,
        backend_options=backend_options,
    )


_Fail = Callable[[str, str], ImproperlyConfigured]


def _backend(value: object, fail: _Fail) -> str | Backend:
    if isinstance(value, Backend):
        return value
    if isinstance(value, str):
        scheme, separator, _ = value.partition("://")
        if separator and scheme.lower() in BACKEND_SCHEMES:
            return value
    schemes = ", ".join(f"{scheme}://" for scheme in BACKEND_SCHEMES)
    raise fail("backend", f"a backend URL ({schemes}) or a Backend")


def _trusted_proxies(value: object, fail: _Fail, label: Callable[[str], str]) -> TrustedProxies:
    if isinstance(value, TrustedProxies):
        return value
    if not isinstance(value, tuple | list):
        raise fail("trusted_proxies", "a list of CIDRs such as ['10.0.0.0/8']")
    try:
        return TrustedProxies(value)
    except InvalidArgument as exc:
        raise ImproperlyConfigured(f"{label('trusted_proxies')}: {exc}") from None


def _room_kwarg(value: object, fail: _Fail) -> str:
    if not isinstance(value, str) or not value:
        raise fail("room_kwarg", "the name of a URL route kwarg")
    return value


def _room_resolver(value: object, fail: _Fail, label: Callable[[str], str]) -> RoomResolver | None:
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        from django.utils.module_loading import import_string

        try:
            resolver = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{label('room_resolver')}: cannot import {value!r} ({exc})") from None
        if callable(resolver):
            return resolver  # type: ignore[no-any-return]
    raise fail("room_resolver", "a callable room_resolver(scope), its dotted path, or None")
