"""The adapter's settings: Django settings read when a connection starts, keyword overrides winning.

Every setting has a keyword override named after it (``WS_RATE_CONN_PER_USER`` ->
``conn_per_user``, ``WS_MAX_PAYLOAD_BYTES`` -> ``max_payload_bytes``). Without
configured Django settings the defaults and the overrides are all there is, so the
middleware also runs in a plain ASGI app. A bad value raises `ImproperlyConfigured`
naming the setting (or the override) and the value, after every other bad value;
`setting_problems` lists them all for the system checks (`checks`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeGuard

from django.core.exceptions import ImproperlyConfigured

from ratelimit_core import Backend, InvalidArgument
from ratelimit_core.arguments import Count
from ratelimit_core.failure_modes import ON_ERROR_CHOICES
from ratelimit_core.fallback import DEFAULT_COOLDOWN_MS, DEFAULT_TIMEOUT_MS
from ratelimit_core.policies import (
    ConnectionLimits,
    MessageLimits,
    MessageQuota,
    MessageTypeResolver,
    OnError,
    TrustedProxies,
    TypeRate,
)
from ratelimit_core.policies.connections import DEFAULT_CONN_RETRY_MS
from ratelimit_core.policies.identity import DEFAULT_IPV6_PREFIX, check_ipv6_prefix
from ratelimit_core.policies.leases import DEFAULT_LEASE_MS
from ratelimit_core.policies.messages import DEFAULT_STRIKES
from ratelimit_core.primitives import PRIMITIVES
from ratelimit_core.urls import BACKEND_SCHEMES

from .asgi import Scope
from .backends import BackendOptions
from .settings_source import SettingLayers, django_settings
from .shutdown import DEFAULT_RELEASE_TIMEOUT_MS

__all__ = [
    "SETTINGS",
    "TIER_FIELDS",
    "LimitsResolver",
    "RateLimitSettings",
    "RoomResolver",
    "SettingProblem",
    "SettingsReader",
    "check_overrides",
    "setting_problems",
]

RoomResolver = Callable[[Scope], "str | None"]
"""``room_resolver(scope)``: the room a connection joins, or None for no room check."""

SETTINGS: Final[Mapping[str, tuple[str, object]]] = MappingProxyType(
    {
        "enabled": ("WS_RATE_ENABLED", True),
        "backend": ("WS_RATE_BACKEND", "memory://"),
        "conn_per_user": ("WS_RATE_CONN_PER_USER", None),
        "conn_per_ip": ("WS_RATE_CONN_PER_IP", None),
        "room_max_members": ("WS_RATE_ROOM_MAX_MEMBERS", None),
        "connect_rps": ("WS_RATE_CONNECT_RPS", None),
        "connect_burst": ("WS_RATE_CONNECT_BURST", None),
        "msg_rps": ("WS_RATE_MSG_RPS", None),
        "msg_burst": ("WS_RATE_MSG_BURST", None),
        "max_payload_bytes": ("WS_MAX_PAYLOAD_BYTES", None),
        "msg_strikes": ("WS_RATE_MSG_STRIKES", DEFAULT_STRIKES),
        "msg_types": ("WS_RATE_MSG_TYPES", None),
        "msg_type_resolver": ("WS_RATE_MSG_TYPE_RESOLVER", None),
        "msg_quota": ("WS_RATE_MSG_QUOTA", None),
        "trusted_proxies": ("WS_RATE_TRUSTED_PROXIES", ()),
        "ipv6_prefix": ("WS_RATE_IPV6_PREFIX", DEFAULT_IPV6_PREFIX),
        "room_kwarg": ("WS_RATE_ROOM_KWARG", "room_id"),
        "room_resolver": ("WS_RATE_ROOM_RESOLVER", None),
        "limits_resolver": ("WS_RATE_LIMITS_RESOLVER", None),
        "conn_retry_ms": ("WS_RATE_CONN_RETRY_MS", DEFAULT_CONN_RETRY_MS),
        "lease_ms": ("WS_RATE_LEASE_MS", DEFAULT_LEASE_MS),
        "heartbeat_ms": ("WS_RATE_HEARTBEAT_MS", None),
        "http_denial": ("WS_RATE_HTTP_DENIAL", False),
        "release_on_sigterm": ("WS_RATE_RELEASE_ON_SIGTERM", True),
        "release_timeout_ms": ("WS_RATE_RELEASE_TIMEOUT_MS", DEFAULT_RELEASE_TIMEOUT_MS),
        "on_backend_error": ("WS_RATE_ON_BACKEND_ERROR", "fallback"),
        "fallback": ("WS_RATE_FALLBACK", True),
        "backend_timeout_ms": ("WS_RATE_BACKEND_TIMEOUT_MS", DEFAULT_TIMEOUT_MS),
        "fallback_processes": ("WS_RATE_FALLBACK_PROCESSES", 1),
        "fallback_cooldown_ms": ("WS_RATE_FALLBACK_COOLDOWN_MS", DEFAULT_COOLDOWN_MS),
        "shadow": ("WS_RATE_SHADOW", False),
    }
)
"""Keyword override -> (Django setting, default)."""

TIER_FIELDS: Final = (
    "conn_per_user",
    "conn_per_ip",
    "room_max_members",
    "connect_rps",
    "connect_burst",
    "msg_rps",
    "msg_burst",
    "max_payload_bytes",
    "msg_strikes",
    "msg_types",
    "msg_quota",
    "shadow",
)
"""The limits ``WS_RATE_LIMITS_RESOLVER`` may override for one connection (keys of `SETTINGS`)."""

_BURST_OF: Final = {"msg_rps": "msg_burst", "connect_rps": "connect_burst"}
"""A rate's burst: a tier that sets the rate alone gets the rate's default burst, not the site's."""

LimitsResolver = Callable[[Scope], "Mapping[str, object] | None"]
"""``limits_resolver(scope)``: this connection's overrides of `TIER_FIELDS`, or None for the defaults."""


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Validated settings for one connection."""

    enabled: bool
    backend: str | Backend
    """A backend URL (built once through the backend cache) or a ready backend."""
    connections: ConnectionLimits
    messages: MessageLimits
    trusted_proxies: TrustedProxies
    ipv6_prefix: int
    """The prefix length IPv6 clients are grouped by for per-IP limits and anonymous identities."""
    room_kwarg: str
    room_resolver: RoomResolver | None
    message_type_resolver: MessageTypeResolver | None
    """What gives a frame its type (None: the JSON ``"type"`` field), when `messages` has types."""
    limits_resolver: LimitsResolver | None
    """Per-connection overrides of the limits (tiers; see `tiers`)."""
    heartbeat_ms: int
    """How often the process refreshes the leases of all its live connections (default: a third of the lease)."""
    http_denial: bool
    """Answer connect denials with HTTP 429 where the server offers ``websocket.http.response``."""
    release_on_sigterm: bool
    """Release every slot of the process on SIGTERM, before the server's own handler runs (see `shutdown`)."""
    release_timeout_ms: int
    """How long the server's handler waits for that release on SIGTERM."""
    on_backend_error: OnError
    """What the limits decide when the backend fails (see `ratelimit_core.policies.failures`)."""
    backend_options: BackendOptions
    """How a backend URL is built: timeouts, and the `FallbackBackend` around it."""
    shadow: bool = False
    """Report every decision without refusing or closing anything (the policies' shadow mode)."""


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
        return self._current()[1]

    def _current(self) -> tuple[tuple[object, ...], RateLimitSettings]:
        raw = _snapshot(self._overrides)
        if self._last is None or self._last[0] != raw:
            self._last = (raw, _validate(dict(zip(SETTINGS, raw, strict=True)), self._overrides))
        return self._last

    def overridden(self, limits: Mapping[str, object], source: str) -> RateLimitSettings:
        """The current settings with `limits` (keys of `TIER_FIELDS`) replacing theirs.

        A rate given without its burst gets the rate's default burst. Raises
        `ImproperlyConfigured` naming `source` and the key for a key that is not a
        limit or a bad value (every problem, the first one leading).
        """
        not_limits = [key for key in limits if key not in TIER_FIELDS]
        if not_limits:
            raise ImproperlyConfigured(
                f"{source} returned {not_limits[0]!r:.80}, which is not a limit it may override; "
                f"valid keys: {', '.join(TIER_FIELDS)}"
            )
        values = dict(zip(SETTINGS, self._current()[0], strict=True))
        values.update(limits)
        for rate, burst in _BURST_OF.items():
            if rate in limits and burst not in limits:
                values[burst] = None
        return _validate(values, limits, source=source)


def _snapshot(overrides: Mapping[str, object]) -> tuple[object, ...]:
    source = SettingLayers(django_settings())
    values: list[object] = []
    for field, (setting, default) in SETTINGS.items():
        value = overrides[field] if field in overrides else source.value(setting, default)
        # A list or a dict is copied, so that changing it in place is seen as a change.
        if isinstance(value, (list, set, frozenset)):
            value = tuple(value)
        elif isinstance(value, dict):
            value = {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
        values.append(value)
    return tuple(values)


_POSITIVE: Final = Count(1)
_NON_NEGATIVE: Final = Count(0)
_POSITIVE_OR_NONE: Final = Count(1, optional=True)
_NON_NEGATIVE_OR_NONE: Final = Count(0, optional=True)


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """One bad setting: what is wrong (naming the setting and the value) and how to fix it."""

    field: str
    """The keyword override name (a key of `SETTINGS`)."""
    setting: str
    """The Django setting, or the keyword override that replaced it."""
    message: str
    hint: str
    conflict: bool = False
    """The value is valid alone, but not together with another setting's."""


class _Raw:
    """One snapshot's raw values, read by field.

    A bad value is recorded as a `SettingProblem` and read as its default, so that
    validation goes on and reports every problem, not only the first.
    """

    __slots__ = ("_overrides", "_source", "_values", "problems")

    def __init__(self, values: Mapping[str, object], overrides: Mapping[str, object], source: str | None) -> None:
        self._values = values
        self._overrides = overrides
        self._source = source
        """What gave the overrides when not keywords (``WS_RATE_LIMITS_RESOLVER`` and its callable)."""
        self.problems: list[SettingProblem] = []

    def __getitem__(self, field: str) -> object:
        return self._values[field]

    def label(self, field: str) -> str:
        """The Django setting `field` comes from, or the keyword override that replaced it."""
        setting = SETTINGS[field][0]
        if field not in self._overrides:
            return setting
        return f"{field if self._source is None else f'{self._source}[{field!r}]'} (overriding {setting})"

    def report(self, field: str, message: str, expected: str, *, conflict: bool = False) -> None:
        label = self.label(field)
        hint = f"Set {label} to {expected} (default: {SETTINGS[field][1]!r}), or remove it."
        self.problems.append(SettingProblem(field, label, message, hint, conflict))

    def fail(self, field: str, expected: str, *, shown: object = None, conflict: bool = False) -> None:
        """Record that `field` is not `expected`; `shown` replaces the value in the message (a password)."""
        got = self[field] if shown is None else shown
        self.report(field, f"{self.label(field)} must be {expected}, got {got!r:.200}", expected, conflict=conflict)

    def count(self, field: str, domain: Count) -> int | None:
        """The value if `domain` (the core's own check, under the setting's name) accepts it, else the default."""
        try:
            return domain.check(self.label(field), self[field])
        except InvalidArgument as exc:
            expected = f"an int of at least {domain.minimum}" + (", or None (no limit)" if domain.optional else "")
            self.report(field, str(exc), expected)
            default = SETTINGS[field][1]
            assert default is None or isinstance(default, int), f"{field}'s default is no count"
            return default

    def required(self, field: str, domain: Count) -> int:
        value = self.count(field, domain)
        assert value is not None, f"{domain} accepts None"
        return value

    def flag(self, field: str) -> bool:
        value = self[field]
        if not isinstance(value, bool):
            self.fail(field, "True or False")
            return bool(SETTINGS[field][1])
        return value


def setting_problems() -> list[SettingProblem]:
    """Every problem of the Django settings as they are now (no keyword overrides), in `SETTINGS` order."""
    raw = _Raw(dict(zip(SETTINGS, _snapshot({}), strict=True)), {}, None)
    _read(raw)
    return raw.problems


def _validate(
    values: Mapping[str, object], overrides: Mapping[str, object], source: str | None = None
) -> RateLimitSettings:
    raw = _Raw(values, overrides, source)
    settings = _read(raw)
    if raw.problems:
        # The first problem leads, so the message starts with its setting's name.
        raise ImproperlyConfigured("; ".join(problem.message for problem in raw.problems))
    return settings


def _read(raw: _Raw) -> RateLimitSettings:
    lease_ms = raw.required("lease_ms", _POSITIVE)
    on_backend_error = _on_backend_error(raw)
    return RateLimitSettings(
        enabled=raw.flag("enabled"),
        backend=_backend(raw),
        connections=_connections(raw, lease_ms),
        messages=_messages(raw),
        trusted_proxies=_trusted_proxies(raw),
        ipv6_prefix=_ipv6_prefix(raw),
        room_kwarg=_room_kwarg(raw),
        room_resolver=_resolver(raw, "room_resolver", "a callable room_resolver(scope), its dotted path, or None"),
        message_type_resolver=_resolver(
            raw, "msg_type_resolver", "a callable resolver(text, bytes) -> str | None, its dotted path, or None"
        ),
        limits_resolver=_resolver(
            raw, "limits_resolver", "a callable resolver(scope) -> dict | None, its dotted path, or None"
        ),
        heartbeat_ms=_heartbeat_ms(raw, lease_ms),
        http_denial=raw.flag("http_denial"),
        release_on_sigterm=raw.flag("release_on_sigterm"),
        release_timeout_ms=raw.required("release_timeout_ms", _POSITIVE),
        on_backend_error=on_backend_error,
        backend_options=BackendOptions(
            fallback=raw.flag("fallback"),
            on_error=on_backend_error,
            timeout_ms=raw.required("backend_timeout_ms", _POSITIVE),
            processes=raw.required("fallback_processes", _POSITIVE),
            cooldown_ms=raw.required("fallback_cooldown_ms", _POSITIVE),
        ),
        shadow=raw.flag("shadow"),
    )


def _connections(raw: _Raw, lease_ms: int) -> ConnectionLimits:
    rate, burst = _rate_and_burst(raw, "connect_rps", "connect_burst", "connection attempts")
    limits = ConnectionLimits(
        per_user=raw.count("conn_per_user", _NON_NEGATIVE_OR_NONE),
        per_ip=raw.count("conn_per_ip", _NON_NEGATIVE_OR_NONE),
        room_max_members=raw.count("room_max_members", _NON_NEGATIVE_OR_NONE),
        lease_ms=lease_ms,
        retry_after_ms=raw.required("conn_retry_ms", _NON_NEGATIVE),
    )
    try:
        return dataclasses.replace(limits, connect_rate=rate, connect_burst=burst)
    except InvalidArgument as exc:  # a rate and burst beyond the bucket's precision
        message = f"{raw.label('connect_rps')} and {raw.label('connect_burst')}: {exc}"
        raw.report("connect_burst", message, "a burst the rate can refill exactly", conflict=True)
        return limits


def _rate_and_burst(raw: _Raw, rate_field: str, burst_field: str, what: str) -> tuple[float | None, int | None]:
    """A bucket's rate and burst, each checked alone, and the burst refused without a rate."""
    rate = _rate(raw, rate_field, what)
    burst = raw.count(burst_field, _POSITIVE_OR_NONE)
    if burst is not None and rate is None:
        raw.fail(burst_field, f"None while {raw.label(rate_field)} is None (a burst needs a rate)", conflict=True)
        burst = None
    return rate, burst


def _messages(raw: _Raw) -> MessageLimits:
    rate, burst = _rate_and_burst(raw, "msg_rps", "msg_burst", "messages")
    max_payload_bytes = raw.count("max_payload_bytes", _NON_NEGATIVE_OR_NONE)
    strikes = raw.required("msg_strikes", _POSITIVE)
    limits = MessageLimits(max_payload_bytes, strikes=strikes, types=_msg_types(raw), quota=_msg_quota(raw))
    try:
        return dataclasses.replace(limits, rate=rate, burst=burst)
    except InvalidArgument as exc:  # a rate and burst beyond the bucket's precision
        message = f"{raw.label('msg_rps')} and {raw.label('msg_burst')}: {exc}"
        raw.report("msg_burst", message, "a burst the rate can refill exactly", conflict=True)
        return limits


_MSG_TYPES_EXPECTED: Final = 'a dict of message type -> {"rps": number, "burst": int} ("burst" optional), or None'


def _msg_types(raw: _Raw) -> tuple[TypeRate, ...]:
    value = raw["msg_types"]
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raw.fail("msg_types", _MSG_TYPES_EXPECTED)
        return ()
    rates = (_type_rate(raw, name, spec) for name, spec in value.items())
    return tuple(rate for rate in rates if rate is not None)


def _type_rate(raw: _Raw, name: object, spec: object) -> TypeRate | None:
    """One entry of ``WS_RATE_MSG_TYPES``; a bad one is reported under the setting's name and its type."""
    label = f"{raw.label('msg_types')}[{name!r:.80}]"
    problem = None
    if not isinstance(name, str) or not name:
        problem = f"{label}: a message type must be a non-empty str"
    elif not isinstance(spec, Mapping) or "rps" not in spec or not set(spec) <= {"rps", "burst"}:
        problem = f"{label} must be {{'rps': number, 'burst': int}} ('burst' optional), got {spec!r:.200}"
    elif not _is_rate(spec["rps"]):
        problem = f"{label}['rps'] must be a positive number of messages per second, got {spec['rps']!r:.80}"
    else:
        try:
            return TypeRate(name, spec["rps"], Count(1, optional=True).check(f"{label}['burst']", spec.get("burst")))
        except InvalidArgument as exc:
            problem = str(exc) if str(exc).startswith(label) else f"{label}: {exc}"
    raw.report("msg_types", problem, _MSG_TYPES_EXPECTED)
    return None


_QUOTA_EXPECTED: Final = "(count, seconds), e.g. (1000, 3600), or None (no quota)"


def _msg_quota(raw: _Raw) -> MessageQuota | None:
    value = raw["msg_quota"]
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2 and _is_rate(value[1]):
        count, seconds = value
        try:
            return MessageQuota(count, round(seconds * 1000))
        except InvalidArgument as exc:
            raw.report("msg_quota", f"{raw.label('msg_quota')}: {exc}", _QUOTA_EXPECTED)
            return None
    raw.fail("msg_quota", _QUOTA_EXPECTED)
    return None


def _is_rate(value: object) -> TypeGuard[float]:
    """A positive finite int or float (a bool is not a number here)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value > 0


def _rate(raw: _Raw, field: str, what: str) -> float | None:
    rate = raw[field]
    if rate is None or _is_rate(rate):
        return rate
    raw.fail(field, f"a positive number of {what} per second or None (unlimited)")
    return None


def _heartbeat_ms(raw: _Raw, lease_ms: int) -> int:
    heartbeat_ms = raw.count("heartbeat_ms", _POSITIVE_OR_NONE)
    if heartbeat_ms is not None and heartbeat_ms >= lease_ms:
        expected = f"shorter than {raw.label('lease_ms')} ({lease_ms} ms) or None"
        raw.fail("heartbeat_ms", expected, conflict=True)
        heartbeat_ms = None
    return max(1, lease_ms // 3) if heartbeat_ms is None else heartbeat_ms


_BACKEND_METHODS: Final = (*PRIMITIVES, "ping", "clear", "aclose")


def _on_backend_error(raw: _Raw) -> OnError:
    value = raw["on_backend_error"]
    if isinstance(value, str) and value in ON_ERROR_CHOICES:
        return value
    raw.fail("on_backend_error", " or ".join(repr(choice) for choice in ON_ERROR_CHOICES))
    return "fallback"


def _is_backend(value: object) -> TypeGuard[Backend]:
    """Every method of `Backend` is there, also through ``__getattr__``.

    (``isinstance`` against the protocol looks at the class only from Python 3.12 on,
    so it would refuse a wrapper that delegates to a backend.)
    """
    return not isinstance(value, str) and all(callable(getattr(value, name, None)) for name in _BACKEND_METHODS)


def _backend(raw: _Raw) -> str | Backend:
    value = raw["backend"]
    if _is_backend(value):
        return value
    shown = None
    if isinstance(value, str):
        scheme, separator, _ = value.partition("://")
        if separator and scheme.lower() in BACKEND_SCHEMES:
            return value
        shown = _without_password(value)
    schemes = ", ".join(f"{scheme}://" for scheme in BACKEND_SCHEMES)
    raw.fail("backend", f"a backend URL ({schemes}) or a Backend", shown=shown)
    return "memory://"


def _without_password(url: str) -> str:
    """`url` with the password of its user part, if any, replaced by ``***``."""
    head, separator, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not (separator and at and ":" in userinfo):
        return url
    return f"{head}://{userinfo.partition(':')[0]}:***@{host}"


def _trusted_proxies(raw: _Raw) -> TrustedProxies:
    value = raw["trusted_proxies"]
    if isinstance(value, TrustedProxies):
        return value
    expected = "a list of CIDRs such as ['10.0.0.0/8']"
    if not isinstance(value, tuple | list):
        raw.fail("trusted_proxies", expected)
        return TrustedProxies(())
    try:
        return TrustedProxies(value)
    except InvalidArgument as exc:
        raw.report("trusted_proxies", f"{raw.label('trusted_proxies')}: {exc}", expected)
        return TrustedProxies(())


def _ipv6_prefix(raw: _Raw) -> int:
    try:
        return check_ipv6_prefix(raw.label("ipv6_prefix"), raw["ipv6_prefix"])
    except InvalidArgument as exc:
        raw.report("ipv6_prefix", str(exc), "an int from 1 to 128")
        return DEFAULT_IPV6_PREFIX


def _room_kwarg(raw: _Raw) -> str:
    value = raw["room_kwarg"]
    if isinstance(value, str) and value:
        return value
    raw.fail("room_kwarg", "the name of a URL route kwarg")
    return "room_id"


def _resolver(raw: _Raw, field: str, expected: str) -> Any:
    """A callable setting: the callable, or the one its dotted path names; None when unset or bad (reported)."""
    value = raw[field]
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        from django.utils.module_loading import import_string

        try:
            resolver = import_string(value)
        except ImportError as exc:
            raw.report(field, f"{raw.label(field)}: cannot import {value!r} ({exc})", expected)
            return None
        if callable(resolver):
            return resolver
    raw.fail(field, expected)
    return None
